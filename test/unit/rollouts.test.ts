import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NewTarget, RolloutStore, Transition } from '../../shared/rollouts.ts';
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
  ({ instanceId, parameter, fromAttempt, to: status }) as Transition;

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
      const { applied } = await store.apply(rolloutId, [to(a!, status)]);
      expect(applied).toHaveLength(1);
      const rollout = await store.getRollout(rolloutId);
      expect(rollout?.counts.pending).toBe(0);
      expect(rollout?.counts[status.toLowerCase() as 'success']).toBe(
        status === 'Unreachable' ? 1 : 1,
      );
      expect((await store.getTarget(rolloutId, a!, parameter))?.status).toBe(status);
    },
  );

  it('skips a duplicate event: a target never moves backwards or counts twice', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await newRollout([a!]);
    await store.apply(rolloutId, [{ ...to(a!, 'Success'), versionWritten: 7 } as Transition]);
    const duplicate = await store.apply(rolloutId, [to(a!, 'Failed')]);
    expect(duplicate).toEqual({ applied: [], stale: [to(a!, 'Failed')] });
    expect(await store.getTarget(rolloutId, a!, parameter)).toMatchObject({
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
    await store.apply(rolloutId, [to(a!, 'Retry', 1)]);
    expect((await store.getTarget(rolloutId, a!, parameter))?.attempt).toBe(2);
    // The first attempt's success event arrives after the retry decision.
    const late = await store.apply(rolloutId, [to(a!, 'Success', 1)]);
    expect(late.stale).toHaveLength(1);
    expect((await store.getRollout(rolloutId))?.counts).toMatchObject({
      pending: 1,
      retries: 1,
      success: 0,
    });
  });

  it('applies the fresh transitions of a batch that also holds stale ones', async () => {
    const [a, b, c] = instanceIds(3);
    const rolloutId = await newRollout([a!, b!, c!]);
    await store.apply(rolloutId, [to(b!, 'Success')]);
    const { applied, stale } = await store.apply(rolloutId, [
      to(a!, 'Success'),
      to(b!, 'Success'),
      to(c!, 'Failed'),
    ]);
    expect(applied.map((t) => t.instanceId)).toEqual([a, c]);
    expect(stale.map((t) => t.instanceId)).toEqual([b]);
    expect((await store.getRollout(rolloutId))?.counts).toMatchObject({
      pending: 0,
      success: 2,
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
    const results = await Promise.all(batches.map((batch) => store.apply(rolloutId, batch)));
    // Assert
    const appliedCount = results.reduce((n, r) => n + r.applied.length, 0);
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
    await store.apply(rolloutId, [to(a!, 'Failed')]);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.settle(rolloutId)));
    expect(results.filter((r) => r.settledNow)).toHaveLength(1);
    const settled = await store.getRollout(rolloutId);
    expect(settled).toMatchObject({ state: 'Settled', alert: 'Pending' });
    await store.markAlertSent(rolloutId);
    expect(await store.settle(rolloutId)).toMatchObject({ settledNow: false, alertDue: false });
  });

  it('does not settle while anything is pending, and needs no alert for a clean rollout', async () => {
    const [a, b] = instanceIds(2);
    const rolloutId = await newRollout([a!, b!]);
    await store.apply(rolloutId, [to(a!, 'Success')]);
    expect(await store.settle(rolloutId)).toMatchObject({ settledNow: false });
    await store.apply(rolloutId, [to(b!, 'Unchanged')]);
    expect(await store.settle(rolloutId)).toMatchObject({ settledNow: true, alertDue: false });
  });

  it('claims each retry attempt for one sender only', async () => {
    const [a] = instanceIds(1);
    const rolloutId = await newRollout([a!]);
    await store.apply(rolloutId, [to(a!, 'Retry', 1)]);
    const claims = await Promise.all(
      Array.from({ length: 5 }, () => store.claimAttempt(rolloutId, a!, parameter, 2)),
    );
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect(await store.claimAttempt(rolloutId, a!, parameter, 3)).toBe(false);
    await store.recordAttemptCommand(rolloutId, a!, parameter, 2, 'cmd-retry');
    expect(await store.getTarget(rolloutId, a!, parameter)).toMatchObject({
      commandId: 'cmd-retry',
      commandIds: ['cmd-retry'],
    });
  });

  it('finds a newer rollout of the same parameter that targets the instance', async () => {
    const [a, b] = instanceIds(2);
    const older = await newRollout([a!, b!]);
    expect(await store.newerRolloutTargeting(parameter, older, a!)).toBeUndefined();
    const newer = await newRollout([a!]);
    expect(await store.newerRolloutTargeting(parameter, older, a!)).toBe(newer);
    expect(await store.newerRolloutTargeting(parameter, older, b!)).toBeUndefined();
    expect(await store.newerRolloutTargeting(parameter, newer, a!)).toBeUndefined();
  });

  it('lists a parameter’s rollouts newest first', async () => {
    const first = await newRollout(instanceIds(1));
    const second = await newRollout(instanceIds(1));
    const ids = await store.recentRolloutIds({ parameter }, 2);
    expect(ids).toEqual([second, first]);
    expect((await store.getRollouts(ids)).map((r) => r.rolloutId)).toEqual([second, first]);
  });
});
