import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { documents } from '../shared/clients/dynamodb.ts';
import { ec2 } from '../shared/clients/ec2.ts';
import { sns } from '../shared/clients/sns.ts';
import { sqs } from '../shared/clients/sqs.ts';
import { ssm } from '../shared/clients/ssm.ts';
import { loadConfig, requireEnv } from '../shared/config.ts';
import { parseOrThrow } from '../shared/parse.ts';
import { logger, metrics, tracer } from '../shared/powertools.ts';
import { retryTarget } from '../shared/retrier.ts';
import { RolloutStore } from '../shared/rollouts.ts';
import { RetryMessageSchema } from '../shared/schemas/command-status.ts';

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
const processor = new BatchProcessor(EventType.SQS);

/** One delayed retry: send the target its next attempt, or record why it needs none. */
async function retryRecord(record: SQSRecord): Promise<void> {
  const message = parseOrThrow(RetryMessageSchema, JSON.parse(record.body), 'retry message');
  logger.appendKeys({
    rolloutId: message.rolloutId,
    instanceId: message.instanceId,
    parameter: message.parameter,
  });
  const result = await retryTarget(deps, message);
  metrics.addMetric(`Retries${result[0]?.toUpperCase()}${result.slice(1)}`, MetricUnit.Count, 1);
  logger.info('retry handled', { attempt: message.attempt, result });
}

/** A batch of due retries (SQS, delayed by the backoff); failed ones come back later. */
export const lambdaHandler = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  processPartialResponse(event, retryRecord, processor, {
    context,
    throwOnFullBatchFailure: false,
  });

export const handler = middy<SQSEvent, SQSBatchResponse>()
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics))
  .handler(lambdaHandler);
