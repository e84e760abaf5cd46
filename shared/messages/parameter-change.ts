import * as z from '../zod.ts';
import { eventBridgeEvent } from './eventbridge.ts';

/**
 * The EventBridge event Parameter Store emits when a parameter changes
 * (https://docs.aws.amazon.com/systems-manager/latest/userguide/monitoring-systems-manager-event-examples.html
 * — "Parameter Store Change"). It carries the name and operation, never the value or version.
 */
export const ParameterChangeEventSchema = eventBridgeEvent(
  'aws.ssm',
  'Parameter Store Change',
  z.object({
    operation: z.string().check(z.minLength(1)),
    name: z.string().check(z.minLength(1), z.maxLength(2048)),
    type: z.optional(z.string()),
    description: z.optional(z.string()),
  }),
);

export type ParameterChangeEvent = z.infer<typeof ParameterChangeEventSchema>;

/** Operations after which the parameter holds content to push; anything else sends nothing. */
export const CONTENT_OPERATIONS: ReadonlySet<string> = new Set(['Create', 'Update']);
