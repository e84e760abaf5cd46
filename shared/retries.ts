import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { chunk } from './chunk.ts';
import type { FanoutConfig } from './config.ts';
import { backoffSeconds } from './outcomes.ts';
import type { RetryMessage } from './schemas/command-status.ts';

// SendMessageBatch takes at most 10 entries
// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html).
const SQS_BATCH = 10;

/**
 * Queues each retry with its own backoff delay (SQS DelaySeconds). Throws if any message could
 * not be queued, so the caller does not record a retry that will never run.
 */
export async function queueRetries(
  sqs: SQSClient,
  queueUrl: string,
  retry: FanoutConfig['retry'],
  messages: RetryMessage[],
): Promise<void> {
  for (const part of chunk(messages, SQS_BATCH)) {
    const { Failed } = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: part.map((message, index) => ({
          Id: String(index),
          MessageBody: JSON.stringify(message),
          DelaySeconds: backoffSeconds(message.attempt, retry.baseDelaySeconds),
        })),
      }),
    );
    if (Failed !== undefined && Failed.length > 0) {
      throw new Error(
        `could not queue ${Failed.length} retries: ${Failed[0]?.Code} ${Failed[0]?.Message}`,
      );
    }
  }
}
