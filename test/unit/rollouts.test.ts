import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RolloutBusyError } from '../../shared/errors.ts';
import type { NewTarget, Rollout, Transition } from '../../shared/rollout/model.ts';
import { supersedes } from '../../shared/rollout/model.ts';
import { RolloutStore } from '../../shared/rollout/store.ts';
import { instanceIds } from '../support/fixtures.ts';
import { nextRolloutId, startRolloutStore } from '../support/rollouts.ts';

// The store runs against a real DynamoDB implementation, so conditions are really evaluated.
let local: Awaited<ReturnType<typeof startRolloutStore>>;
let store: RolloutStore;
beforeAll(async () => {
  local = await startRolloutStore();
  store = local.store;
});
afterAll(() => local.close());

const parameter = '/prod/env.php';
const path = '/var/www/html/env.php';

async function newRollout(pending: string[], unreachable: string[] = []) {
  const rolloutId = nextRolloutId();
  const targets: NewTarget[] = [
    ...pending.map((instanceId) => ({ instanceId, parameter, path, status: 'Pending' as const })),
    ...unreachable.map((instanceId) => ({
      instanceId,
      parameter,
      path,
      status: 'Unreachable' as const,
      reason: 'NotManagedBySSM',
    })),
  ];
  const created = await store.create(
    {
      rolloutId,
      trigger: { type: 'event', eventId: 'e-1' },
      environment: 'prod',
      parameters: [parameter],
      files: [{ parameter, path }],
      version: 7,
    },
    targets,
  );
  expect(created).toBe(true);
  return rolloutId;
}

const to = (instanceId: string, status: Transition['to'], fromAttempt = 1): Transition =>
  status === 'Retry'
    ? {
        instanceId,
        parameter,
        path,
        fromAttempt,
        to: 'Retry',
        retryAt: new Date(Date.now() + 30_000).toISOString(),
      }
    : { instanceId, parameter, path, fromAttempt, to: status };
const ref = (instanceId: string) => ({ instanceId, parameter, path });

