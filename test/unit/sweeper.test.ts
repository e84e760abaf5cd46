import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { ListCommandInvocationsCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config.ts';
import { rolloutNotifier } from '../../shared/deps.ts';
import type { SweepMessage } from '../../shared/messages/sweep.ts';
import { Ledger } from '../../shared/rollout/ledger.ts';
import { attemptDeadline, firstSweepDue } from '../../shared/rollout/policy.ts';
import { RolloutStore } from '../../shared/rollout/store.ts';
import { sweepRollout } from '../../shared/track/sweeper.ts';
import type { TrackerDeps } from '../../shared/track/tracker.ts';
import { instanceIds, testConfigInput } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { nextRolloutId } from '../support/rollouts.ts';

const ssmMock = mockClient(SSMClient);
const ec2Mock = mockClient(EC2Client);
const sqsMock = mockClient(SQSClient);
const snsMock = mockClient(SNSClient);
// The sweeper is shared code; the table helper only needs some module to import.
const table = withRolloutsTable(async () => ({}));
const config = parseConfig(testConfigInput);

const parameter = '/prod/env.php';
const path = '/var/www/html/env.php';
const ref = (instanceId: string) => ({ instanceId, parameter, path });
let listed: Record<string, { Status: string; Output?: string; ResponseCode?: number }>;
// The store's clock is every rule's clock (ledger.now()): tests move it.
const start = new Date('2026-11-23T16:00:00Z');
let clock: Date;
const at = (seconds: number) => new Date(start.getTime() + seconds * 1000);

beforeEach(() => {
  listed = {};
  clock = start;
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

function store(): RolloutStore {
  return new RolloutStore(table.db, process.env.ROLLOUTS_TABLE!, () => clock);
}

let currentRollout = '';
/** A rollout of `ids` created at `start`, all Pending; the first `commanded` were sent one command. */
async function pendingRollout(ids: string[], commanded: number) {
  currentRollout = nextRolloutId();
  await store().create(
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
    await store().recordCommand(currentRollout, {
      commandId: 'cmd-lost',
      parameter,
      path,
      attempt: 1,
      instanceIds: ids.slice(0, commanded),
    });
  }
  // Its creator queued its one chunk and is done: its first-send lease ends now.
  await store().markQueued(currentRollout, 1, clock);
  return currentRollout;
}

function deps(now: Date): TrackerDeps {
  clock = now;
  const rollouts = store();
  return {
    ssm: new SSMClient({}),
    ec2: new EC2Client({}),
    store: rollouts,
    config,
    ledger: new Ledger({
      store: rollouts,
      sqs: new SQSClient({}),
      retryQueueUrl: 'retry-queue',
      statusQueueUrl: 'status-queue',
      config,
      notify: rolloutNotifier(
        new SNSClient({}),
        'arn:aws:sns:eu-west-1:123456789012:alerts',
        'test',
      ),
    }),
  };
}
/** The first sweep fan-out queues for a rollout created at `start` (or one due at `when`). */
const due = (rolloutId: string, round = 0, when = firstSweepDue(start, config)): SweepMessage => ({
  kind: 'sweep',
  rolloutId,
  due: when.toISOString(),
  round,
});
const afterDue = new Date(firstSweepDue(start, config).getTime() + 60_000);
const sweepsQueued = () => sqsMock.commandCalls(SendMessageCommand).map((c) => c.args[0].input);

describe('sweeping a rollout', () => {
  it('waits, hopping through SQS at most 900 s at a time, until it is due', async () => {
    const sweep = due('20261123T160000Z-00000000');
    const result = await sweepRollout(deps(start), sweep);
    expect(result).toBe('early');
    const queued = sweepsQueued();
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
      alert: 'None',
      counts: { success: 1, unchanged: 1, pending: 0 },
    });
    expect(sweepsQueued()).toEqual([]);
  });

  it('sends again a target nobody sent, without using up its attempt, then gives up after 3 resends', async () => {
    // Arrange: a first attempt never sent (its creator died after writing the target)
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 0);
    const resent = () =>
      sqsMock
        .commandCalls(SendMessageBatchCommand)
        .flatMap((c) => c.args[0].input.Entries ?? [])
        .map((entry) => JSON.parse(entry.MessageBody ?? '{}'))
        // the same attempt queued again (a retry of the next attempt is not a resend)
        .filter((body) => body.attempt === 1);

    // Act: the first sweep
    const result = await sweepRollout(deps(afterDue), due(rolloutId));

    // Assert: the same attempt is queued again at once, not used up
    expect(result).toBe('again');
    expect(resent()).toEqual([{ rolloutId, instanceIds: [a], parameter, path, attempt: 1 }]);
    expect(await table.store.getTarget(rolloutId, ref(a!))).toMatchObject({
      status: 'Pending',
      attempt: 1,
      resends: 1,
    });

    // Act: three more sweeps, each after the resend's window, and the message never arriving
    for (const minutes of [30, 40, 50]) {
      await sweepRollout(deps(at(minutes * 60)), due(rolloutId, 1, at(minutes * 60)));
    }

    // Assert: resent three times in all, then the attempt is counted as never sent
    expect(resent()).toHaveLength(3);
    expect(await table.store.getTarget(rolloutId, ref(a!))).toMatchObject({
      status: 'Pending',
      attempt: 2,
      lastError: { status: 'NeverSent' },
    });
  });

  it('leaves a target with no command alone while its sender may still be sending', async () => {
    // Arrange: the creator still holds its sending lease (it has not released it)
    const [a] = instanceIds(1);
    const rolloutId = nextRolloutId();
    currentRollout = rolloutId;
    await store().create(
      {
        rolloutId,
        trigger: { type: 'event', eventId: 'e' },
        environment: 'prod',
        parameters: [parameter],
        files: [{ parameter, path }],
      },
      [{ instanceId: a!, parameter, path, status: 'Pending' }],
    );
    // Act: a sweep due at once, inside the lease
    const result = await sweepRollout(deps(at(30)), due(rolloutId, 0, at(30)));
    // Assert
    expect(result).toBe('again');
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
    expect(await table.store.getTarget(rolloutId, ref(a!))).toMatchObject({
      status: 'Pending',
      attempt: 1,
    });
  });

  it('looks again later while Run Command still runs the command', async () => {
    // Arrange: a sweep due before the attempt's deadline (say, queued by a takeover)
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 1);
    listed = { [a!]: { Status: 'InProgress' } };
    const now = at(600);
    // Act
    expect(await sweepRollout(deps(now), due(rolloutId, 0, now))).toBe('again');
    // Assert: nothing decided; the next look is at the attempt's deadline
    const deadline = new Date(attemptDeadline({}, { createdAt: start.toISOString() }, config));
    const next = sweepsQueued();
    expect(next.map((m) => JSON.parse(m.MessageBody!))).toEqual([
      { kind: 'sweep', rolloutId, round: 1, due: deadline.toISOString() },
    ]);
    expect(next[0]?.DelaySeconds).toBe((deadline.getTime() - now.getTime()) / 1000);
    expect(await table.store.getTarget(rolloutId, ref(a!))).toMatchObject({
      status: 'Pending',
      attempt: 1,
    });
  });

  it('retries an attempt that got no final status by its deadline', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 1);
    listed = { [a!]: { Status: 'InProgress' } };
    expect(await sweepRollout(deps(afterDue), due(rolloutId))).toBe('again');
    expect(await table.store.getTarget(rolloutId, ref(a!))).toMatchObject({
      status: 'Pending',
      attempt: 2,
      lastError: { status: 'NoFinalStatus' },
    });
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(1);
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(0);
  });

  it('fails what never got a final status by its last attempt’s deadline, and alerts', async () => {
    // Arrange: the target is on its last attempt, whose command Run Command never finishes
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 1);
    const lastAttempt = config.retry.maxAttempts;
    const retryAt = at(60).toISOString();
    for (let attempt = 1; attempt < lastAttempt; attempt++) {
      await store().commit(rolloutId, [{ ...ref(a!), fromAttempt: attempt, to: 'Retry', retryAt }]);
    }
    await store().recordAttemptCommands(rolloutId, [ref(a!)], lastAttempt, 'cmd-last');
    listed = { [a!]: { Status: 'InProgress' } };
    const deadline = attemptDeadline({ retryAt }, { createdAt: start.toISOString() }, config);
    // Act
    const result = await sweepRollout(deps(new Date(deadline + 1000)), due(rolloutId));
    // Assert
    expect(result).toBe('done');
    expect(await table.store.getTarget(rolloutId, ref(a!))).toMatchObject({
      status: 'Failed',
      lastError: { status: `NoFinalStatus (after ${lastAttempt} attempts)` },
    });
    expect(await table.store.getRollout(rolloutId)).toMatchObject({
      state: 'Settled',
      alert: 'Sent',
    });
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(1);
  });

  it('sends the alert of a settled rollout whose alert was never sent', async () => {
    // Arrange: settled with a failure, then its publisher stopped before publishing
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 1);
    await store().commit(rolloutId, [{ ...ref(a!), fromAttempt: 1, to: 'Failed' }]);
    await store().settle(rolloutId);
    expect(await store().claimAlert(rolloutId)).toBe(true);
    // Act: once the dead publisher's claim has run out
    const result = await sweepRollout(deps(afterDue), due(rolloutId));
    // Assert
    expect(result).toBe('done');
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(1);
    expect(await table.store.getRollout(rolloutId)).toMatchObject({ alert: 'Sent' });
    expect(ssmMock.calls()).toHaveLength(0);
  });

  it('does nothing for a rollout that has settled', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await pendingRollout([a!], 1);
    await store().commit(rolloutId, [{ ...ref(a!), fromAttempt: 1, to: 'Success' }]);
    await store().settle(rolloutId);
    expect(await sweepRollout(deps(afterDue), due(rolloutId))).toBe('done');
    expect(ssmMock.calls()).toHaveLength(0);
    expect(sqsMock.calls()).toHaveLength(0);
    expect(snsMock.calls()).toHaveLength(0);
  });
});
