import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { logger } from './powertools.ts';

/** One message for the on-call. Never carries a secret value: only names, ids and reasons. */
export interface Alert {
  subject: string;
  lines: string[];
  attributes: Record<string, string>;
}

// SNS Subject: ASCII, at most 100 characters
// (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html).
const MAX_SUBJECT = 100;

/**
 * Publishes an alert to the topic, or only logs it when no topic is configured (local runs).
 * Throws the SDK error if publishing fails, so the caller's retry policy applies.
 */
export async function sendAlert(
  sns: SNSClient,
  topicArn: string | undefined,
  alert: Alert,
): Promise<void> {
  logger.warn(alert.subject, { alert: alert.attributes });
  if (topicArn === undefined || topicArn === '') return;
  await sns.send(
    new PublishCommand({
      TopicArn: topicArn,
      Subject: alert.subject.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_SUBJECT),
      Message: alert.lines.join('\n'),
      MessageAttributes: Object.fromEntries(
        Object.entries(alert.attributes).map(([key, value]) => [
          key,
          { DataType: 'String', StringValue: value },
        ]),
      ),
    }),
  );
}

/** The alert for a change that sends nothing: a deleted parameter, a label moved, and so on. */
export function parameterNotPushedAlert(change: {
  operation: string;
  parameter: string;
  environment?: string;
  eventId: string;
}): Alert {
  const where = change.environment === undefined ? '' : ` (${change.environment})`;
  return {
    subject: `secrets-fanout: ${change.operation} on ${change.parameter}${where}, nothing pushed`,
    lines: [
      `Parameter Store reported "${change.operation}" for ${change.parameter}${where}.`,
      'secrets-fanout pushed nothing: instances keep the file they have.',
      change.operation === 'Delete'
        ? 'If the deletion was a mistake, restore the parameter: the next put is pushed to every instance.'
        : 'Nothing to do unless the change was meant to alter the content.',
      `EventBridge event id: ${change.eventId}`,
    ],
    attributes: {
      kind: 'parameter-not-pushed',
      operation: change.operation,
      parameter: change.parameter,
      ...(change.environment === undefined ? {} : { environment: change.environment }),
    },
  };
}
