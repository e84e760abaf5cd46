import * as z from '../zod.ts';
import { eventBridgeEvent } from './eventbridge.ts';

const instanceId = z.string().check(z.regex(/^i-[0-9a-f]{8,17}$/));

/**
 * An instance entered `running` (launch, or start after a stop). It carries no tags.
 * https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html
 */
export const InstanceStateEventSchema = eventBridgeEvent(
  'aws.ec2',
  'EC2 Instance State-change Notification',
  z.object({ 'instance-id': instanceId, state: z.string() }),
);

/**
 * Auto Scaling put a new instance in Pending:Wait for a launch lifecycle hook.
 * https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-event-reference.html
 */
export const LaunchLifecycleEventSchema = eventBridgeEvent(
  'aws.autoscaling',
  'EC2 Instance-launch Lifecycle Action',
  z.object({
    LifecycleActionToken: z.string().check(z.minLength(1)),
    AutoScalingGroupName: z.string().check(z.minLength(1)),
    LifecycleHookName: z.string().check(z.minLength(1)),
    EC2InstanceId: instanceId,
    LifecycleTransition: z.literal('autoscaling:EC2_INSTANCE_LAUNCHING'),
    NotificationMetadata: z.optional(z.string()),
  }),
);

/**
 * Tags of a resource changed (an instance tagged with its environment after launch).
 * https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitor-tag-changes-with-eventbridge.html
 */
export const TagChangeEventSchema = eventBridgeEvent(
  'aws.tag',
  'Tag Change on Resource',
  z.object({
    'changed-tag-keys': z.array(z.string()),
    service: z.literal('ec2'),
    'resource-type': z.literal('instance'),
    tags: z.optional(z.record(z.string(), z.string())),
  }),
);

/** The lifecycle action a bootstrap must complete. */
export const LifecycleActionSchema = z.strictObject({
  groupName: z.string().check(z.minLength(1)),
  hookName: z.string().check(z.minLength(1)),
  token: z.string().check(z.minLength(1)),
});
export type LifecycleAction = z.infer<typeof LifecycleActionSchema>;

/** Our own delayed re-check of a bootstrap in progress. */
export const BootstrapCheckSchema = z.strictObject({
  kind: z.literal('bootstrap-check'),
  instanceId,
  lifecycle: z.optional(LifecycleActionSchema),
  /** After this instant the bootstrap gives up (ISO 8601). */
  deadline: z.iso.datetime(),
  /** Number of checks so far, for the backoff. */
  checks: z.number().check(z.int(), z.minimum(0)),
});
export type BootstrapCheck = z.infer<typeof BootstrapCheckSchema>;
