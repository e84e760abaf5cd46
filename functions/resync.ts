import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { depsFromEnv } from '../shared/deps.ts';
import { observed } from '../shared/platform/middleware.ts';
import { metrics } from '../shared/platform/powertools.ts';
import { resync } from '../shared/send/resync.ts';

const deps = depsFromEnv();

// A direct invoke carries no caller identity (Lambda passes none); CloudTrail's Invoke data
// events name the caller. Anything in the event claiming otherwise is the caller's own words.
const DIRECT_INVOKE = 'direct invoke (caller: CloudTrail lambda:Invoke data event)';

/**
 * `serverless invoke -f resync --data '{...}'`: start a rollout now and answer at once with its
 * id, targets and how to follow it. The event *is* the request; an HTTP-shaped event is refused
 * rather than trusted, so no invoker can record someone else as the requester (the HTTP API
 * has its own function, resyncHttp).
 */
export const lambdaHandler = async (event: unknown): Promise<Record<string, unknown>> => {
  metrics.addMetric('ResyncRequests', MetricUnit.Count, 1);
  if (typeof event === 'object' && event !== null && 'requestContext' in event) {
    return {
      status: 400,
      error:
        'this function takes the request itself ({"parameter": …} or {"environment": …}); HTTP requests go to POST /environments/{environment}/resync',
    };
  }
  const answer = await resync(deps, event, DIRECT_INVOKE);
  return answer.status >= 400 ? { status: answer.status, ...answer.body } : answer.body;
};

export const handler = observed<unknown, Record<string, unknown>>().handler(lambdaHandler);
