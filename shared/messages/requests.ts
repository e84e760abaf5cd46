import * as z from '../zod.ts';
import { rolloutIdSchema } from './ids.ts';

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

/** A person's decision on a halted staged rollout, sent to the resync endpoint. */
export const RolloutDecisionSchema = z.strictObject({
  rolloutId: rolloutIdSchema,
  action: z.enum(['resume', 'abandon']),
  environment: z.optional(z.string().check(z.minLength(1), z.maxLength(63))),
});

export type RolloutDecision = z.infer<typeof RolloutDecisionSchema>;
