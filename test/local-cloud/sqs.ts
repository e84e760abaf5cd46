/**
 * SQS in both of its protocols. The JSON 1.0 protocol as the AWS SDK v3 (3.1169) and newer CLIs
 * speak it (POST /, X-Amz-Target: AmazonSQS.<Op>, application/x-amz-json-1.0), with the
 * `x-amzn-query-error` header the "awsQueryCompatible" clients read to keep the old Query error
 * codes; and the Query protocol (form-encoded Action=<Op>&Version=2012-11-05, XML answers) that
 * SQS still accepts and aws-cli before 2.15 / botocore before 1.31.64 use (Debian's 2.9 does).
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-json-faqs.html
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-making-api-requests-xml.html
 * Errors: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/CommonErrors.html
 * Limits: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html
 * (DelaySeconds 0-900, 256 KiB body), API_ReceiveMessage.html (MaxNumberOfMessages 1-10,
 * WaitTimeSeconds 0-20, VisibilityTimeout 0-43200), and the redrive policy
 * (sqs-dead-letter-queues.html: moved when ReceiveCount exceeds maxReceiveCount).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Clock } from './clock.ts';
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

export interface MessageAttributeValue {
  DataType: string;
  StringValue?: string;
  BinaryValue?: string;
}

export interface QueueMessage {
  messageId: string;
  body: string;
  md5OfBody: string;
  md5OfMessageAttributes?: string;
  messageAttributes: Record<string, MessageAttributeValue>;
  sentTimestamp: number;
  firstReceiveTimestamp?: number;
  receiveCount: number;
  /** Real epoch ms from which the message can be received. */
  visibleAt: number;
  receiptHandle?: string;
  senderId: string;
}

export interface QueueOptions {
  name: string;
  region: string;
  endpoint: string;
  visibilityTimeout?: number;
  delaySeconds?: number;
  messageRetentionPeriod?: number;
  redrive?: { deadLetterTargetArn: string; maxReceiveCount: number };
  /**
   * Real milliseconds a delayed message (DelaySeconds > 0) waits at least. A fast clock turns
   * a 15 s delay into 30 ms, shorter than the work AWS finishes well inside 15 s (a DynamoDB
   * transaction), which would reorder what cannot reorder in AWS. Default 0.
   */
  delayFloorMs?: number;
}

const md5 = (data: Buffer | string) => createHash('md5').update(data).digest('hex');

/** MD5OfMessageAttributes as SQS computes it (sqs-message-metadata.html#sqs-attributes-md5-message-digest-calculation). */
export function md5OfMessageAttributes(
  attributes: Record<string, MessageAttributeValue>,
): string | undefined {
  const names = Object.keys(attributes).sort();
  if (names.length === 0) return undefined;
  const parts: Buffer[] = [];
  const withLength = (value: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(value.length);
    parts.push(length, value);
  };
  for (const name of names) {
    const attribute = attributes[name] as MessageAttributeValue;
    withLength(Buffer.from(name, 'utf8'));
    withLength(Buffer.from(attribute.DataType, 'utf8'));
    if (attribute.BinaryValue !== undefined) {
      parts.push(Buffer.from([2]));
      withLength(Buffer.from(attribute.BinaryValue, 'base64'));
    } else {
      parts.push(Buffer.from([1]));
      withLength(Buffer.from(attribute.StringValue ?? '', 'utf8'));
    }
  }
  return md5(Buffer.concat(parts));
}

export class Queue {
  readonly name: string;
  readonly arn: string;
  readonly url: string;
  readonly visibilityTimeout: number;
  readonly delaySeconds: number;
  readonly messageRetentionPeriod: number;
  readonly redrive: QueueOptions['redrive'];
  readonly delayFloorMs: number;
  readonly created = Math.floor(Date.now() / 1000);
  messages: QueueMessage[] = [];
  /** Messages moved here from a source queue, or deleted: for tests. */
  readonly deleted: QueueMessage[] = [];
  private readonly clock: Clock;
  private readonly listeners = new Set<() => void>();
  private readonly resolveQueue: (arn: string) => Queue | undefined;