describe('RolloutStore', () => {
  it('records a rollout with its targets and counts the unreachable at once', async () => {
    const [a, b, c] = instanceIds(3);
    const rolloutId = await newRollout([a!, b!], [c!]);
    const loaded = await store.load(rolloutId);
    expect(loaded?.rollout).toMatchObject({
      state: 'InProgress',
      version: 7,
      counts: { total: 3, pending: 2, unreachable: 1, success: 0, failed: 0 },
    });
    expect(loaded?.targets.map((t) => [t.instanceId, t.status, t.attempt])).toEqual([
      [a, 'Pending', 1],
      [b, 'Pending', 1],
      [c, 'Unreachable', 1],
    ]);
  });

  it('refuses to create the same rollout twice', async () => {
    const rolloutId = await newRollout(instanceIds(1));
    const again = await store.create(
      {
        rolloutId,
        trigger: { type: 'event', eventId: 'e-1' },
        environment: 'prod',
        parameters: [parameter],
        files: [],
      },
      [],
    );
    expect(again).toBe(false);
    expect((await store.getRollout(rolloutId))?.counts.total).toBe(1);
  });

  it.each(['Success', 'Unchanged', 'Failed', 'Unreachable', 'Superseded'] as const)(
    'moves a pending target to %s and counts it once',
    async (status) => {
      const [a] = instanceIds(1);
      const rolloutId = await newRollout([a!]);
      const { applied } = await store.commit(rolloutId, [to(a!, status)]);
      expect(applied).toHaveLength(1);
      const rollout = await store.getRollout(rolloutId);
      expect(rollout?.counts.pending).toBe(0);
      expect(rollout?.counts[status.toLowerCase() as 'success']).toBe(
        status === 'Unreachable' ? 1 : 1,
      );
      expect((await store.getTarget(rolloutId, ref(a!)))?.status).toBe(status);
    },
  );

  it('skips a duplicate event: a target never moves backwards or counts twice', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await newRollout([a!]);
    await store.commit(rolloutId, [{ ...to(a!, 'Success'), versionWritten: 7 } as Transition]);
    const duplicate = await store.commit(rolloutId, [to(a!, 'Failed')]);
    expect(duplicate).toEqual({ applied: [], alreadyApplied: [], stale: [to(a!, 'Failed')] });
    expect(await store.getTarget(rolloutId, ref(a!))).toMatchObject({
      status: 'Success',
      versionWritten: 7,
    });
    expect((await store.getRollout(rolloutId))?.counts).toMatchObject({
      success: 1,
      failed: 0,
      pending: 0,
    });
  });

  it('skips a late event from an earlier attempt once the target retried', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await newRollout([a!]);
    await store.commit(rolloutId, [to(a!, 'Retry', 1)]);
    expect((await store.getTarget(rolloutId, ref(a!)))?.attempt).toBe(2);
    // The first attempt's success event arrives after the retry decision.
    const late = await store.commit(rolloutId, [to(a!, 'Success', 1)]);
    expect(late.stale).toHaveLength(1);
    expect((await store.getRollout(rolloutId))?.counts).toMatchObject({
      pending: 1,
      retries: 1,
      success: 0,
    });
  });

  it('applies the fresh transitions of a batch that also holds stale ones', async () => {
    const [a, b, c, d] = instanceIds(4);
    const rolloutId = await newRollout([a!, b!, c!, d!]);
    await store.commit(rolloutId, [to(b!, 'Success'), to(d!, 'Success')]);
    const { applied, alreadyApplied, stale } = await store.commit(rolloutId, [
      to(a!, 'Success'),
      to(b!, 'Success'),
      to(c!, 'Failed'),
      to(d!, 'Failed'),
    ]);
    expect(applied.map((t) => t.instanceId)).toEqual([a, c]);
    // b is already where its copy leads (a redelivered event): its consequences are still owed,
    // but it is not counted again. d moved elsewhere: stale.
    expect(alreadyApplied.map((t) => t.instanceId)).toEqual([b]);
    expect(stale.map((t) => t.instanceId)).toEqual([d]);
    expect((await store.getRollout(rolloutId))?.counts).toMatchObject({
      pending: 0,
      success: 3,
      failed: 1,
    });
  });

  it('keeps exact counts under concurrent batches, including duplicates, beyond one transaction', async () => {
    // Arrange: 250 targets, every event delivered twice, in 10 concurrent batches
    const ids = instanceIds(250);
    const rolloutId = await newRollout(ids);
    const events = [...ids, ...ids].map((id, i) => to(id, i % 5 === 0 ? 'Failed' : 'Success'));
    const batches = Array.from({ length: 10 }, (_, k) => events.filter((_, i) => i % 10 === k));
    // Act
    const results = await Promise.all(batches.map((batch) => store.commit(rolloutId, batch)));
    // Assert
    const appliedCount = results.reduce(
      (n, r) => n + r.applied.length + r.alreadyApplied.length,
      0,
    );
    const rollout = await store.getRollout(rolloutId);
    expect(appliedCount).toBe(250);
    expect(rollout?.counts.pending).toBe(0);
    expect(rollout!.counts.success + rollout!.counts.failed).toBe(250);
    const loaded = await store.load(rolloutId);
    expect(loaded?.targets.filter((t) => t.status === 'Failed')).toHaveLength(
      rollout!.counts.failed,
    );
  });

  it('lets exactly one of many concurrent callers settle a rollout', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await newRollout([a!]);
    await store.commit(rolloutId, [to(a!, 'Failed')]);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.settle(rolloutId)));
    expect(results.filter((r) => r.settledNow)).toHaveLength(1);
    const settled = await store.getRollout(rolloutId);
    expect(settled).toMatchObject({ state: 'Settled', alert: 'Pending' });
    // The alert is claimed by exactly one of many callers, then marked sent.
    const claims = await Promise.all(Array.from({ length: 8 }, () => store.claimAlert(rolloutId)));
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect(await store.getRollout(rolloutId)).toMatchObject({ alert: 'Sending' });
    await store.markAlertSent(rolloutId);
    expect(await store.settle(rolloutId)).toMatchObject({
      settledNow: false,
      rollout: { state: 'Settled', alert: 'Sent' },
    });
    expect(await store.claimAlert(rolloutId)).toBe(false);
  });

  it('does not settle while anything is pending, and needs no alert for a clean rollout', async () => {
    const [a, b] = instanceIds(2);
    const rolloutId = await newRollout([a!, b!]);
    await store.commit(rolloutId, [to(a!, 'Success')]);
    expect(await store.settle(rolloutId)).toMatchObject({ settledNow: false });
    await store.commit(rolloutId, [to(b!, 'Unchanged')]);
    expect(await store.settle(rolloutId)).toMatchObject({
      settledNow: true,
      rollout: { state: 'Settled', alert: 'None' },
    });
    expect(await store.claimAlert(rolloutId)).toBe(false);
  });

  it('claims each retry attempt for one sender only', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await newRollout([a!]);
    await store.commit(rolloutId, [to(a!, 'Retry', 1)]);
    const claims = await Promise.all(
      Array.from({ length: 5 }, () => store.claimAttempt(rolloutId, ref(a!), 2)),
    );
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect(await store.claimAttempt(rolloutId, ref(a!), 3)).toBe(false);
    await store.recordAttemptCommands(rolloutId, [ref(a!)], 2, 'cmd-retry');
    expect(await store.getTarget(rolloutId, ref(a!))).toMatchObject({
      commandId: 'cmd-retry',
      commandIds: ['cmd-retry'],
    });
  });

  it('finds a newer rollout of the same parameter that targets the instance', async () => {
    // Arrange: an older rollout, then (by the store's clock) a newer one of the same parameter
    // and a bootstrap rollout of another instance
    const [a, b] = instanceIds(2);
    const olderId = await newRollout([a!, b!]);
    const older = (await store.getRollout(olderId))!;
    const since = async (after: string, instanceId: string) =>
      (await store.rolloutsOfParameterSince(parameter, after, [instanceId])).filter((entry) =>
        supersedes(entry, older),
      );
    expect(await since(older.createdAt, a!)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 2));
    const newer = await newRollout([a!]);
    const bootstrapOfB = nextRolloutId();
    await store.create(
      {
        rolloutId: bootstrapOfB,
        trigger: { type: 'bootstrap', instanceId: b! },
        environment: 'prod',
        parameters: [parameter],
        files: [{ parameter, path }],
      },
      [{ instanceId: b!, parameter, path, status: 'Pending' }],
    );
    // Act
    const forA = await since(older.createdAt, a!);
    const forB = await since(older.createdAt, b!);
    // Assert: oldest first; another instance's bootstrap never concerns a
    expect(forA.map((e) => e.rolloutId)).toEqual([newer]);
    expect(forA[0]).toMatchObject({ triggerType: 'event', version: 7 });
    expect(forB.map((e) => e.rolloutId)).toEqual([newer, bootstrapOfB]);
    expect(await store.getTarget(newer, ref(a!))).toBeDefined();
    expect(await store.getTarget(newer, ref(b!))).toBeUndefined();
    const newest = (await store.getRollout(bootstrapOfB))!;
    expect(
      (await store.rolloutsOfParameterSince(parameter, newest.createdAt, [a!])).filter((e) =>
        supersedes(e, newest),
      ),
    ).toEqual([]);
  });

  it('lists a parameter’s rollouts newest first', async () => {
    const first = await newRollout(instanceIds(1));
    const second = await newRollout(instanceIds(1));
    const entries = await store.recentRollouts({ parameter }, 2);
    const ids = entries.map((e) => e.rolloutId);
    expect(ids).toEqual([second, first]);
    expect(entries[0]).toMatchObject({ triggerType: 'event', version: 7 });
    expect((await store.getRollouts(ids)).map((r) => r.rolloutId)).toEqual([second, first]);
  });
});

