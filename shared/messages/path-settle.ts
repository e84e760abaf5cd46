import * as z from '../zod.ts';

/**
 * Our own message on the path-settle queue: "the burst of changes under `path` in `environment`
 * that started at `firstEventAt` may have settled; look again". Never holds a value.
 */
export const PathSettleMessageSchema = z.strictObject({
  kind: z.literal('path-settle'),
  environment: z.string().check(z.minLength(1)),
  path: z.string().check(z.regex(/^\/.*\/$/)),
  burstId: z.string().check(z.minLength(1)),
  firstEventAt: z.iso.datetime(),
});

export type PathSettleMessage = z.infer<typeof PathSettleMessageSchema>;