  constructor(
    options: QueueOptions,
    clock: Clock,
    resolveQueue: (arn: string) => Queue | undefined,
  ) {
    this.name = options.name;
    this.arn = `arn:aws:sqs:${options.region}:${ACCOUNT_ID}:${options.name}`;
    this.url = `${options.endpoint}/${ACCOUNT_ID}/${options.name}`;
    this.visibilityTimeout = options.visibilityTimeout ?? 30;
    this.delaySeconds = options.delaySeconds ?? 0;
    this.messageRetentionPeriod = options.messageRetentionPeriod ?? 345600;
    this.redrive = options.redrive;
    this.delayFloorMs = options.delayFloorMs ?? 0;
    this.clock = clock;
    this.resolveQueue = resolveQueue;
  }

  /** Calls `listener` whenever a message may have become receivable. Returns an unsubscribe. */
  onAvailable(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Wakes the listeners once a message is visible. Node's timers run on the monotonic clock and
   * can fire a millisecond before Date.now() reaches `visibleAt`; a wake that early re-arms
   * instead of waking listeners that would find nothing.
   */
  private notifyAt(visibleAt: number): void {
    const wake = () => {
      if (this.clock.realNow() < visibleAt) {
        this.notifyAt(visibleAt);
        return;
      }
      for (const listener of [...this.listeners]) listener();
    };
    const delayMs = visibleAt - this.clock.realNow();
    if (delayMs <= 0) queueMicrotask(wake);
    else this.clock.afterRealMs(delayMs, wake);
  }

  /** Real epoch ms at which the next not-yet-visible message becomes visible, if any. */
  nextVisibleAt(): number | undefined {
    const now = this.clock.realNow();
    let next: number | undefined;
    for (const message of this.messages) {
      if (message.visibleAt > now && (next === undefined || message.visibleAt < next))
        next = message.visibleAt;
    }
    return next;
  }

  /** How many messages can be received now. */
  visibleCount(): number {
    const now = this.clock.realNow();
    return this.messages.filter((message) => message.visibleAt <= now).length;
  }

  send(
    body: string,
    options: {
      delaySeconds?: number;
      messageAttributes?: Record<string, MessageAttributeValue>;
      senderId?: string;
    } = {},
  ): QueueMessage {
    const delay = options.delaySeconds ?? this.delaySeconds;
    checkRange('DelaySeconds', delay, 0, 900);
    if (Buffer.byteLength(body) > 262144) {
      throw sqsError(
        'InvalidParameterValue',
        'One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.',
      );
    }
    if (body.length === 0) {
      throw sqsError('MissingParameter', 'The request must contain the parameter MessageBody.');
    }
    const messageAttributes = options.messageAttributes ?? {};
    const md5Attributes = md5OfMessageAttributes(messageAttributes);
    const message: QueueMessage = {
      messageId: randomUUID(),
      body,
      md5OfBody: md5(body),
      ...(md5Attributes === undefined ? {} : { md5OfMessageAttributes: md5Attributes }),
      messageAttributes,
      sentTimestamp: this.clock.nowMs(),
      receiveCount: 0,
      visibleAt:
        this.clock.realNow() +
        (delay > 0
          ? Math.max(this.clock.realMs(delay), this.delayFloorMs)
          : this.clock.realMs(delay)),
      senderId: options.senderId ?? 'AIDALOCALCLOUD',
    };
    this.messages.push(message);
    this.notifyAt(message.visibleAt);
    return message;
  }

  /** Receives up to `max` visible messages, making them invisible for the visibility timeout. */
  receive(max: number, visibilityTimeout = this.visibilityTimeout): QueueMessage[] {
    const now = this.clock.realNow();
    const out: QueueMessage[] = [];
    for (const message of [...this.messages]) {
      if (out.length >= max) break;
      if (message.visibleAt > now) continue;
      if (this.redrive && message.receiveCount >= this.redrive.maxReceiveCount) {
        // Redrive happens when a receive would push ReceiveCount past maxReceiveCount.
        const dlq = this.resolveQueue(this.redrive.deadLetterTargetArn);
        this.remove(message);
        if (dlq) {
          dlq.messages.push({ ...message, visibleAt: now });
          dlq.notifyAt(now);
        }
        continue;
      }
      message.receiveCount += 1;
      message.firstReceiveTimestamp ??= this.clock.nowMs();
      message.receiptHandle = Buffer.from(
        `${this.name} ${message.messageId} ${randomUUID()}`,
      ).toString('base64');
      message.visibleAt = now + this.clock.realMs(visibilityTimeout);
      this.notifyAt(message.visibleAt);
      out.push(message);
    }
    return out;
  }

  private findByHandle(receiptHandle: string): QueueMessage | undefined {
    return this.messages.find((message) => message.receiptHandle === receiptHandle);
  }

  delete(receiptHandle: string): void {
    const message = this.findByHandle(receiptHandle);
    if (message) {
      this.remove(message);
      this.deleted.push(message);
      return;
    }
    if (!isReceiptHandle(receiptHandle, this.name)) {
      throw sqsError(
        'ReceiptHandleIsInvalid',
        `The input receipt handle "${receiptHandle}" is not a valid receipt handle.`,
      );
    }
  }

  changeVisibility(receiptHandle: string, seconds: number): void {
    checkRange('VisibilityTimeout', seconds, 0, 43200);
    const message = this.findByHandle(receiptHandle);
    if (!message || message.visibleAt <= this.clock.realNow()) {
      if (!isReceiptHandle(receiptHandle, this.name)) {
        throw sqsError(
          'ReceiptHandleIsInvalid',
          `The input receipt handle "${receiptHandle}" is not a valid receipt handle.`,
        );
      }
      throw sqsError(
        'MessageNotInflight',
        'Message does not exist or is not available for visibility timeout change.',
      );
    }
    message.visibleAt = this.clock.realNow() + this.clock.realMs(seconds);
    this.notifyAt(message.visibleAt);
  }

  private remove(message: QueueMessage): void {
    this.messages = this.messages.filter((candidate) => candidate !== message);
  }

  attributes(): Record<string, string> {
    const now = this.clock.realNow();
    const inFlight = this.messages.filter((m) => m.visibleAt > now && m.receiveCount > 0).length;
    const delayed = this.messages.filter((m) => m.visibleAt > now && m.receiveCount === 0).length;
    return {
      QueueArn: this.arn,
      ApproximateNumberOfMessages: String(this.messages.length - inFlight - delayed),
      ApproximateNumberOfMessagesNotVisible: String(inFlight),
      ApproximateNumberOfMessagesDelayed: String(delayed),
      VisibilityTimeout: String(this.visibilityTimeout),
      DelaySeconds: String(this.delaySeconds),
      MessageRetentionPeriod: String(this.messageRetentionPeriod),
      MaximumMessageSize: '262144',
      ReceiveMessageWaitTimeSeconds: '0',
      CreatedTimestamp: String(this.created),
      LastModifiedTimestamp: String(this.created),
      SqsManagedSseEnabled: 'true',
      ...(this.redrive ? { RedrivePolicy: JSON.stringify(this.redrive) } : {}),
    };
  }
}

function isReceiptHandle(handle: string, queueName: string): boolean {
  return Buffer.from(handle, 'base64').toString('utf8').startsWith(`${queueName} `);
}

function checkRange(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw sqsError(
      'InvalidParameterValue',
      `Value ${String(value)} for parameter ${name} is invalid. Reason: Must be >= ${min} and <= ${max}.`,
    );
  }
}