describe('the sending lease', () => {
  it('keeps a second run of a rollout from sending while the first may still be', async () => {
    const rolloutId = await newRollout(instanceIds(1));
    expect(await store.takeOverSending(rolloutId)).toBe(false);
  });

  it('lets one of several later runs take over once the lease has run out', async () => {
    const rolloutId = await newRollout(instanceIds(1));
    const { RolloutStore } = await import('../../shared/rollout/store.ts');
    const later = new RolloutStore(local.db, 'rollouts', () => new Date(Date.now() + 5 * 60_000));
    const takers = await Promise.all(
      Array.from({ length: 4 }, () => later.takeOverSending(rolloutId)),
    );
    expect(takers.filter(Boolean)).toHaveLength(1);
  });
});

describe('fanOut run twice at once', () => {
  it('sends each target once: the second run is told to come back later', async () => {
    // Arrange: two runs of one rollout (say a lifecycle event and a state change for one
    // new instance) whose sends overlap
    const { EC2Client, DescribeInstancesCommand } = await import('@aws-sdk/client-ec2');
    const { SSMClient, SendCommandCommand, DescribeInstanceInformationCommand } = await import(
      '@aws-sdk/client-ssm'
    );
    const { mockClient } = await import('aws-sdk-client-mock');
    const { fanOut } = await import('../../shared/send/fanout.ts');
    const { RolloutBusyError } = await import('../../shared/errors.ts');
    const { Ledger } = await import('../../shared/rollout/ledger.ts');
    const { parseConfig } = await import('../../shared/config.ts');
    const { testConfigInput } = await import('../support/fixtures.ts');
    const [id] = instanceIds(1);
    const ec2Mock = mockClient(EC2Client);
    const ssmMock = mockClient(SSMClient);
    ec2Mock
      .on(DescribeInstancesCommand)
      .resolves({ Reservations: [{ Instances: [{ InstanceId: id }] }] });
    ssmMock
      .on(DescribeInstanceInformationCommand)
      .resolves({ InstanceInformationList: [{ InstanceId: id, PingStatus: 'Online' }] });
    ssmMock.on(SendCommandCommand).callsFake(async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { Command: { CommandId: 'cmd-1' } };
    });
    const config = parseConfig(testConfigInput);
    const sqs = { send: async () => ({}) } as any;
    const deps = {
      ec2: new EC2Client({}),
      ssm: new SSMClient({}),
      store,
      ledger: new Ledger({
        store,
        sqs,
        retryQueueUrl: 'retry-q',
        statusQueueUrl: 'status-q',
        config,
        notify: async () => undefined,
      }),
      config,
      documentName: 'doc',
    };
    const request = {
      rolloutId: nextRolloutId(),
      trigger: { type: 'bootstrap' as const, instanceId: id! },
      environment: 'prod',
      files: [
        {
          environment: 'prod',
          parameter,
          path,
          owner: 'root',
          group: 'root',
          mode: '0400',
          format: 'raw' as const,
          backups: 3,
        },
      ],
      instanceIds: [id!],
    };
    try {
      // Act
      const results = await Promise.allSettled([fanOut(deps, request), fanOut(deps, request)]);
      // Assert
      expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(1);
      const rejected = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
      expect(rejected).toEqual([expect.any(RolloutBusyError)]);
      // Once the first run is done, a later run resumes and finds nothing left to send.
      await expect(fanOut(deps, request)).resolves.toMatchObject({ resumed: true, commands: [] });
      expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(1);
    } finally {
      ec2Mock.restore();
      ssmMock.restore();
    }
  });
});

