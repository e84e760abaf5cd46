/**
 * SNS Publish over the Query protocol (form-encoded POST, XML answers in the 2010-03-31
 * namespace), as @aws-sdk/client-sns sends it. Published messages are recorded for the tests and
 * fanned out to the topic's sqs/lambda subscriptions; email subscriptions are recorded only.
 * Limits (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html): Message ≤ 256 KB
 * including attributes; Subject ASCII, ≤ 100 characters, starting with a letter, number or
 * punctuation, no line breaks or control characters. Errors: API_Publish.html "Errors",
 * the Query error document: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-responses.html
 */
import { randomUUID } from 'node:crypto';
import {
  ACCOUNT_ID,
  decodeToken,
  encodeToken,
  parseForm,
  type Reply,
  type Request,
  ServiceError,
  type ServiceFaults,
  shouldThrottle,
  xmlEscape,
} from './http.ts';

const NAMESPACE = 'http://sns.amazonaws.com/doc/2010-03-31/';

export interface PublishedMessage {
  messageId: string;
  topicArn: string;
  subject?: string;
  message: string;
  messageAttributes: Record<string, { DataType: string; StringValue?: string }>;
  timestamp: string;
  caller: string;
}

export interface Subscription {
  protocol: string;
  endpoint: string;
  raw: boolean;
}

export interface Topic {
  arn: string;
  name: string;
  subscriptions: Subscription[];
}

export type Deliver = (
  subscription: Subscription,
  notification: Record<string, unknown>,
  message: PublishedMessage,
) => void;

export class SnsService {
  readonly topics = new Map<string, Topic>();
  readonly published: PublishedMessage[] = [];
  faults: ServiceFaults = {};
  /** Simulated time for message timestamps (the local cloud's clock); real time by default. */
  now: () => Date = () => new Date();
  private readonly region: string;
  private readonly deliver: Deliver;
  private readonly listeners = new Set<(message: PublishedMessage) => void>();

  constructor(region: string, deliver: Deliver) {
    this.region = region;
    this.deliver = deliver;
  }

  createTopic(name: string): Topic {
    const arn = `arn:aws:sns:${this.region}:${ACCOUNT_ID}:${name}`;
    const topic: Topic = { arn, name, subscriptions: [] };
    this.topics.set(arn, topic);
    return topic;
  }

