import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  DescribeInstanceInformationCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Transition } from '../../shared/rollout/model.ts';
import { RolloutStore } from '../../shared/rollout/store.ts';
import { instanceIds, lambdaContext } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { nextRolloutId } from '../support/rollouts.ts';
import { sqsBatch } from '../support/status-events.ts';

const ssmMock = mockClient(SSMClient);
const ec2Mock = mockClient(EC2Client);
const sqsMock = mockClient(SQSClient);
const snsMock = mockClient(SNSClient);

const table = withRolloutsTable(() => import('../../functions/retry.ts'));

const parameter = '/prod/env.php';
const path = '/var/www/html/env.php';
const ref = (instanceId: string) => ({ instanceId, parameter, path });
/** EC2 view of each instance: its state (absent: EC2 no longer lists it); SSM view: Online unless listed offline. */
let states: Map<string, string>;
let offline: Set<string>;

beforeEach(() => {
  states = new Map();
  offline = new Set();
  ec2Mock.on(DescribeInstancesCommand).callsFake(({ Filters }) => {
    const ids: string[] = Filters.find((f: any) => f.Name === 'instance-id')?.Values ?? [];
    const wanted: string[] | undefined = Filters.find(
      (f: any) => f.Name === 'instance-state-name',
    )?.Values;
    return {
      Reservations: [
        {
          Instances: ids
            .filter(
              (id) => states.has(id) && (wanted === undefined || wanted.includes(states.get(id)!)),
            )
            .map((InstanceId) => ({ InstanceId, State: { Name: states.get(InstanceId) } })),
        },
      ],
    };
  });
  ssmMock.on(DescribeInstanceInformationCommand).callsFake(({ Filters }) => ({
    InstanceInformationList: Filters[0].Values.map((InstanceId: string) => ({
      InstanceId,
      PingStatus: offline.has(InstanceId) ? 'ConnectionLost' : 'Online',
    })),
  }));
  ssmMock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-retry-1' } });
  sqsMock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
  sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm' });
  snsMock.on(PublishCommand).resolves({ MessageId: 'm' });
});
afterEach(() => {
  ssmMock.reset();
  ec2Mock.reset();
  sqsMock.reset();
  snsMock.reset();
});

/** A rollout whose only target failed its first attempt and waits for attempt 2. */
async function waitingForRetry(instanceId: string) {
  const rolloutId = nextRolloutId();
  await table.store.create(
    {
      rolloutId,
      trigger: { type: 'event', eventId: 'e' },
      environment: 'prod',
      parameters: [parameter],
      files: [{ parameter, path }],
    },
    [{ instanceId, parameter, path, status: 'Pending' }],
  );
  await table.store.commit(rolloutId, [retryFrom(instanceId, 1)]);
  return rolloutId;
}
const retryFrom = (instanceId: string, fromAttempt: number): Transition => ({
  ...ref(instanceId),
  fromAttempt,
  to: 'Retry',
  retryAt: new Date().toISOString(),
});
/** Retry messages put back with SendMessage (busy parts of a chunk), with their delay. */
const requeued = () =>
  sqsMock
    .commandCalls(SendMessageCommand)
    .map((c) => c.args[0].input)
    .filter((input) => JSON.parse(input.MessageBody ?? '{}').instanceIds !== undefined)
    .map((input) => ({ body: JSON.parse(input.MessageBody!), delay: input.DelaySeconds }));

const retryBatch = (rolloutId: string, instanceId: string, attempt = 2) =>
  sqsBatch([{ rolloutId, instanceIds: [instanceId], parameter, path, attempt }]);

