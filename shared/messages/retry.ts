import * as z from 'zod';

/** The message the ledger queues (delayed until the attempt is due) to send a target its next attempt. */
export const RetryMessageSchema = z.strictObject({
  rolloutId: z.string().min(1),
  instanceId: z.string().min(1),
  parameter: z.string().min(1),
  /** The file: a parameter may be written to several paths, each its own target. */
  path: z.string().min(1),
  attempt: z.number().int().min(2),
});

export type RetryMessage = z.infer<typeof RetryMessageSchema>;
