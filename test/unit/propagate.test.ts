import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  DescribeInstanceInformationCommand,
  DescribeParametersCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createIdempotencyTable,
  createRolloutsTable,
  resetPace,
  startDynalite,
} from '../support/dynalite.ts';
import { instanceIds, lambdaContext, loadEvent } from '../support/fixtures.ts';

// Idempotency runs against dynalite (a real DynamoDB), so duplicate detection is real;
// EC2, SSM and SNS are mocked at the SDK.
const ec2Mock = mockClient(EC2Client);
const ssmMock = mockClient(SSMClient);
const snsMock = mockClient(SNSClient);
const sqsMock = mockClient(SQSClient);

let dynamo: Awaited<ReturnType<typeof startDynalite>>;
let propagate: typeof import('../../functions/propagate.ts');

beforeAll(async () => {
  dynamo = await startDynalite();
  process.env.AWS_ENDPOINT_URL_DYNAMODB = dynamo.endpoint;
  await createIdempotencyTable(dynamo.endpoint, process.env.IDEMPOTENCY_TABLE!);
  await createRolloutsTable(dynamo.endpoint, process.env.ROLLOUTS_TABLE!);
  propagate = await import('../../functions/propagate.ts');
});
afterAll(async () => {
  await dynamo.close();
});

const fleet = instanceIds(3);
let eventCounter = 0;
/** A fixture event with a fresh id, so tests do not see each other's idempotency records. */
function event(name: string) {
  const e = loadEvent<any>(`parameter-store-change/${name}`);
  e.id = `${e.id}-${++eventCounter}`;
  return e;
}

beforeEach(async () => {
  await resetPace(dynamo.endpoint, process.env.ROLLOUTS_TABLE!);
  ec2Mock.on(DescribeInstancesCommand).resolves({
    Reservations: [{ Instances: fleet.map((InstanceId) => ({ InstanceId })) }],
  });
  ssmMock.on(DescribeInstanceInformationCommand).resolves({
    InstanceInformationList: fleet
      .slice(0, 2)
      .map((InstanceId) => ({ InstanceId, PingStatus: 'Online' })),
  });
  ssmMock.on(DescribeParametersCommand).resolves({
    Parameters: [{ Name: '/prod/env.php', Version: 7 }],
  });
  ssmMock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
  snsMock.on(PublishCommand).resolves({ MessageId: 'm-1' });
  sqsMock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
});
afterEach(() => {
  ec2Mock.reset();
  ssmMock.reset();
  snsMock.reset();
  sqsMock.reset();
});

