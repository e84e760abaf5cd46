import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { filesForParameter, requireEnv } from '../shared/config.ts';
import { depsFromEnv } from '../shared/deps.ts';
import { callerOf, fromOwnApi, jsonBody, respond } from '../shared/platform/http.ts';
import { observed } from '../shared/platform/middleware.ts';
import { logger, metrics } from '../shared/platform/powertools.ts';
import { resync } from '../shared/send/resync.ts';

const deps = depsFromEnv();
const apiId = requireEnv('HTTP_API_ID');

/**
 * POST /environments/{environment}/resync (HTTP API, AWS_IAM): the same re-sync as a direct
 * invoke, of one environment, with the caller's IAM ARN, as API Gateway verified its SigV4
 * signature, recorded on the rollout. The environment is in the path, so an IAM policy can
 * grant execute-api:Invoke per environment (README: "Operator policies"). Only this function
 * sits behind the API, so granting people `lambda:InvokeFunction` on `resync` never lets them
 * speak for someone else here; an event that did not come through this stack's API is refused.
 */
export const lambdaHandler = async (event: unknown): Promise<APIGatewayProxyStructuredResultV2> => {
  metrics.addMetric('ResyncRequests', MetricUnit.Count, 1);
  if (!fromOwnApi(event, apiId)) {
    logger.warn('resync-http invoked with an event that is not from its HTTP API; refused');
    return respond(403, { error: 'only requests through the HTTP API are accepted here' });
  }
  const environment = event.pathParameters?.environment ?? '';
  if (!deps.config.environments.includes(environment)) {
    return respond(404, { error: `environment ${environment} is not configured` });
  }
  const body = jsonBody(event);
  if (!body.ok) return respond(body.status, { error: body.error });
  const request = inEnvironment(body.value, environment);
  if ('error' in request) return respond(request.status, { error: request.error });
  const answer = await resync(deps, request.value, callerOf(event));
  return respond(answer.status, answer.body);
};

/**
 * The body as a re-sync request of the path's environment: a parameter it names must be one
 * of that environment's; an `environment` field, if any, must be the path's.
 */
function inEnvironment(
  body: unknown,
  environment: string,
): { value: unknown } | { status: number; error: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { value: body };
  const { environment: named, ...rest } = body as Record<string, unknown>;
  if (named !== undefined && named !== environment) {
    return {
      status: 400,
      error: `environment is ${environment} (the path's); the body says ${String(named)}`,
    };
  }
  if (typeof rest.parameter === 'string') {
    const mapped = filesForParameter(deps.config, rest.parameter)[0]?.environment;
    if (mapped !== environment) {
      return {
        status: 404,
        error: `parameter ${rest.parameter} is not mapped in environment ${environment}`,
      };
    }
    return { value: rest };
  }
  return { value: { ...rest, environment } };
}

export const handler = observed<unknown, APIGatewayProxyStructuredResultV2>().handler(
  lambdaHandler,
);
