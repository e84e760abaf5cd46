import * as z from 'zod';
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
    'command-id': z.string().min(1).max(64),
    'document-name': z.string().min(1),
    'instance-id': z.string().regex(/^(i-[0-9a-f]{8,17}|mi-[0-9a-f]{17})$/),
    'requested-date-time': z.string().optional(),
    status: z.string().min(1),
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
    'command-id': z.string().min(1).max(64),
    'document-name': z.string().min(1),
    status: z.string().min(1),
  }),
);

export type CommandCompletionEvent = z.infer<typeof CommandCompletionEventSchema>;