function sqsError(code: string, message: string): ServiceError {
  return new ServiceError(code, message);
}

// The JSON error codes and the Query codes they stand for (x-amzn-query-error).
const QUERY_CODES: Record<string, string> = {
  QueueDoesNotExist: 'AWS.SimpleQueueService.NonExistentQueue',
  ReceiptHandleIsInvalid: 'ReceiptHandleIsInvalid',
  MessageNotInflight: 'AWS.SimpleQueueService.MessageNotInflight',
  TooManyEntriesInBatchRequest: 'AWS.SimpleQueueService.TooManyEntriesInBatchRequest',
  EmptyBatchRequest: 'AWS.SimpleQueueService.EmptyBatchRequest',
  BatchEntryIdsNotDistinct: 'AWS.SimpleQueueService.BatchEntryIdsNotDistinct',
  RequestThrottled: 'RequestThrottled',
};

type Json = Record<string, any>;

const SQS_XMLNS = 'http://queue.amazonaws.com/doc/2012-11-05/';

/** The operations this local SQS implements (both protocols). */
const QUERY_OPERATIONS = new Set([
  'GetQueueUrl',
  'SendMessage',
  'SendMessageBatch',
  'ReceiveMessage',
  'DeleteMessage',
  'DeleteMessageBatch',
  'ChangeMessageVisibility',
  'GetQueueAttributes',
  'PurgeQueue',
  'ListQueues',
]);

