import type { SQSEvent } from 'aws-lambda';
import { loadEvent } from './fixtures.ts';

/** A Run Command status event (events/command-status/success.json) for one invocation. */
export function statusEvent(commandId: string, instanceId: string, status = 'Success') {
  const event = loadEvent<any>('command-status/success');
  event.id = `${commandId}-${instanceId}-${status}-${Math.random().toString(16).slice(2)}`;
  event.resources = [`arn:aws:ec2:eu-west-1:123456789012:instance/${instanceId}`];
  event.detail['command-id'] = commandId;
  event.detail['instance-id'] = instanceId;
  event.detail.status = status;
  return event;
}

/** An SQS batch (events/command-status/sqs-batch.json) carrying these bodies. */
export function sqsBatch(bodies: unknown[]): SQSEvent {
  const template = loadEvent<any>('command-status/sqs-batch').Records[0];
  return {
    Records: bodies.map((body, index) => ({
      ...structuredClone(template),
      messageId: `msg-${index}-${Math.random().toString(16).slice(2)}`,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    })),
  };
}

/** A command's own status-change event (events/command-status/command-completed.json). */
export function commandEvent(commandId: string, status = 'Success') {
  const event = loadEvent<any>('command-status/command-completed');
  event.id = `${commandId}-${status}-${Math.random().toString(16).slice(2)}`;
  event.detail['command-id'] = commandId;
  event.detail.status = status;
  return event;
}
