import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { ChangeMessageVisibilityCommand } from '@aws-sdk/client-sqs';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { fanOutDepsFromEnv } from '../shared/deps.ts';
import { parseOrThrow } from '../shared/parse.ts';
import { logger, metrics, tracer } from '../shared/powertools.ts';
import { RetryBusyError, retryTarget } from '../shared/retrier.ts';
import { RetryMessageSchema } from '../shared/schemas/command-status.ts';

const deps = fanOutDepsFromEnv();
const processor = new BatchProcessor(EventType.SQS);
// A busy or early retry is looked at again this soon.
const BUSY_RETRY_SECONDS = 15;

/** One delayed retry: send the target its next attempt, or record why it needs none. */
async function retryRecord(record: SQSRecord): Promise<void> {
  const message = parseOrThrow(RetryMessageSchema, JSON.parse(record.body), 'retry message');
  let result: Awaited<ReturnType<typeof retryTarget>>;
  try {
    result = await retryTarget(deps, message);
  } catch (error) {
    if (error instanceof RetryBusyError) {
      // Come back in seconds, not after the queue's full visibility timeout.
      await deps.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: deps.retryQueueUrl,
          ReceiptHandle: record.receiptHandle,
          VisibilityTimeout: BUSY_RETRY_SECONDS,
        }),
      );
    }
    throw error;
  }
  metrics.addMetric(`Retries${result[0]?.toUpperCase()}${result.slice(1)}`, MetricUnit.Count, 1);
  // Keys on the line itself: records of a batch run concurrently, so appended keys would mix.
  logger.info('retry handled', { ...message, result });
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