const NUMBERS = new Set([
  'DelaySeconds',
  'MaxNumberOfMessages',
  'WaitTimeSeconds',
  'VisibilityTimeout',
  'MaxResults',
]);

/**
 * Query parameters as the JSON input of the same operation: `AttributeName.1` → AttributeNames,
 * `MessageAttribute.1.Name` / `.Value.StringValue` → MessageAttributes, batch entries
 * `SendMessageBatchRequestEntry.1.Id` → Entries (flattened lists, 1-based).
 */
export function queryInput(form: Map<string, string>): Json {
  const input: Json = {};
  const entries = new Map<number, Map<string, string>>();
  const attributes = (prefix: string, from: Map<string, string>) => {
    const out: Record<string, MessageAttributeValue> = {};
    const byIndex = new Map<string, Map<string, string>>();
    for (const [key, value] of from) {
      const match = new RegExp(`^${prefix}\\.(\\d+)\\.(.+)$`).exec(key);
      if (!match) continue;
      const [, index = '', field = ''] = match;
      if (!byIndex.has(index)) byIndex.set(index, new Map());
      byIndex.get(index)?.set(field, value);
    }
    for (const fields of byIndex.values()) {
      const name = fields.get('Name');
      if (name === undefined) continue;
      out[name] = {
        DataType: fields.get('Value.DataType') ?? '',
        ...(fields.has('Value.StringValue')
          ? { StringValue: fields.get('Value.StringValue') }
          : {}),
        ...(fields.has('Value.BinaryValue')
          ? { BinaryValue: fields.get('Value.BinaryValue') }
          : {}),
      };
    }
    return Object.keys(out).length > 0 ? out : undefined;
  };
  const list = (prefix: string) =>
    [...form.entries()]
      .filter(([key]) => new RegExp(`^${prefix}\\.\\d+$`).test(key))
      .sort(([a], [b]) => Number(a.split('.')[1]) - Number(b.split('.')[1]))
      .map(([, value]) => value);
  for (const [key, value] of form) {
    if (key === 'Action' || key === 'Version') continue;
    const entry =
      /^(?:SendMessageBatchRequestEntry|DeleteMessageBatchRequestEntry)\.(\d+)\.(.+)$/.exec(key);
    if (entry) {
      const index = Number(entry[1]);
      if (!entries.has(index)) entries.set(index, new Map());
      entries.get(index)?.set(entry[2] ?? '', value);
      continue;
    }
    if (/\.\d+(\.|$)/.test(key)) continue;
    input[key] = NUMBERS.has(key) && /^-?\d+$/.test(value) ? Number(value) : value;
  }
  const attributeNames = list('AttributeName');
  if (attributeNames.length > 0) input.AttributeNames = attributeNames;
  const systemNames = list('MessageSystemAttributeName');
  if (systemNames.length > 0) input.MessageSystemAttributeNames = systemNames;
  const messageAttributeNames = list('MessageAttributeName');
  if (messageAttributeNames.length > 0) input.MessageAttributeNames = messageAttributeNames;
  const messageAttributes = attributes('MessageAttribute', form);
  if (messageAttributes) input.MessageAttributes = messageAttributes;
  if (entries.size > 0) {
    input.Entries = [...entries.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, fields]) => {
        const out: Json = {};
        for (const [field, value] of fields) {
          if (field.startsWith('MessageAttribute.')) continue;
          out[field] = NUMBERS.has(field) && /^-?\d+$/.test(value) ? Number(value) : value;
        }
        const entryAttributes = attributes('MessageAttribute', fields);
        if (entryAttributes) out.MessageAttributes = entryAttributes;
        return out;
      });
  }
  return input;
}

