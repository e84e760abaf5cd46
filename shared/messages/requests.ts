import * as z from '../zod.ts';

const instanceId = z
  .string()
  .check(z.regex(/^i-[0-9a-f]{8,17}$/, 'must be an EC2 instance id like i-0123456789abcdef0'));

/** A manual re-sync: one mapped parameter, or every file of one environment. */
export const ResyncRequestSchema = z
  .strictObject({
    parameter: z.optional(z.string().check(z.minLength(1), z.maxLength(2048))),
    environment: z.optional(z.string().check(z.minLength(1), z.maxLength(63))),
    instanceIds: z.optional(z.array(instanceId).check(z.minLength(1), z.maxLength(100))),
    dryRun: z.optional(z.boolean()),
  })
  .check(
    z.refine((r) => (r.parameter === undefined) !== (r.environment === undefined), {
      message: 'give exactly one of parameter or environment',
      path: ['parameter'],
    }),
  );

export type ResyncRequest = z.infer<typeof ResyncRequestSchema>;

/** A rollout id as newRolloutId makes them. */
const rolloutIdSchema = z
  .string()
  .check(
    z.regex(
      /^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}$/,
      'must be a rollout id like 20261123T161300123Z-3f9a1c2b',
    ),
  );

/** A person's decision on a halted staged rollout, sent to the resync endpoint. */
export const RolloutDecisionSchema = z.strictObject({
  rolloutId: rolloutIdSchema,
  action: z.enum(['resume', 'abandon']),
  environment: z.optional(z.string().check(z.minLength(1), z.maxLength(63))),
});

export type RolloutDecision = z.infer<typeof RolloutDecisionSchema>;

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
