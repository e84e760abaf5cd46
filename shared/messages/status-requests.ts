import * as z from '../zod.ts';
import { rolloutIdSchema } from './ids.ts';

// The status function's requests, apart from the re-sync ones (requests.ts): a function builds
// only the schemas it parses with at its cold start.

/** Instances per page of one rollout: ~190 B each keeps a page far below Lambda's 6 MB. */
export const MAX_INSTANCES_PER_PAGE = 1000;

/**
 * The on-call view of one rollout, a page of its instances at a time (the counts always cover
 * every instance). `nextToken` is the one the previous page returned.
 */
export const RolloutRequestSchema = z.strictObject({
  rolloutId: rolloutIdSchema,
  limit: z._default(
    z.coerce.number().check(z.int(), z.minimum(1), z.maximum(MAX_INSTANCES_PER_PAGE)),
    MAX_INSTANCES_PER_PAGE,
  ),
  nextToken: z.optional(
    z
      .string()
      .check(z.regex(/^[A-Za-z0-9_-]{1,2048}$/, 'must be the nextToken a previous page returned')),
  ),
});

export type RolloutRequest = z.infer<typeof RolloutRequestSchema>;

/** The newest rollouts of a parameter or an environment. */
export const RolloutListRequestSchema = z
  .strictObject({
    parameter: z.optional(z.string().check(z.minLength(1), z.maxLength(2048))),
    environment: z.optional(z.string().check(z.minLength(1), z.maxLength(63))),
    limit: z._default(z.coerce.number().check(z.int(), z.minimum(1), z.maximum(50)), 10),
  })
  .check(
    z.refine((r) => r.parameter !== undefined || r.environment !== undefined, {
      message: 'give a rolloutId, a parameter or an environment',
      path: ['parameter'],
    }),
  );

export type RolloutListRequest = z.infer<typeof RolloutListRequestSchema>;