describe('propagate', () => {
  it.each(['update', 'create'])(
    'pushes a %s to the reachable instances of its environment',
    async (name) => {
      // Act
      const result = await propagate.handler(event(name), lambdaContext());
      // Assert
      expect(result).toMatchObject({
        status: 'sent',
        rollout: {
          environment: 'prod',
          parameters: ['/prod/env.php'],
          version: 7,
          targeted: 2,
          unreachable: [{ instanceId: fleet[2], reason: 'NotManagedBySSM' }],
          commandIds: ['cmd-1'],
          failedChunks: [],
        },
      });
      expect(
        ec2Mock.commandCalls(DescribeInstancesCommand)[0]?.args[0].input.Filters,
      ).toContainEqual({
        Name: 'tag:Environment',
        Values: ['prod'],
      });
      const sent = ssmMock.commandCalls(SendCommandCommand);
      expect(sent).toHaveLength(1);
      expect(sent[0]?.args[0].input).toMatchObject({
        InstanceIds: fleet.slice(0, 2),
        Parameters: {
          ParameterName: ['/prod/env.php'],
          DestinationPath: ['/var/www/html/env.php'],
        },
      });
      // The safety net: a sweep waits on the status queue for when the commands must be over.
      const sweeps = sqsMock.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
      expect(sweeps).toEqual([
        expect.objectContaining({ QueueUrl: process.env.STATUS_QUEUE_URL, DelaySeconds: 900 }),
      ]);
      expect(JSON.parse(sweeps[0]!.MessageBody!)).toMatchObject({ kind: 'sweep', round: 0 });
      expect(snsMock.commandCalls(PublishCommand)).toHaveLength(0);
    },
  );

  it('derives one stable rollout id from the event, and a rerun resumes without resending', async () => {
    // Arrange: the same event handled again, as after a crash once the commands were out
    const e = event('update');
    // Act
    const first = await propagate.lambdaHandler(e);
    const again = await propagate.lambdaHandler(e);
    // Assert
    expect(first.status === 'sent' && first.rollout.rolloutId).toMatch(
      /^20261123T161300000Z-[0-9a-f]{8}$/,
    );
    expect(again).toMatchObject({
      status: 'sent',
      rollout: {
        rolloutId: first.status === 'sent' ? first.rollout.rolloutId : '',
        resumed: true,
        commandIds: [],
      },
    });
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(1);
  });

  it('sends once when EventBridge delivers the same event twice', async () => {
    // Arrange
    const e = event('update');
    // Act
    const first = await propagate.handler(e, lambdaContext());
    const duplicate = await propagate.handler(structuredClone(e), lambdaContext());
    // Assert
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(1);
    expect(duplicate).toEqual(first);
  });

  it.each(['delete', 'label'])(
    'sends nothing for a %s and alerts the on-call once',
    async (name) => {
      // Act
      const result = await propagate.handler(event(name), lambdaContext());
      // Assert
      expect(result).toMatchObject({ status: 'skipped', reason: 'not-a-content-change' });
      expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
      expect(ec2Mock.calls()).toHaveLength(0);
      const alerts = snsMock.commandCalls(PublishCommand);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]?.args[0].input).toMatchObject({
        TopicArn: process.env.ALERTS_TOPIC_ARN,
        Subject: expect.stringContaining('/prod/env.php (prod), nothing pushed'),
        MessageAttributes: { parameter: { DataType: 'String', StringValue: '/prod/env.php' } },
      });
    },
  );

  it('settles and alerts at once when no instance can be reached: nothing to send, no wait for the sweep', async () => {
    // Arrange: the instances are running and tagged, but none is managed by SSM
    ssmMock.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [] });
    // Act
    const result = await propagate.handler(event('update'), lambdaContext());
    // Assert
    expect(result).toMatchObject({ status: 'sent', rollout: { targeted: 0, queued: 0 } });
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
    const alerts = snsMock.commandCalls(PublishCommand);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.args[0].input.Subject).toContain('3 unreachable');
  });

  it('sends nothing for a parameter that is not mapped', async () => {
    const result = await propagate.handler(event('unmapped'), lambdaContext());
    expect(result).toMatchObject({ status: 'skipped', reason: 'not-mapped' });
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it.each([
    ['a detail without a name', () => event('malformed-missing-name'), 'detail\\.name'],
    ['another source', () => ({ ...event('update'), source: 'aws.ec2' }), 'source'],
    [
      'another detail-type',
      () => ({ ...event('update'), 'detail-type': 'Parameter Store Policy Action' }),
      'detail-type',
    ],
    ['not an event at all', () => ({ hello: 'world' }), 'version'],
  ])('refuses %s with an error naming the field and sends nothing', async (_, make, field) => {
    await expect(propagate.handler(make() as any, lambdaContext())).rejects.toThrow(
      new RegExp(`^Parameter Store Change event refused, nothing sent: .*${field}`),
    );
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(0);
  });

  it('sends the chunk due now itself and queues the next one at its turn in the pace', async () => {
    // Arrange: 60 instances, two chunks; at 40 fetches a second the second is due 1.25 s later
    const many = instanceIds(60);
    ec2Mock.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: many.map((InstanceId) => ({ InstanceId })) }],
    });
    ssmMock.on(DescribeInstanceInformationCommand).callsFake((input) => ({
      InstanceInformationList: input.Filters[0].Values.map((InstanceId: string) => ({
        InstanceId,
        PingStatus: 'Online',
      })),
    }));
    ssmMock.on(SendCommandCommand).resolvesOnce({ Command: { CommandId: 'cmd-ok' } });
    // Act
    const result = await propagate.handler(event('update'), lambdaContext());
    // Assert
    expect(result).toMatchObject({
      status: 'sent',
      rollout: { targeted: 60, commandIds: ['cmd-ok'], queued: 1, failedChunks: [] },
    });
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(1);
    const queued = sqsMock
      .commandCalls(SendMessageBatchCommand)
      .flatMap((call) => call.args[0].input.Entries ?? []);
    expect(queued).toHaveLength(1);
    expect(JSON.parse(queued[0]!.MessageBody!)).toMatchObject({
      kind: 'send',
      index: 1,
      instanceIds: many.slice(50),
      path: '/var/www/html/env.php',
    });
    expect(queued[0]!.DelaySeconds).toBe(2);
  });

  it('queues a chunk SSM throttled again whole, using up no attempt', async () => {
    // Arrange: the one chunk is refused after the SDK's own retries
    ssmMock
      .on(SendCommandCommand)
      .rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    // Act
    const result = await propagate.handler(event('update'), lambdaContext());
    // Assert
    expect(result).toMatchObject({
      status: 'sent',
      rollout: { commandIds: [], targeted: 2, queued: 1 },
    });
    const queued = sqsMock
      .commandCalls(SendMessageBatchCommand)
      .flatMap((call) => call.args[0].input.Entries ?? []);
    expect(queued.map((entry) => JSON.parse(entry.MessageBody!))).toEqual([
      expect.objectContaining({
        kind: 'send',
        instanceIds: fleet.slice(0, 2),
        parameter: '/prod/env.php',
        path: '/var/www/html/env.php',
        requeues: 1,
      }),
    ]);
    for (const entry of queued) expect(entry.DelaySeconds).toBeGreaterThanOrEqual(15);
  });
});
