import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { ListCommandInvocationsCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config.ts';
import { type SweeperDeps, sweepRollout } from '../../shared/sweeper.ts';
import { firstSweep, MAX_ROUNDS } from '../../shared/sweeps.ts';
import { instanceIds, testConfigInput } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { nextRolloutId } from '../support/rollouts.ts';

const ssmMock = mockClient(SSMClient);
const ec2Mock = mockClient(EC2Client);
const sqsMock = mockClient(SQSClient);
const snsMock = mockClient(SNSClient);
// The sweeper is shared code; the table helper only needs some module to import.
const table = withRolloutsTable(async () => ({}));

const parameter = '/prod/env.php';
const path = '/var/www/html/env.php';
let listed: Record<string, { Status: string; Output?: string; ResponseCode?: number }>;

beforeEach(() => {
  listed = {};
  ssmMock.on(ListCommandInvocationsCommand).callsFake(({ CommandId }) => ({
    CommandInvocations: Object.entries(listed).map(([InstanceId, r]) => ({
      CommandId,
      InstanceId,
      Comment: `secrets-fanout rollout ${currentRollout} attempt 1`,
      Status: r.Status,
      StatusDetails: r.Status,
      CommandPlugins: [{ ResponseCode: r.ResponseCode ?? 0, Output: r.Output ?? '' }],
    })),
  }));
  ec2Mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
  sqsMock.on(SendMessageCommand).resolves({});
  sqsMock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
  snsMock.on(PublishCommand).resolves({ MessageId: 'm' });
});
afterEach(() => {
  for (const mock of [ssmMock, ec2Mock, sqsMock, snsMock]) mock.reset();
});

let currentRollout = '';
/** A rollout of `ids`, all Pending; the first `commanded` of them were sent one command. */
async function pendingRollout(ids: string[], commanded: number) {
  currentRollout = nextRolloutId();
  await table.store.create(
    {
      rolloutId: currentRollout,
      trigger: { type: 'event', eventId: 'e' },
      environment: 'prod',
      parameters: [parameter],
      files: [{ parameter, path }],
    },
    ids.map((instanceId) => ({ instanceId, parameter, path, status: 'Pending' as const })),
  );
  if (commanded > 0) {
    await table.store.recordCommand(currentRollout, {
      commandId: 'cmd-lost',
      parameter,
      attempt: 1,
      instanceIds: ids.slice(0, commanded),
    });
  }
  await table.store.releaseSending(currentRollout);
  return currentRollout;
}

function deps(now: Date): SweeperDeps {
  return {
    ssm: new SSMClient({}),
    ec2: new EC2Client({}),
    sqs: new SQSClient({}),
    sns: new SNSClient({}),
    store: table.store,
    config: parseConfig(testConfigInput),
    retryQueueUrl: 'retry-queue',
    statusQueueUrl: 'status-queue',
    alertsTopicArn: 'arn:aws:sns:eu-west-1:123456789012:alerts',
    now: () => now,
  };
}
const due = (rolloutId: string, round = 0) => {
  const sweep = firstSweep(rolloutId, 600, new Date('2026-11-23T16:00:00Z'));
  return { ...sweep, round };
};
const afterDue = new Date('2026-11-23T17:00:00Z');

describe('sweeping a rollout', () => {
  it('waits, hopping through SQS at most 900 s at a time, until it is due', async () => {
    const sweep = due('20261123T160000Z-00000000');
    const result = await sweepRollout(deps(new Date('2026-11-23T16:00:00Z')), sweep);
    expect(result).toBe('early');
    const queued = sqsMock.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(queued).toEqual([
      expect.objectContaining({ QueueUrl: 'status-queue', DelaySeconds: 900 }),
    ]);
    expect(JSON.parse(queued[0]!.MessageBody!)).toEqual(sweep);
  });

  it('asks Run Command about targets whose status event never came, and settles', async () => {
    // Arrange
    const [a, b] = instanceIds(2);
    const rolloutId = await pendingRollout([a!, b!], 2);
    listed = {
      [a!]: { Status: 'Success', Output: 'secrets-fanout result=updated version=4' },
      [b!]: { Status: 'Success', Output: 'secrets-fanout result=unchanged version=4' },
    };
    // Act
    const result = await sweepRollout(deps(afterDue), due(rolloutId));
    // Assert
    expect(result).toBe('done');
    expect(await table.store.getRollout(rolloutId)).toMatchObject({
      state: 'Settled',
      counts: { success: 1, unchanged: 1, pending: 0 },
    });
  });

  it('retries targets that were never sent once nobody is sending them', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 0);
    const result = await sweepRollout(deps(afterDue), due(rolloutId));
    expect(result).toBe('again');
    const retries = sqsMock
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? []);
    expect(JSON.parse(retries[0]!.MessageBody!)).toEqual({
      rolloutId,
      instanceId: a,
      parameter,
      attempt: 2,
    });
    expect(await table.store.getTarget(rolloutId, a!, parameter)).toMatchObject({
      status: 'Pending',
      attempt: 2,
      lastError: { status: 'NeverSent' },
    });
  });

  it('looks again later while Run Command still runs the command', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 1);
    listed = { [a!]: { Status: 'InProgress' } };
    expect(await sweepRollout(deps(afterDue), due(rolloutId))).toBe('again');
    const next = sqsMock
      .commandCalls(SendMessageCommand)
      .map((c) => JSON.parse(c.args[0].input.MessageBody!));
    expect(next).toEqual([expect.objectContaining({ kind: 'sweep', rolloutId, round: 1 })]);
  });

  it('fails what never got a final status after the last round, and alerts', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 1);
    listed = { [a!]: { Status: 'InProgress' } };
    expect(await sweepRollout(deps(afterDue), due(rolloutId, MAX_ROUNDS - 1))).toBe('gave-up');
    expect(await table.store.getTarget(rolloutId, a!, parameter)).toMatchObject({
      status: 'Failed',
      lastError: { status: 'NoFinalStatus' },
    });
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(1);
  });

  it('does nothing for a rollout that has settled', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 1);
    await table.store.apply(rolloutId, [
      { instanceId: a!, parameter, fromAttempt: 1, to: 'Success' },
    ]);
    await table.store.settle(rolloutId);
    expect(await sweepRollout(deps(afterDue), due(rolloutId))).toBe('done');
    expect(ssmMock.calls()).toHaveLength(0);
  });
});
