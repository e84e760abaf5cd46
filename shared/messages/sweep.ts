import * as z from '../zod.ts';

/**
 * The safety net under every rollout, queued (delayed) on the status queue as soon as the
 * rollout exists: Run Command status events are best effort, a sender can stop half-way, a
 * retry message can end in the dead-letter queue, an alert's publish can fail. A sweep asks
 * Run Command directly about every target still pending, re-sends what nobody is sending, and
 * sees the rollout settled and its alert sent (shared/track/sweeper.ts).
 */
export const SweepMessageSchema = z.strictObject({
  kind: z.literal('sweep'),
  rolloutId: z.string().check(z.minLength(1)),
  /** Not before this instant (ISO 8601); SQS delays at most 900 s, so the message hops. */
  due: z.iso.datetime(),
  round: z.number().check(z.int(), z.minimum(0)),
});
export type SweepMessage = z.infer<typeof SweepMessageSchema>;
