import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import * as z from 'zod';

/**
 * The safety net under every rollout: Run Command status events are best effort, a sender can
 * stop half-way, a retry message can end in the dead-letter queue. Some time after a rollout's
 * commands must have finished, a sweep asks Run Command directly about every target still
 * pending, re-sends what was never sent, and in the end fails (and so alerts about) whatever
 * stays unknown. No target stays Pending forever, silently.
 */
export const SweepMessageSchema = z.strictObject({
  kind: z.literal('sweep'),
  rolloutId: z.string().min(1),
  /** Not before this instant (ISO 8601); SQS delays at most 900 s, so the message hops. */
  due: z.iso.datetime(),
  round: z.number().int().min(0),
});
export type SweepMessage = z.infer<typeof SweepMessageSchema>;

// The step's own timeoutSeconds in the document; a command is over after delivery timeout
// plus this (https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html).
const EXECUTION_TIMEOUT_SECONDS = 600;
const MARGIN_SECONDS = 120;
/** Between sweeps of a rollout still pending, and how many before giving up on it. */
export const ROUND_SECONDS = 300;
export const MAX_ROUNDS = 6;

/** When to first sweep a rollout whose commands wait `deliveryTimeoutSeconds` for delivery. */
export function firstSweep(
  rolloutId: string,
  deliveryTimeoutSeconds: number,
  now = new Date(),
): SweepMessage {
  const due = new Date(
    now.getTime() + (deliveryTimeoutSeconds + EXECUTION_TIMEOUT_SECONDS + MARGIN_SECONDS) * 1000,
  );
  return { kind: 'sweep', rolloutId, due: due.toISOString(), round: 0 };
}

/** Queues a sweep, delayed until it is due or by SQS's maximum. Throws the SDK error. */
export async function queueSweep(
  sqs: SQSClient,
  queueUrl: string,
  sweep: SweepMessage,
  now = new Date(),
) {
  const seconds = Math.ceil((Date.parse(sweep.due) - now.getTime()) / 1000);
  await sqs.send(
    new SendMessageCommand({
      QueueUrl: queueUrl,
      MessageBody: JSON.stringify(sweep),
      DelaySeconds: Math.max(0, Math.min(900, seconds)),
    }),
  );
}