// Flattened list members in SQS's XML (API reference, "Response Elements").
const XML_MEMBERS: Record<string, string> = {
  Messages: 'Message',
  QueueUrls: 'QueueUrl',
};

/** A JSON output as the Query protocol's XML result elements. */
function toXml(output: Json, parent = ''): string {
  let out = '';
  for (const [key, value] of Object.entries(output)) {
    if (value === undefined) continue;
    if (key === 'Attributes' || key === 'MessageAttributes') {
      const element = key === 'Attributes' ? 'Attribute' : 'MessageAttribute';
      for (const [name, attribute] of Object.entries(value as Json)) {
        const inner =
          typeof attribute === 'object'
            ? toXml({
                ...(attribute.StringValue === undefined
                  ? {}
                  : { StringValue: attribute.StringValue }),
                ...(attribute.BinaryValue === undefined
                  ? {}
                  : { BinaryValue: attribute.BinaryValue }),
                DataType: attribute.DataType,
              })
            : xmlEscape(String(attribute));
        out += `<${element}><Name>${xmlEscape(name)}</Name><Value>${inner}</Value></${element}>`;
      }
      continue;
    }
    if (Array.isArray(value)) {
      const element =
        key === 'Successful'
          ? `${parent}ResultEntry`
          : key === 'Failed'
            ? 'BatchResultErrorEntry'
            : (XML_MEMBERS[key] ?? key);
      for (const item of value) {
        out +=
          typeof item === 'object'
            ? `<${element}>${toXml(item as Json)}</${element}>`
            : `<${element}>${xmlEscape(String(item))}</${element}>`;
      }
      continue;
    }
    out +=
      typeof value === 'object'
        ? `<${key}>${toXml(value as Json)}</${key}>`
        : `<${key}>${xmlEscape(String(value))}</${key}>`;
  }
  return out;
}

export class SqsService {
  readonly queues = new Map<string, Queue>();
  private readonly clock: Clock;
  private readonly region: string;
  endpoint = '';
  faults: ServiceFaults = {};
  /** See QueueOptions.delayFloorMs; applies to the queues created after it is set. */
  delayFloorMs = 0;

  constructor(clock: Clock, region: string) {
    this.clock = clock;
    this.region = region;
  }

  createQueue(options: Omit<QueueOptions, 'region' | 'endpoint'>): Queue {
    const queue = new Queue(
      { delayFloorMs: this.delayFloorMs, ...options, region: this.region, endpoint: this.endpoint },
      this.clock,
      (arn) => this.byArn(arn),
    );
    this.queues.set(queue.name, queue);
    return queue;
  }

  byArn(arn: string): Queue | undefined {
    return [...this.queues.values()].find((queue) => queue.arn === arn);
  }

  byUrl(url: unknown): Queue {
    const name = typeof url === 'string' ? url.split('/').filter(Boolean).at(-1) : undefined;
    const queue = name === undefined ? undefined : this.queues.get(name);
    if (!queue) throw sqsError('QueueDoesNotExist', 'The specified queue does not exist.');
    return queue;
  }

  async handle(request: Request): Promise<Reply> {
    const target = request.headers['x-amz-target'];
    if (target === undefined) return this.handleQuery(request);
    const operation = String(target).startsWith('AmazonSQS.')
      ? String(target).slice('AmazonSQS.'.length)
      : '';
    try {
      if (shouldThrottle(this.faults)) throw sqsError('RequestThrottled', 'Rate exceeded');
      let input: Json;
      try {
        input = (request.body ? JSON.parse(request.body) : {}) as Json;
      } catch {
        throw new ServiceError(
          'SerializationException',
          'Start of structure or map found where not expected.',
        );
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        throw new ServiceError(
          'SerializationException',
          'Start of structure or map found where not expected.',
        );
      }
      const output = await this.call(operation, input, request.accessKeyId);
      return {
        status: 200,
        headers: { 'content-type': 'application/x-amz-json-1.0' },
        body: JSON.stringify(output),
      };
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return {
        status: error.status,
        headers: {
          'content-type': 'application/x-amz-json-1.0',
          'x-amzn-query-error': `${QUERY_CODES[error.code] ?? error.code};Sender`,
        },
        body: JSON.stringify({
          __type:
            error.code === 'UnknownOperationException'
              ? 'com.amazon.coral.service#UnknownOperationException'
              : `com.amazonaws.sqs#${error.code}`,
          message: error.message,
        }),
      };
    }
  }

