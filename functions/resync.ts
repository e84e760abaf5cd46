import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { fanOutDepsFromEnv } from '../shared/deps.ts';
import { callerOf, isHttpRequest, jsonBody, respond } from '../shared/http.ts';
import { logger, metrics, tracer } from '../shared/powertools.ts';
import { resync } from '../shared/resync.ts';

const deps = fanOutDepsFromEnv();

// A direct invoke carries no caller identity (Lambda passes none); CloudTrail's Invoke data
// events name the caller. Over HTTP, API Gateway has verified the SigV4 signature.
const DIRECT_INVOKE = 'direct invoke (caller: CloudTrail lambda:Invoke data event)';

/**
 * POST /resync (HTTP API, AWS_IAM) or `serverless invoke -f resync --data '{...}'`: start a
 * rollout now and answer at once with its id, targets and how to follow it.
 */
export const lambdaHandler = async (
  event: unknown,
): Promise<APIGatewayProxyStructuredResultV2 | Record<string, unknown>> => {
  metrics.addMetric('ResyncRequests', MetricUnit.Count, 1);
  if (!isHttpRequest(event)) {
    const answer = await resync(deps, event, DIRECT_INVOKE);
    return answer.status >= 400 ? { status: answer.status, ...answer.body } : answer.body;
  }
  const body = jsonBody(event);
  if (!body.ok) return respond(body.status, { error: body.error });
  const answer = await resync(deps, body.value, callerOf(event));
  return respond(answer.status, answer.body);
};

export const handler = middy<unknown, APIGatewayProxyStructuredResultV2 | Record<string, unknown>>()
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics))
  .handler(lambdaHandler);
