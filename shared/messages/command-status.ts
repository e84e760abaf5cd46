import * as z from '../zod.ts';
import { eventBridgeEvent } from './eventbridge.ts';

/**
 * Run Command's per-instance status event
 * (https://docs.aws.amazon.com/systems-manager/latest/userguide/monitoring-systems-manager-event-examples.html
 * — "EC2 Command Invocation Status-change Notification"). It carries no output, exit code or
 * comment: those come from ListCommandInvocations / GetCommandInvocation. Use
 * `detail.instance-id`, not `resources` (AWS's own sample shows them differing).
 */
export const CommandInvocationEventSchema = eventBridgeEvent(
  'aws.ssm',
  'EC2 Command Invocation Status-change Notification',
  z.object({
    'command-id': z.string().check(z.minLength(1), z.maxLength(64)),
    'document-name': z.string().check(z.minLength(1)),
    'instance-id': z.string().check(z.regex(/^(i-[0-9a-f]{8,17}|mi-[0-9a-f]{17})$/)),
    'requested-date-time': z.optional(z.string()),
    status: z.string().check(z.minLength(1)),
  }),
);

export type CommandInvocationEvent = z.infer<typeof CommandInvocationEventSchema>;

/**
 * Run Command's per-command status event ("EC2 Command Status-change Notification", same page
 * as above): sent when the whole command changes status, terminal once every invocation is.
 * The tracker lists a finished command's invocations once, for all its instances together.
 */
export const CommandCompletionEventSchema = eventBridgeEvent(
  'aws.ssm',
  'EC2 Command Status-change Notification',
  z.object({
    'command-id': z.string().check(z.minLength(1), z.maxLength(64)),
    'document-name': z.string().check(z.minLength(1)),
    status: z.string().check(z.minLength(1)),
  }),
);

export type CommandCompletionEvent = z.infer<typeof CommandCompletionEventSchema>;
