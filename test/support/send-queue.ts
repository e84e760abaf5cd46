import {
  SendMessageBatchCommand,
  type ServiceInputTypes,
  type ServiceOutputTypes,
  type SQSClientResolvedConfig,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { AwsStub } from 'aws-sdk-client-mock';
import { lambdaContext } from './fixtures.ts';

type SqsMock = AwsStub<ServiceInputTypes, ServiceOutputTypes, SQSClientResolvedConfig>;

/** Every message queued on the send queue (SendMessageBatch) so far, parsed. */
export function queuedMessages(sqsMock: SqsMock): Array<Record<string, unknown>> {
  return sqsMock
    .commandCalls(SendMessageBatchCommand)
    .flatMap((call) => call.args[0].input.Entries ?? [])
    .map((entry) => JSON.parse(entry.MessageBody ?? '{}'));
}

/**
 * Delivers the queued messages of `kind` to the send queue's function as SQS would (one batch),
 * and returns the ids of the records it reported failed.
 */
export async function deliverQueued(
  sqsMock: SqsMock,
  kind: string,
  handler: (event: SQSEvent, context: never) => Promise<unknown>,
): Promise<string[]> {
  const bodies = queuedMessages(sqsMock).filter((m) => m.kind === kind);
  const event: SQSEvent = {
    Records: bodies.map((body, i) => ({
      messageId: `${kind}-${i}`,
      receiptHandle: `r-${i}`,
      body: JSON.stringify(body),
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: '0',
        SenderId: 'test',
        ApproximateFirstReceiveTimestamp: '0',
      },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:secrets-fanout-test-retries',
      awsRegion: 'eu-west-1',
    })),
  };
  const response = (await handler(event, lambdaContext() as never)) as SQSBatchResponse;
  return response.batchItemFailures.map((failure) => failure.itemIdentifier);
}