describe('creating a rollout', () => {
  it('writes nothing when the rollout exists, so a second run cannot reset a target that moved on', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await newRollout([a!]);
    await store.commit(rolloutId, [to(a!, 'Success')]);
    const again = await store.create(
      {
        rolloutId,
        trigger: { type: 'event', eventId: 'e-1' },
        environment: 'prod',
        parameters: [parameter],
        files: [],
      },
      [{ instanceId: a!, parameter, path, status: 'Pending' }],
    );
    expect(again).toBe(false);
    expect((await store.getTarget(rolloutId, ref(a!)))?.status).toBe('Success');
  });

  it('lets a later run finish a rollout whose creator stopped half-way, and never settles it before', async () => {
    // Arrange: the creator wrote the rollout item, then stopped before its targets
    const [a, b] = instanceIds(2);
    const rolloutId = nextRolloutId();
    const { PutCommand } = await import('@aws-sdk/lib-dynamodb');
    await local.db.send(
      new PutCommand({
        TableName: 'rollouts',
        Item: {
          pk: `R#${rolloutId}`,
          sk: '#ROLLOUT',
          type: 'rollout',
          rolloutId,
          trigger: { type: 'event', eventId: 'e-1' },
          createdAt: new Date().toISOString(),
          state: 'Creating',
          alert: 'None',
          environment: 'prod',
          parameters: [parameter],
          files: [{ parameter, path }],
          nPending: 0,
          nTotal: 0,
        },
      }),
    );
    expect(await store.settle(rolloutId)).toMatchObject({ settledNow: false });
    // Act
    await store.finishCreating(rolloutId, [
      { instanceId: a!, parameter, path, status: 'Pending' },
      { instanceId: b!, parameter, path, status: 'Unreachable', reason: 'NotManagedBySSM' },
    ]);
    // Assert
    expect(await store.getRollout(rolloutId)).toMatchObject({
      state: 'InProgress',
      counts: { total: 2, pending: 1, unreachable: 1 },
    });
  });
});

