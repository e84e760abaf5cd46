import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { logger, metrics, tracer } from './powertools.ts';

/**
 * The middleware every function starts with, in this order: a trace segment, the Lambda
 * context on every log line (keys reset per invocation), and the invocation's metrics flushed
 * as EMF. A function adds its own (parsing, idempotency) with `.use()`, then `.handler(fn)`.
 */
export function observed<Event, Result>() {
  return observedWithoutMetrics<Event, Result>().use(logMetrics(metrics));
}

/**
 * `observed` for a function that emits no metrics (Powertools warns on an empty flush): its
 * bundle then carries no Metrics at all, and its cold start builds none.
 */
export function observedWithoutMetrics<Event, Result>() {
  return middy<Event, Result>()
    .use(captureLambdaHandler(tracer))
    .use(injectLambdaContext(logger, { resetKeys: true }));
}
