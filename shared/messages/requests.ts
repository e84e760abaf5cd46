import * as z from 'zod';

const instanceId = z
  .string()
  .regex(/^i-[0-9a-f]{8,17}$/, 'must be an EC2 instance id like i-0123456789abcdef0');

/** A manual re-sync: one mapped parameter, or every file of one environment. */
export const ResyncRequestSchema = z
  .strictObject({
    parameter: z.string().min(1).max(2048).optional(),
    environment: z.string().min(1).max(63).optional(),
    instanceIds: z.array(instanceId).min(1).max(100).optional(),
    dryRun: z.boolean().optional(),
  })
  .refine((r) => (r.parameter === undefined) !== (r.environment === undefined), {
    message: 'give exactly one of parameter or environment',
    path: ['parameter'],
  });

export type ResyncRequest = z.infer<typeof ResyncRequestSchema>;

/** A rollout id as newRolloutId makes them. */
const rolloutIdSchema = z
  .string()
  .regex(
    /^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}$/,
    'must be a rollout id like 20261123T161300123Z-3f9a1c2b',
  );

/** A person's decision on a halted staged rollout, sent to the resync endpoint. */
export const RolloutDecisionSchema = z.strictObject({
  rolloutId: rolloutIdSchema,
  action: z.enum(['resume', 'abandon']),
  environment: z.string().min(1).max(63).optional(),
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
  limit: z.coerce.number().int().min(1).max(MAX_INSTANCES_PER_PAGE).default(MAX_INSTANCES_PER_PAGE),
  nextToken: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,2048}$/, 'must be the nextToken a previous page returned')
    .optional(),
});

export type RolloutRequest = z.infer<typeof RolloutRequestSchema>;

/** The newest rollouts of a parameter or an environment. */
export const RolloutListRequestSchema = z
  .strictObject({
    parameter: z.string().min(1).max(2048).optional(),
    environment: z.string().min(1).max(63).optional(),
    limit: z.coerce.number().int().min(1).max(50).default(10),
  })
  .refine((r) => r.parameter !== undefined || r.environment !== undefined, {
    message: 'give a rolloutId, a parameter or an environment',
    path: ['parameter'],
  });

export type RolloutListRequest = z.infer<typeof RolloutListRequestSchema>;
