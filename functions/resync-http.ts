import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { requireEnv } from '../shared/config.ts';
import { depsFromEnv } from '../shared/deps.ts';
import { callerOf, fromOwnApi, jsonBody, respond } from '../shared/platform/http.ts';
import { observed } from '../shared/platform/middleware.ts';
import { logger, metrics } from '../shared/platform/powertools.ts';
import { resync } from '../shared/send/resync.ts';

const deps = depsFromEnv();
const apiId = requireEnv('HTTP_API_ID');

/**
 * POST /resync (HTTP API, AWS_IAM): the same re-sync as a direct invoke, with the caller's IAM
 * ARN, as API Gateway verified its SigV4 signature, recorded on the rollout. Only this function
 * sits behind the API, so granting people `lambda:InvokeFunction` on `resync` never lets them
 * speak for someone else here; an event that did not come through this stack's API is refused.
 */
export const lambdaHandler = async (event: unknown): Promise<APIGatewayProxyStructuredResultV2> => {
  metrics.addMetric('ResyncRequests', MetricUnit.Count, 1);
  if (!fromOwnApi(event, apiId)) {
    logger.warn('resync-http invoked with an event that is not from its HTTP API; refused');
    return respond(403, { error: 'only requests through the HTTP API are accepted here' });
  }
  const body = jsonBody(event);
  if (!body.ok) return respond(body.status, { error: body.error });
  const answer = await resync(deps, body.value, callerOf(event));
  return respond(answer.status, answer.body);
};

export const handler = observed<unknown, APIGatewayProxyStructuredResultV2>().handler(
  lambdaHandler,
);