describe('a rollout restricted to more instances than one item holds', () => {
  // A rollback of a large staged rollout names every instance it reached; DynamoDB items hold
  // 400 KB, about 19,000 instance ids.
  const beginRestricted = (rolloutId: string, ids: string[], on: RolloutStore = store) =>
    on.begin({
      rolloutId,
      trigger: { type: 'rollback', of: nextRolloutId(), stage: 2 },
      environment: 'prod',
      parameters: [parameter],
      files: [{ parameter, path }],
      version: 6,
      instanceIds: ids,
    });

  it('is created and read back with every instance id', async () => {
    const ids = instanceIds(25_000);
    const rolloutId = nextRolloutId();
    expect(await beginRestricted(rolloutId, ids)).toBe(true);
    // The rollout item alone does not carry them (hot paths read it); restrictionOf does.
    const rollout = await store.getRollout(rolloutId);
    expect(rollout?.instanceIds).toBeUndefined();
    expect(rollout?.instanceIdPages).toBe(5);
    expect(await store.restrictionOf(rollout as Rollout)).toEqual(ids);
    expect((await store.load(rolloutId))?.rollout.instanceIds).toEqual(ids);
    // The rollout item is still the lock: a second creation writes nothing.
    expect(await beginRestricted(rolloutId, ids.slice(0, 20_000))).toBe(false);
    expect(await store.restrictionOf(rollout as Rollout)).toEqual(ids);
  });

  it('refuses to read a restriction with an item missing rather than return it short', async () => {
    const rolloutId = nextRolloutId();
    await beginRestricted(rolloutId, instanceIds(12_000));
    // As TTL may delete one item before the others.
    await local.db.send(
      new DeleteCommand({ TableName: 'rollouts', Key: { pk: `R#${rolloutId}`, sk: 'I#00001' } }),
    );
    const rollout = (await store.getRollout(rolloutId)) as Rollout;
    await expect(store.restrictionOf(rollout)).rejects.toThrow(
      `rollout ${rolloutId} keeps its instances in 3 items, 2 found`,
    );
    await expect(store.load(rolloutId)).rejects.toThrow('3 items, 2 found');
  });

  it('answers busy when another run creates the same long rollout at the same moment', async () => {
    // DynamoDB cancels one of two transactions on the same items with TransactionConflict
    // (API_TransactWriteItems.html); the other run finishes the rollout.
    const db = DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'eu-west-1' }));
    mockClient(db)
      .on(TransactWriteCommand)
      .rejects(
        Object.assign(new Error('Transaction cancelled'), {
          name: 'TransactionCanceledException',
          CancellationReasons: [{ Code: 'TransactionConflict' }, { Code: 'None' }],
        }),
      );
    const racing = new RolloutStore(db, 'rollouts');
    await expect(beginRestricted(nextRolloutId(), instanceIds(3000), racing)).rejects.toThrow(
      RolloutBusyError,
    );
  });

  it('keeps a short restriction on the rollout item itself', async () => {
    const ids = instanceIds(1000);
    const rolloutId = nextRolloutId();
    await beginRestricted(rolloutId, ids);
    const rollout = await store.getRollout(rolloutId);
    expect(rollout?.instanceIds).toEqual(ids);
    expect(rollout?.instanceIdPages).toBeUndefined();
    expect(await store.restrictionOf(rollout as Rollout)).toEqual(ids);
  });
});