  /** The Query protocol: form parameters in, XML out (same operations, same validation). */
  private async handleQuery(request: Request): Promise<Reply> {
    const form =
      request.method === 'GET' ? new Map(request.query.entries()) : parseForm(request.body);
    const operation = form.get('Action') ?? '';
    // A queue URL as the request's path stands for QueueUrl (the old Query style).
    if (!form.has('QueueUrl') && request.path !== '/' && request.path.split('/').length >= 3) {
      form.set('QueueUrl', `${this.endpoint}${request.path}`);
    }
    const xml = (status: number, body: string): Reply => ({
      status,
      headers: { 'content-type': 'text/xml' },
      body: `<?xml version="1.0"?>${body}`,
    });
    try {
      if (shouldThrottle(this.faults)) throw sqsError('RequestThrottled', 'Rate exceeded');
      if (!QUERY_OPERATIONS.has(operation)) {
        throw new ServiceError(
          'InvalidAction',
          `The action or operation requested is invalid. Verify that the action is typed correctly.`,
        );
      }
      const output = await this.call(operation, queryInput(form), request.accessKeyId);
      return xml(
        200,
        `<${operation}Response xmlns="${SQS_XMLNS}">${
          operation === 'DeleteMessage' ||
          operation === 'ChangeMessageVisibility' ||
          operation === 'PurgeQueue'
            ? ''
            : `<${operation}Result>${toXml(output, operation)}</${operation}Result>`
        }<ResponseMetadata><RequestId>${request.requestId}</RequestId></ResponseMetadata></${operation}Response>`,
      );
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return xml(
        error.status,
        `<ErrorResponse xmlns="${SQS_XMLNS}"><Error><Type>Sender</Type><Code>${xmlEscape(
          QUERY_CODES[error.code] ?? error.code,
        )}</Code><Message>${xmlEscape(error.message)}</Message><Detail/></Error><RequestId>${
          request.requestId
        }</RequestId></ErrorResponse>`,
      );
    }
  }

