/**
 * SQS as real clients see it: the AWS CLI (Query/XML protocol before aws-cli 2.15, JSON after)
 * and the JS SDK (JSON). Results and errors as documented:
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ListQueues.html,
 * API_GetQueueUrl.html (QueueDoesNotExist, Query code AWS.SimpleQueueService.NonExistentQueue),
 * API_ReceiveMessage.html (MaxNumberOfMessages 1-10), CommonErrors.html (InvalidAction, 400).
 */
import {
  ListQueuesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCloud } from '../e2e/local-cloud.ts';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { errorCode, findClis, runCli } from './clients.ts';

const clis = findClis();

describe('SQS conformance', () => {
  let cloud: LocalCloud;
  let sqs: SQSClient;
  let dlqUrl: string;

  beforeAll(async () => {
    cloud = await startTestCloud([]);
    sqs = new SQSClient(cloud.clientConfig('sqs'));
    dlqUrl = cloud.queue('DeadLetterQueue').url;
  });

  afterAll(async () => {
    sqs?.destroy();
    await cloud?.stop();
  });

  describe('with the JS SDK (JSON protocol)', () => {
    it('ListQueues lists every queue, filters by prefix and pages with MaxResults', async () => {
      const all = await sqs.send(new ListQueuesCommand({}));
      expect(all.QueueUrls).toContain(dlqUrl);
      expect(all.QueueUrls?.length).toBe(cloud.sqs.queues.size);
      const prefix = cloud.queue('DeadLetterQueue').name;
      const some = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: prefix }));
      expect(some.QueueUrls).toEqual([dlqUrl]);
      const first = await sqs.send(new ListQueuesCommand({ MaxResults: 1 }));
      expect(first.QueueUrls).toHaveLength(1);
      expect(first.NextToken).toBeDefined();
      const none = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: 'no-such-queue' }));
      expect(none.QueueUrls ?? []).toEqual([]);
    });

    it('refuses MaxResults out of 1-1000 and a NextToken without MaxResults', async () => {
      await expect(sqs.send(new ListQueuesCommand({ MaxResults: 0 }))).rejects.toMatchObject({
        name: 'InvalidParameterValue',
      });
      await expect(sqs.send(new ListQueuesCommand({ NextToken: 'x' }))).rejects.toMatchObject({
        name: 'InvalidParameterValue',
      });
    });

    it('refuses MaxNumberOfMessages 11, and a queue that does not exist', async () => {
      await expect(
        sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl, MaxNumberOfMessages: 11 })),
      ).rejects.toMatchObject({ name: 'InvalidParameterValue' });
      await expect(
        sqs.send(
          new SendMessageCommand({
            QueueUrl: `${cloud.endpoints.sqs}/123456789012/nope`,
            MessageBody: 'x',
          }),
        ),
      ).rejects.toMatchObject({ name: 'QueueDoesNotExist' });
    });

    it('answers an unknown operation and a malformed body in AWS shape, never a 500', async () => {
      const post = (target: string, body: string) =>
        fetch(cloud.endpoints.sqs, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-amz-json-1.0',
            'x-amz-target': target,
            authorization:
              'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/sqs/aws4_request, SignedHeaders=host, Signature=x',
          },
          body,
        });
      const unknown = await post('AmazonSQS.ListDeadLetterSourceQueues', '{}');
      expect(unknown.status).toBe(400);
      expect(((await unknown.json()) as { __type: string }).__type).toBe(
        'com.amazon.coral.service#UnknownOperationException',
      );
      const malformed = await post('AmazonSQS.ListQueues', 'Action=ListQueues');
      expect(malformed.status).toBe(400);
      const text = await malformed.text();
      expect(JSON.parse(text).__type).toMatch(/SerializationException/);
      expect(text).not.toMatch(/at .*\.ts:\d+/);
    });

    it('answers a Query protocol request (form in, XML out)', async () => {
      const response = await fetch(cloud.endpoints.sqs, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `Action=GetQueueUrl&Version=2012-11-05&QueueName=${cloud.queue('DeadLetterQueue').name}`,
      });
      expect(response.status).toBe(200);
      expect(await response.text()).toContain(`<QueueUrl>${dlqUrl}</QueueUrl>`);
    });
  });

  describe.each(clis)('with the AWS CLI $version ($path)', (cli) => {
    const aws = (...args: string[]) =>
      runCli(cli, cloud.endpoints.sqs, cloud.clientEnv, ['sqs', ...args]);

    it('follows the DLQ step of the runbook: list, depth, receive, delete', async () => {
      // Arrange: a message in the dead-letter queue
      cloud.queue('DeadLetterQueue').send('{"kind":"dead-letter-for-tests"}');

      // Act
      const [listed, attributes] = await Promise.all([
        aws('list-queues', '--queue-name-prefix', cloud.queue('DeadLetterQueue').name),
        aws(
          'get-queue-attributes',
          '--queue-url',
          dlqUrl,
          '--attribute-names',
          'ApproximateNumberOfMessages',
        ),
      ]);
      const received = await aws(
        'receive-message',
        '--queue-url',
        dlqUrl,
        '--max-number-of-messages',
        '10',
        '--attribute-names',
        'All',
      );
      const message = received.json?.Messages?.[0];
      const deleted = await aws(
        'delete-message',
        '--queue-url',
        dlqUrl,
        '--receipt-handle',
        String(message?.ReceiptHandle),
      );

      // Assert
      expect(listed.json).toEqual({ QueueUrls: [dlqUrl] });
      expect(attributes.json).toEqual({ Attributes: { ApproximateNumberOfMessages: '1' } });
      expect(message?.Body).toBe('{"kind":"dead-letter-for-tests"}');
      expect(message?.Attributes?.ApproximateReceiveCount).toBe('1');
      expect(deleted.code).toBe(0);
      expect(cloud.queue('DeadLetterQueue').messages).toEqual([]);
    });

    it('sends a message and a batch, and reads them back with their attributes', async () => {
      const url = cloud.queue('DeadLetterQueue').url;
      const [single, batch] = await Promise.all([
        aws(
          'send-message',
          '--queue-url',
          url,
          '--message-body',
          'one',
          '--message-attributes',
          'kind={DataType=String,StringValue=test}',
        ),
        aws(
          'send-message-batch',
          '--queue-url',
          url,
          '--entries',
          'Id=a,MessageBody=two',
          'Id=b,MessageBody=three',
        ),
      ]);
      expect(single.json.MD5OfMessageBody).toBe('f97c5d29941bfb1b2fdab0874906ab82');
      expect(batch.json.Successful.map((entry: any) => entry.Id).sort()).toEqual(['a', 'b']);
      const bodies = cloud
        .queue('DeadLetterQueue')
        .messages.map((m) => m.body)
        .sort();
      expect(bodies).toEqual(['one', 'three', 'two']);
      const sent = cloud.queue('DeadLetterQueue').messages.find((m) => m.body === 'one');
      expect(sent?.messageAttributes).toEqual({
        kind: { DataType: 'String', StringValue: 'test' },
      });
      cloud.queue('DeadLetterQueue').messages = [];
    });

    it('answers errors with SQS codes: a missing queue, a bad argument, an unknown operation', async () => {
      const [missing, invalid, unknown] = await Promise.all([
        aws('get-queue-url', '--queue-name', 'no-such-queue'),
        aws('receive-message', '--queue-url', dlqUrl, '--max-number-of-messages', '11'),
        aws('list-dead-letter-source-queues', '--queue-url', dlqUrl),
      ]);
      expect(missing.code).not.toBe(0);
      expect(errorCode(missing)).toBe('AWS.SimpleQueueService.NonExistentQueue');
      expect(errorCode(invalid)).toBe('InvalidParameterValue');
      // Query protocol: InvalidAction; JSON protocol: UnknownOperationException.
      expect(['InvalidAction', 'UnknownOperationException']).toContain(errorCode(unknown));
      for (const result of [missing, invalid, unknown]) expect(result.stderr).not.toMatch(/500/);
    });
  });
});
