import * as z from '../zod.ts';

/**
 * A drift repair run of one environment. The schedule's rule sends it through an
 * InputTransformer (`{"environment": "prod", "eventId": <id>, "time": <time>}` from the
 * "Scheduled Event"), so a redelivered event maps to the same rollout; the on-call may invoke
 * it by hand with `{"environment": "prod"}`.
 */
export const DriftRequestSchema = z.strictObject({
  environment: z.string().check(z.minLength(1), z.maxLength(63)),
  /** The scheduled event's id: seeds the rollout id (absent when invoked by hand). */
  eventId: z.optional(z.string().check(z.minLength(1), z.maxLength(128))),
  /** The scheduled event's time. */
  time: z.optional(z.iso.datetime()),
});

export type DriftRequest = z.infer<typeof DriftRequestSchema>;