describe('retry', () => {
  it('sends the next attempt to that instance only and records its command', async () => {
    // Arrange
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    const rolloutId = await waitingForRetry(id!);
    // Act
    const response = await table.handler.handler(retryBatch(rolloutId, id!), lambdaContext());
    // Assert
    expect(response.batchItemFailures).toEqual([]);
    const sent = ssmMock.commandCalls(SendCommandCommand);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.args[0].input).toMatchObject({
      InstanceIds: [id],
      Parameters: { ParameterName: [parameter], DestinationPath: [path] },
      Comment: `secrets-fanout rollout ${rolloutId} attempt 2`,
    });
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      attempt: 2,
      commandId: 'cmd-retry-1',
    });
  });

  it('sends nothing for a duplicate retry message', async () => {
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    const rolloutId = await waitingForRetry(id!);
    await table.handler.handler(retryBatch(rolloutId, id!), lambdaContext());
    await table.handler.handler(retryBatch(rolloutId, id!), lambdaContext());
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(1);
  });

  it('marks the instance Superseded when a newer rollout of the parameter already targets it', async () => {
    // Arrange
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    const rolloutId = await waitingForRetry(id!);
    // A rollout the store recorded later (its clock, not the id, orders rollouts)
    await new Promise((resolve) => setTimeout(resolve, 5));
    await table.store.create(
      {
        rolloutId: nextRolloutId(),
        trigger: { type: 'event', eventId: 'e2' },
        environment: 'prod',
        parameters: [parameter],
        files: [{ parameter, path }],
      },
      [{ instanceId: id!, parameter, path, status: 'Pending' }],
    );
    // Act
    await table.handler.handler(retryBatch(rolloutId, id!), lambdaContext());
    // Assert
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Superseded',
    });
    expect(await table.store.getRollout(rolloutId)).toMatchObject({
      state: 'Settled',
      alert: 'None',
    });
  });

  it('marks an instance that is no longer running unreachable, and alerts', async () => {
    const [id] = instanceIds(1);
    states.set(id!, 'stopped');
    const rolloutId = await waitingForRetry(id!);
    await table.handler.handler(retryBatch(rolloutId, id!), lambdaContext());
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Unreachable',
      reason: 'NotRunningInEnvironment',
    });
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(1);
  });

  it.each([
    ['terminated', 'terminated'],
    ['no longer listed by EC2', undefined],
  ])(
    'marks an instance that is %s unreachable as terminated, without an alert',
    async (_, state) => {
      const [id] = instanceIds(1);
      if (state !== undefined) states.set(id!, state);
      const rolloutId = await waitingForRetry(id!);
      await table.handler.handler(retryBatch(rolloutId, id!), lambdaContext());
      expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
      expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
        status: 'Unreachable',
        reason: 'InstanceTerminated',
      });
      expect(await table.store.getRollout(rolloutId)).toMatchObject({
        state: 'Settled',
        alert: 'None',
        counts: { unreachable: 1, terminated: 1 },
      });
      expect(snsMock.commandCalls(PublishCommand)).toHaveLength(0);
    },
  );

  it('uses up the attempt of an instance SSM cannot reach now and queues the next one', async () => {
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    offline.add(id!);
    const rolloutId = await waitingForRetry(id!);
    await table.handler.handler(retryBatch(rolloutId, id!), lambdaContext());
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
    const queued = sqsMock
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? []);
    expect(JSON.parse(queued[0]!.MessageBody!)).toMatchObject({ attempt: 3 });
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Pending',
      attempt: 3,
      lastError: { status: 'Unreachable: ConnectionLost' },
    });
  });

  it('fails the instance when its last attempt cannot be sent', async () => {
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    const rolloutId = await waitingForRetry(id!);
    await table.store.commit(rolloutId, [retryFrom(id!, 2)]);
    ssmMock.on(SendCommandCommand).rejects(
      Object.assign(new Error('document version is not valid'), {
        name: 'InvalidDocumentVersion',
      }),
    );
    await table.handler.handler(retryBatch(rolloutId, id!, 3), lambdaContext());
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Failed',
      lastError: {
        status: 'SendCommandFailed (after 3 attempts)',
        stderr: 'InvalidDocumentVersion: document version is not valid',
      },
    });
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(1);
  });

  it('uses no attempt when SSM throttles the send: it lets go of the claim and comes back', async () => {
    // Arrange: the last attempt, and SendCommand throttled past the SDK's own retries
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    const rolloutId = await waitingForRetry(id!);
    await table.store.commit(rolloutId, [retryFrom(id!, 2)]);
    ssmMock
      .on(SendCommandCommand)
      .rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    // Act
    const response = await table.handler.handler(retryBatch(rolloutId, id!, 3), lambdaContext());
    // Assert: still pending at attempt 3, unclaimed, and queued again a little later
    expect(response.batchItemFailures).toEqual([]);
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Pending',
      attempt: 3,
    });
    expect(await table.store.claimAttempt(rolloutId, ref(id!), 3)).toBe(true);
    expect(requeued()).toEqual([
      { body: expect.objectContaining({ instanceIds: [id], attempt: 3, requeues: 1 }), delay: 15 },
    ]);
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(0);
  });

  it('leaves an attempt another run has claimed, and takes it over once the claim runs out', async () => {
    // Arrange: a run claimed attempt 2 and stopped before sending (a timeout, say)
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    const rolloutId = await waitingForRetry(id!);
    expect(await table.store.claimAttempt(rolloutId, ref(id!), 2)).toBe(true);
    // Act: the redelivered message while the claim holds
    const batch = retryBatch(rolloutId, id!);
    const response = await table.handler.handler(batch, lambdaContext());
    // Assert: nothing sent; the message is done, and a copy comes back later (never to the DLQ)
    expect(response.batchItemFailures).toEqual([]);
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(requeued()).toEqual([
      { body: expect.objectContaining({ instanceIds: [id], attempt: 2, requeues: 1 }), delay: 15 },
    ]);
    const later = new RolloutStore(
      table.db,
      process.env.ROLLOUTS_TABLE!,
      () => new Date(Date.now() + 5 * 60_000),
    );
    expect(await later.claimAttempt(rolloutId, ref(id!), 2)).toBe(true);
  });

  it('brings back a retry that arrives before the move to its attempt is saved', async () => {
    // Arrange: the tracker queued attempt 3 and has not yet committed the target's move to it
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    const rolloutId = await waitingForRetry(id!);
    const batch = retryBatch(rolloutId, id!, 3);
    // Act
    const response = await table.handler.handler(batch, lambdaContext());
    // Assert: not dropped as stale, nothing sent yet, a copy comes back later
    expect(response.batchItemFailures).toEqual([]);
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(requeued()).toEqual([
      { body: expect.objectContaining({ instanceIds: [id], attempt: 3, requeues: 1 }), delay: 15 },
    ]);
  });

  it('stops bringing back a chunk that stays busy, leaving it to the sweep', async () => {
    const [id] = instanceIds(1);
    states.set(id!, 'running');
    const rolloutId = await waitingForRetry(id!);
    const batch = sqsBatch([
      { rolloutId, instanceIds: [id], parameter, path, attempt: 3, requeues: 8 },
    ]);
    const response = await table.handler.handler(batch, lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(requeued()).toEqual([]);
  });

  it('refuses a malformed message as a batch failure', async () => {
    const batch = sqsBatch([{ rolloutId: 'x', attempt: 'two' }]);
    const response = await table.handler.handler(batch, lambdaContext());
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: batch.Records[0]?.messageId }]);
  });
});