  private async call(operation: string, input: Json, caller: string): Promise<Json> {
    switch (operation) {
      case 'GetQueueUrl': {
        const queue = this.queues.get(String(input.QueueName));
        if (!queue) throw sqsError('QueueDoesNotExist', 'The specified queue does not exist.');
        return { QueueUrl: queue.url };
      }
      case 'SendMessage': {
        const queue = this.byUrl(input.QueueUrl);
        const message = queue.send(String(input.MessageBody ?? ''), {
          ...(input.DelaySeconds === undefined ? {} : { delaySeconds: input.DelaySeconds }),
          ...(input.MessageAttributes ? { messageAttributes: input.MessageAttributes } : {}),
          senderId: caller,
        });
        return {
          MessageId: message.messageId,
          MD5OfMessageBody: message.md5OfBody,
          ...(message.md5OfMessageAttributes
            ? { MD5OfMessageAttributes: message.md5OfMessageAttributes }
            : {}),
        };
      }
      case 'SendMessageBatch': {
        const queue = this.byUrl(input.QueueUrl);
        const entries = (input.Entries ?? []) as Json[];
        if (entries.length === 0)
          throw sqsError(
            'EmptyBatchRequest',
            'There should be at least one SendMessageBatchRequestEntry in the request.',
          );
        if (entries.length > 10)
          throw sqsError(
            'TooManyEntriesInBatchRequest',
            `Maximum number of entries per request are 10. You have sent ${entries.length}.`,
          );
        if (new Set(entries.map((entry) => entry.Id)).size !== entries.length) {
          throw sqsError('BatchEntryIdsNotDistinct', `Id ${entries[0]?.Id} repeated.`);
        }
        const total = entries.reduce(
          (sum, entry) => sum + Buffer.byteLength(String(entry.MessageBody ?? '')),
          0,
        );
        if (total > 262144)
          throw sqsError(
            'BatchRequestTooLong',
            'Batch requests cannot be longer than 262144 bytes.',
          );
        const Successful: Json[] = [];
        const Failed: Json[] = [];
        for (const entry of entries) {
          try {
            const message = queue.send(String(entry.MessageBody ?? ''), {
              ...(entry.DelaySeconds === undefined ? {} : { delaySeconds: entry.DelaySeconds }),
              ...(entry.MessageAttributes ? { messageAttributes: entry.MessageAttributes } : {}),
              senderId: caller,
            });
            Successful.push({
              Id: entry.Id,
              MessageId: message.messageId,
              MD5OfMessageBody: message.md5OfBody,
              ...(message.md5OfMessageAttributes
                ? { MD5OfMessageAttributes: message.md5OfMessageAttributes }
                : {}),
            });
          } catch (error) {
            if (!(error instanceof ServiceError)) throw error;
            Failed.push({
              Id: entry.Id,
              SenderFault: true,
              Code: error.code,
              Message: error.message,
            });
          }
        }
        return { Successful, Failed };
      }
      case 'ReceiveMessage': {
        const queue = this.byUrl(input.QueueUrl);
        const max = input.MaxNumberOfMessages ?? 1;
        if (typeof max !== 'number' || max < 1 || max > 10) {
          throw sqsError(
            'InvalidParameterValue',
            `Value ${max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.`,
          );
        }
        const wait = input.WaitTimeSeconds ?? 0;
        checkRange('WaitTimeSeconds', wait, 0, 20);
        if (input.VisibilityTimeout !== undefined)
          checkRange('VisibilityTimeout', input.VisibilityTimeout, 0, 43200);
        let messages = queue.receive(max, input.VisibilityTimeout);
        if (messages.length === 0 && wait > 0) {
          messages = await new Promise<QueueMessage[]>((resolve) => {
            let cancel: () => void = () => undefined;
            const unsubscribe = queue.onAvailable(() => {
              const got = queue.receive(max, input.VisibilityTimeout);
              if (got.length > 0) {
                unsubscribe();
                cancel();
                resolve(got);
              }
            });
            cancel = this.clock.after(wait, () => {
              unsubscribe();
              resolve([]);
            });
          });
        }
        const wanted = new Set<string>([
          ...(input.AttributeNames ?? []),
          ...(input.MessageSystemAttributeNames ?? []),
        ]);
        const wantedAttributes = new Set<string>(input.MessageAttributeNames ?? []);
        return { Messages: messages.map((message) => toWire(message, wanted, wantedAttributes)) };
      }
      case 'DeleteMessage':
        this.byUrl(input.QueueUrl).delete(String(input.ReceiptHandle ?? ''));
        return {};
      case 'DeleteMessageBatch': {
        const queue = this.byUrl(input.QueueUrl);
        const Successful: Json[] = [];
        const Failed: Json[] = [];
        for (const entry of (input.Entries ?? []) as Json[]) {
          try {
            queue.delete(String(entry.ReceiptHandle));
            Successful.push({ Id: entry.Id });
          } catch (error) {
            Failed.push({
              Id: entry.Id,
              SenderFault: true,
              Code: (error as ServiceError).code,
              Message: (error as Error).message,
            });
          }
        }
        return { Successful, Failed };
      }
      case 'ChangeMessageVisibility':
        this.byUrl(input.QueueUrl).changeVisibility(
          String(input.ReceiptHandle ?? ''),
          input.VisibilityTimeout,
        );
        return {};
      case 'GetQueueAttributes': {
        const all = this.byUrl(input.QueueUrl).attributes();
        const names = (input.AttributeNames ?? ['All']) as string[];
        if (names.includes('All')) return { Attributes: all };
        return {
          Attributes: Object.fromEntries(names.filter((n) => n in all).map((n) => [n, all[n]])),
        };
      }
      case 'PurgeQueue':
        this.byUrl(input.QueueUrl).messages = [];
        return {};
      case 'ListQueues': {
        // https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ListQueues.html
        // MaxResults 1-1000; NextToken only with MaxResults.
        const prefix = input.QueueNamePrefix === undefined ? '' : String(input.QueueNamePrefix);
        const urls = [...this.queues.values()]
          .filter((queue) => queue.name.startsWith(prefix))
          .map((queue) => queue.url)
          .sort();
        if (input.MaxResults === undefined) {
          if (input.NextToken !== undefined) {
            throw sqsError(
              'InvalidParameterValue',
              'MaxResults is a mandatory parameter when you provide a value for NextToken.',
            );
          }
          return urls.length > 0 ? { QueueUrls: urls.slice(0, 1000) } : {};
        }
        checkRange('MaxResults', input.MaxResults, 1, 1000);
        const fingerprint = `list-queues:${prefix}`;
        const start =
          input.NextToken === undefined ? 0 : decodeToken(String(input.NextToken), fingerprint);
        if (start === undefined)
          throw sqsError('InvalidParameterValue', 'Invalid NextToken value.');
        const page = urls.slice(start, start + input.MaxResults);
        const next = start + input.MaxResults;
        return {
          ...(page.length > 0 ? { QueueUrls: page } : {}),
          ...(next < urls.length ? { NextToken: encodeToken(next, fingerprint) } : {}),
        };
      }
      default:
        throw new ServiceError(
          'UnknownOperationException',
          `The local cloud does not implement SQS ${operation || '(no X-Amz-Target)'}.`,
        );
    }
  }
}

