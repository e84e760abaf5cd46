import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { documents } from '../shared/clients/dynamodb.ts';
import { ec2 } from '../shared/clients/ec2.ts';
import { sns } from '../shared/clients/sns.ts';
import { sqs } from '../shared/clients/sqs.ts';
import { ssm } from '../shared/clients/ssm.ts';
import { loadConfig, requireEnv } from '../shared/config.ts';
import { callerOf, isHttpRequest, jsonBody, respond } from '../shared/http.ts';
import { logger, metrics, tracer } from '../shared/powertools.ts';
import { resync } from '../shared/resync.ts';
import { RolloutStore } from '../shared/rollouts.ts';

const alertsTopicArn = process.env.ALERTS_TOPIC_ARN;
const deps = {
  ec2,
  ssm,
  sqs,
  sns,
  config: loadConfig(),
  store: new RolloutStore(documents, requireEnv('ROLLOUTS_TABLE')),
  documentName: requireEnv('DOCUMENT_NAME'),
  outputLogGroup: requireEnv('COMMAND_OUTPUT_LOG_GROUP'),
  retryQueueUrl: requireEnv('RETRY_QUEUE_URL'),
  ...(alertsTopicArn === undefined ? {} : { alertsTopicArn }),
  ...(process.env.STAGE === undefined ? {} : { stage: process.env.STAGE }),
};

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
