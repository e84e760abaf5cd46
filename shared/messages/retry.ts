import * as z from 'zod';

/**
 * The message the ledger queues (delayed until the attempt is due) to send the next attempt to
 * a chunk of targets of one file: at most 50 instances, one SendCommand.
 */
export const RetryMessageSchema = z.strictObject({
  rolloutId: z.string().min(1),
  instanceIds: z
    .array(z.string().regex(/^(i-[0-9a-f]{8,17}|mi-[0-9a-f]{17})$/))
    .min(1)
    .max(50),
  parameter: z.string().min(1),
  /** The file: a parameter may be written to several paths, each its own target. */
  path: z.string().min(1),
  /** 1 only when the sweep re-sends a first attempt nobody sent. */
  attempt: z.number().int().min(1),
  /** How often the retrier put (part of) this chunk back because it was busy. */
  requeues: z.number().int().min(1).max(20).optional(),
});

export type RetryMessage = z.infer<typeof RetryMessageSchema>;

/** Resume a rollout its creator left half-created (queued by the sweep on the retry queue). */
export const ResumeMessageSchema = z.strictObject({
  kind: z.literal('resume'),
  rolloutId: z.string().min(1),
});

export type ResumeMessage = z.infer<typeof ResumeMessageSchema>;