  onPublish(listener: (message: PublishedMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  handle(request: Request): Reply {
    const form = parseForm(request.body);
    const action = form.get('Action') ?? '';
    try {
      if (shouldThrottle(this.faults)) throw new ServiceError('Throttling', 'Rate exceeded');
      if (
        action === 'ListTopics' ||
        action === 'ListSubscriptions' ||
        action === 'ListSubscriptionsByTopic'
      ) {
        return xml(
          200,
          `<${action}Response xmlns="${NAMESPACE}"><${action}Result>${this.list(action, form)}</${action}Result><ResponseMetadata><RequestId>${request.requestId}</RequestId></ResponseMetadata></${action}Response>`,
        );
      }
      if (action !== 'Publish') {
        // Common errors (CommonErrors.html): InvalidAction, 400.
        throw new ServiceError(
          'InvalidAction',
          `The action or operation requested is invalid. Verify that the action is typed correctly.`,
        );
      }
      const messageId = this.publish(form, request.accessKeyId);
      return xml(
        200,
        `<PublishResponse xmlns="${NAMESPACE}"><PublishResult><MessageId>${messageId}</MessageId></PublishResult><ResponseMetadata><RequestId>${request.requestId}</RequestId></ResponseMetadata></PublishResponse>`,
      );
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return xml(
        error.status,
        `<ErrorResponse xmlns="${NAMESPACE}"><Error><Type>Sender</Type><Code>${error.code}</Code><Message>${xmlEscape(error.message)}</Message></Error><RequestId>${request.requestId}</RequestId></ErrorResponse>`,
      );
    }
  }

  /**
   * ListTopics (API_ListTopics.html, 100 a page), ListSubscriptions (API_ListSubscriptions.html)
   * and ListSubscriptionsByTopic (NotFound for an unknown topic). An email subscription
   * nobody confirmed lists as PendingConfirmation.
   */
  private list(action: string, form: Map<string, string>): string {
    const token = form.get('NextToken');
    const fingerprint = `${action}:${form.get('TopicArn') ?? ''}`;
    const start = token === undefined ? 0 : decodeToken(token, fingerprint);
    if (start === undefined)
      throw new ServiceError('InvalidParameter', 'Invalid parameter: NextToken');
    const topics = [...this.topics.values()].sort((a, b) => a.arn.localeCompare(b.arn));
    let members: string[];
    if (action === 'ListTopics') {
      members = topics.map((topic) => `<member><TopicArn>${topic.arn}</TopicArn></member>`);
    } else {
      let selected = topics;
      if (action === 'ListSubscriptionsByTopic') {
        const topic = this.topics.get(form.get('TopicArn') ?? '');
        if (!topic) throw new ServiceError('NotFound', 'Topic does not exist', 404);
        selected = [topic];
      }
      members = selected.flatMap((topic) =>
        topic.subscriptions.map((subscription, index) => {
          const arn =
            subscription.protocol === 'email'
              ? 'PendingConfirmation'
              : `${topic.arn}:00000000-0000-4000-8000-${String(index).padStart(12, '0')}`;
          return `<member><SubscriptionArn>${arn}</SubscriptionArn><Owner>${ACCOUNT_ID}</Owner><Protocol>${xmlEscape(subscription.protocol)}</Protocol><Endpoint>${xmlEscape(subscription.endpoint)}</Endpoint><TopicArn>${topic.arn}</TopicArn></member>`;
        }),
      );
    }
    const size = 100;
    const page = members.slice(start, start + size);
    const next = start + size < members.length ? encodeToken(start + size, fingerprint) : undefined;
    const element = action === 'ListTopics' ? 'Topics' : 'Subscriptions';
    return `<${element}>${page.join('')}</${element}>${next ? `<NextToken>${next}</NextToken>` : ''}`;
  }

  private publish(form: Map<string, string>, caller: string): string {
    const topicArn = form.get('TopicArn') ?? form.get('TargetArn');
    if (!topicArn)
      throw new ServiceError(
        'InvalidParameter',
        'Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter',
      );
    const message = form.get('Message');
    if (message === undefined || message === '') {
      throw new ServiceError('InvalidParameter', 'Invalid parameter: Empty message');
    }
    const subject = form.get('Subject');
    if (subject !== undefined) {
      if (
        subject.length === 0 ||
        subject.length > 100 ||
        !/^[\x21-\x7e][\x20-\x7e]*$/.test(subject)
      ) {
        throw new ServiceError('InvalidParameter', 'Invalid parameter: Subject');
      }
    }
    const messageAttributes: PublishedMessage['messageAttributes'] = {};
    for (let n = 1; form.has(`MessageAttributes.entry.${n}.Name`); n += 1) {
      const name = form.get(`MessageAttributes.entry.${n}.Name`) as string;
      const dataType = form.get(`MessageAttributes.entry.${n}.Value.DataType`);
      const stringValue = form.get(`MessageAttributes.entry.${n}.Value.StringValue`);
      if (!dataType)
        throw new ServiceError(
          'ParameterValueInvalid',
          `The message attribute '${name}' must contain non-empty message attribute type.`,
        );
      if (stringValue === undefined || stringValue === '') {
        throw new ServiceError(
          'ParameterValueInvalid',
          `The message attribute '${name}' must contain non-empty message attribute value for message attribute type '${dataType}'.`,
        );
      }
      messageAttributes[name] = { DataType: dataType, StringValue: stringValue };
    }
    const size =
      Buffer.byteLength(message) +
      Object.entries(messageAttributes).reduce(
        (sum, [name, value]) =>
          sum +
          Buffer.byteLength(name) +
          Buffer.byteLength(value.DataType) +
          Buffer.byteLength(value.StringValue ?? ''),
        0,
      );
    if (size > 262144) {
      throw new ServiceError('InvalidParameter', 'Invalid parameter: Message too long');
    }
    const topic = this.topics.get(topicArn);
    if (!topic) throw new ServiceError('NotFound', 'Topic does not exist', 404);
    const published: PublishedMessage = {
      messageId: randomUUID(),
      topicArn,
      ...(subject === undefined ? {} : { subject }),
      message,
      messageAttributes,
      timestamp: this.now().toISOString(),
      caller,
    };
    this.published.push(published);
    for (const listener of [...this.listeners]) listener(published);
    for (const subscription of topic.subscriptions) {
      // The JSON notification SQS/Lambda subscribers receive (sns-message-and-json-formats.html).
      const notification = {
        Type: 'Notification',
        MessageId: published.messageId,
        TopicArn: topicArn,
        ...(subject === undefined ? {} : { Subject: subject }),
        Message: message,
        Timestamp: published.timestamp,
        SignatureVersion: '1',
        Signature: 'local-cloud',
        SigningCertURL: 'https://sns.local/cert.pem',
        UnsubscribeURL: `https://sns.local/?Action=Unsubscribe&SubscriptionArn=${topicArn}:local`,
        MessageAttributes: Object.fromEntries(
          Object.entries(messageAttributes).map(([name, value]) => [
            name,
            { Type: value.DataType, Value: value.StringValue },
          ]),
        ),
      };
      this.deliver(subscription, notification, published);
    }
    return published.messageId;
  }
}

function xml(status: number, body: string): Reply {
  return { status, headers: { 'content-type': 'text/xml' }, body };
}
