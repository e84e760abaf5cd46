import * as z from 'zod';

/**
 * A drift repair run of one environment. The schedule's rule sends it through an
 * InputTransformer (`{"environment": "prod", "eventId": <id>, "time": <time>}` from the
 * "Scheduled Event"), so a redelivered event maps to the same rollout; the on-call may invoke
 * it by hand with `{"environment": "prod"}`.
 */
export const DriftRequestSchema = z.strictObject({
  environment: z.string().min(1).max(63),
  /** The scheduled event's id: seeds the rollout id (absent when invoked by hand). */
  eventId: z.string().min(1).max(128).optional(),
  /** The scheduled event's time. */
  time: z.iso.datetime().optional(),
});

export type DriftRequest = z.infer<typeof DriftRequestSchema>;
