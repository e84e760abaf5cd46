import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { ChangeMessageVisibilityCommand } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { requireEnv } from '../shared/config.ts';
import { depsFromEnv } from '../shared/deps.ts';
import { RetryBusyError } from '../shared/errors.ts';
import { RetryMessageSchema } from '../shared/messages/retry.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseOrThrow } from '../shared/platform/parse.ts';
import { logger, metrics } from '../shared/platform/powertools.ts';
import { BUSY_RETRY_SECONDS, retryChunk } from '../shared/track/retrier.ts';

const deps = depsFromEnv();
const retryQueueUrl = requireEnv('RETRY_QUEUE_URL');
const processor = new BatchProcessor(EventType.SQS);

/** One delayed retry of a chunk: send the targets their next attempt, or record why not. */
async function retryRecord(record: SQSRecord): Promise<void> {
  const message = parseOrThrow(RetryMessageSchema, JSON.parse(record.body), 'retry message');
  let results: Awaited<ReturnType<typeof retryChunk>>;
  try {
    results = await retryChunk(deps, message);
  } catch (error) {
    if (error instanceof RetryBusyError) {
      // Come back in seconds, not after the queue's full visibility timeout.
      await deps.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: retryQueueUrl,
          ReceiptHandle: record.receiptHandle,
          VisibilityTimeout: BUSY_RETRY_SECONDS,
        }),
      );
    }
    throw error;
  }
  const counts = new Map<string, number>();
  for (const result of results.values()) counts.set(result, (counts.get(result) ?? 0) + 1);
  for (const [result, n] of counts) {
    metrics.addMetric(`Retries${result[0]?.toUpperCase()}${result.slice(1)}`, MetricUnit.Count, n);
  }
  // Keys on the line itself: records of a batch run concurrently, so appended keys would mix.
  const { instanceIds, ...chunk } = message;
  logger.info('retry handled', {
    ...chunk,
    instances: instanceIds.length,
    results: Object.fromEntries(counts),
  });
}

/** A batch of due retries (SQS, delayed by the backoff); failed ones come back later. */
export const lambdaHandler = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  processPartialResponse(event, retryRecord, processor, {
    context,
    throwOnFullBatchFailure: false,
  });

export const handler = observed<SQSEvent, SQSBatchResponse>().handler(lambdaHandler);
