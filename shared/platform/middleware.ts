import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { logger, metrics, tracer } from './powertools.ts';

/**
 * The middleware every function starts with, in this order: a trace segment, the Lambda
 * context on every log line (keys reset per invocation), and the invocation's metrics flushed
 * as EMF. A function adds its own (parsing, idempotency) with `.use()`, then `.handler(fn)`.
 * `withMetrics: false` for a function that emits none (Powertools warns on an empty flush).
 */
export function observed<Event, Result>({ withMetrics = true } = {}) {
  const chain = middy<Event, Result>()
    .use(captureLambdaHandler(tracer))
    .use(injectLambdaContext(logger, { resetKeys: true }));
  return withMetrics ? chain.use(logMetrics(metrics)) : chain;
}