function toWire(message: QueueMessage, wanted: Set<string>, wantedAttributes: Set<string>): Json {
  const system: Record<string, string> = {
    SenderId: message.senderId,
    SentTimestamp: String(message.sentTimestamp),
    ApproximateReceiveCount: String(message.receiveCount),
    ApproximateFirstReceiveTimestamp: String(message.firstReceiveTimestamp ?? Date.now()),
  };
  const all = wanted.has('All');
  const attributes = Object.fromEntries(
    Object.entries(system).filter(([name]) => all || wanted.has(name)),
  );
  const allAttributes = wantedAttributes.has('All') || wantedAttributes.has('.*');
  const messageAttributes = Object.fromEntries(
    Object.entries(message.messageAttributes).filter(
      ([name]) => allAttributes || wantedAttributes.has(name),
    ),
  );
  return {
    MessageId: message.messageId,
    ReceiptHandle: message.receiptHandle,
    MD5OfBody: message.md5OfBody,
    Body: message.body,
    ...(Object.keys(attributes).length > 0 ? { Attributes: attributes } : {}),
    ...(Object.keys(messageAttributes).length > 0
      ? {
          MessageAttributes: messageAttributes,
          MD5OfMessageAttributes: md5OfMessageAttributes(messageAttributes),
        }
      : {}),
  };
}

/** The SQS record Lambda hands an event source mapping's function (with-sqs.html). */
export function lambdaSqsRecord(queue: Queue, message: QueueMessage, region: string): Json {
  return {
    messageId: message.messageId,
    receiptHandle: message.receiptHandle,
    body: message.body,
    attributes: {
      ApproximateReceiveCount: String(message.receiveCount),
      SentTimestamp: String(message.sentTimestamp),
      SenderId: message.senderId,
      ApproximateFirstReceiveTimestamp: String(message.firstReceiveTimestamp ?? Date.now()),
    },
    messageAttributes: Object.fromEntries(
      Object.entries(message.messageAttributes).map(([name, value]) => [
        name,
        {
          dataType: value.DataType,
          stringValue: value.StringValue,
          binaryValue: value.BinaryValue,
          stringListValues: [],
          binaryListValues: [],
        },
      ]),
    ),
    md5OfBody: message.md5OfBody,
    eventSource: 'aws:sqs',
    eventSourceARN: queue.arn,
    awsRegion: region,
  };
}
