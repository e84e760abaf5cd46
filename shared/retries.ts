import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { chunk } from './chunk.ts';
import type { FanoutConfig } from './config.ts';
import { backoffSeconds } from './outcomes.ts';
import type { LastError, RolloutStore, Transition } from './rollouts.ts';
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

/**
 * The move a failed attempt makes: to the next attempt while any remain, else to Failed, the
 * status saying how many attempts were made. Never throws.
 */
export function retryOrFail(
  base: { instanceId: string; parameter: string; fromAttempt: number; commandId?: string },
  lastError: LastError,
  maxAttempts: number,
): Transition {
  if (base.fromAttempt < maxAttempts) return { ...base, to: 'Retry', lastError };
  return {
    ...base,
    to: 'Failed',
    lastError: { ...lastError, status: `${lastError.status} (after ${base.fromAttempt} attempts)` },
  };
}

/**
 * Commits a rollout's transitions, then queues the retries of those that moved a target to its
 * next attempt — never before: a retry must not arrive before its attempt exists. Should
 * queueing fail after the commit, the rollout's sweep finds the target pending with no command
 * and retries it. Returns what the store applied and skipped; throws SDK errors.
 */
export async function applyThenQueueRetries(
  deps: { store: RolloutStore; sqs: SQSClient; retryQueueUrl: string },
  retry: FanoutConfig['retry'],
  rolloutId: string,
  transitions: Transition[],
): Promise<{ applied: Transition[]; stale: Transition[] }> {
  const result = await deps.store.apply(rolloutId, transitions);
  const retries = result.applied
    .filter((t) => t.to === 'Retry')
    .map((t) => ({
      rolloutId,
      instanceId: t.instanceId,
      parameter: t.parameter,
      attempt: t.fromAttempt + 1,
    }));
  if (retries.length > 0) await queueRetries(deps.sqs, deps.retryQueueUrl, retry, retries);
  return result;
}
