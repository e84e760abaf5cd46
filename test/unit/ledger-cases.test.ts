import { describe, expect, it } from 'vitest';
import { checkBootstrap, firstCheck } from '../../shared/bootstrap/new-instances.ts';
import { newRolloutId } from '../../shared/rollout/rollout-id.ts';
import type { World, WorldOptions } from '../support/ledger-world.ts';
import { ledgerWorlds } from '../support/world-tests.ts';

/**
 * The ledger's regression tests: each case of the interleaving review (issue "The rollout
 * ledger"), reproduced step by step against the real store on dynalite, with Run Command,
 * EC2 and SQS faked in memory and time on a virtual clock.
 */

const world = ledgerWorlds('rollouts');

function newWorld(options: Omit<WorldOptions, 'endpoint' | 'tableName'>): Promise<World> {
  return world(options);
}

const MINUTE = 60_000;

describe('case 1: one parameter mapped to two paths', () => {
  it('keys targets by file: 3 instances × 2 paths are 6 targets, and a failing path alerts', async () => {
    // Arrange
    const w = await newWorld({ instances: 3, twoPaths: true, maxAttempts: 1 });

    // Act: the second path fails with a permanent error on every instance
    const rolloutId = await w.put();
    await w.drain((commandId) =>
      w.commands.get(commandId)?.path === '/opt/app/env.php' ? 'content-invalid' : 'updated',
    );

    // Assert
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.targets).toHaveLength(6);
    expect(loaded?.rollout.state).toBe('Settled');
    expect(loaded?.rollout.counts).toMatchObject({ total: 6, success: 3, failed: 3, pending: 0 });
    const failedPaths = new Set(
      loaded?.targets.filter((t) => t.status === 'Failed').map((t) => t.path),
    );
    expect(failedPaths).toEqual(new Set(['/opt/app/env.php']));
    expect(w.alertsOf(rolloutId)).toBe(1);
  });

  it('30 instances × 2 paths settle with 60 targets and counters that match them', async () => {
    const w = await newWorld({ instances: 30, twoPaths: true, maxAttempts: 1 });

    const rolloutId = await w.put();
    await w.drain((commandId) =>
      w.commands.get(commandId)?.path === '/opt/app/env.php' ? 'content-invalid' : 'updated',
    );

    const loaded = await w.store.load(rolloutId);
    expect(loaded?.targets).toHaveLength(60);
    expect(loaded?.rollout.counts).toMatchObject({ total: 60, success: 30, failed: 30 });
    expect(w.alertsOf(rolloutId)).toBe(1);
  });
});

describe('case 2: concurrent settlers', () => {
  it('publishes the alert once when the same final event is tracked by two batches at once', async () => {
    // Arrange: one instance, its only attempt fails permanently; the event arrives twice
    const w = await newWorld({ instances: 1, maxAttempts: 1 });
    const rolloutId = await w.put();
    const [[commandId, instanceId]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(commandId, instanceId, 'content-invalid', 'twice');
    const [first, second] = w.queues.status.filter((m) => !JSON.parse(m.body).kind);

    // Act: two track invocations handle one copy each, concurrently
    const deliverOne = async (m: typeof first) => {
      w.queues.status = w.queues.status.filter((x) => x !== m);
      w.queues.status.unshift(m!);
      await w.deliver('status', 1);
    };
    await Promise.all([deliverOne(first), deliverOne(second)]);
    await w.drain();

    // Assert
    expect(w.alertsOf(rolloutId)).toBe(1);
    expect((await w.store.getRollout(rolloutId))?.alert).toBe('Sent');
  });

  it('lets only one of two concurrent claimers publish, and a later one once the claim ran out unsent', async () => {
    const w = await newWorld({ instances: 1, maxAttempts: 1 });
    const rolloutId = await w.put();
    const [[commandId, instanceId]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(commandId, instanceId, 'content-invalid', 'lost');
    // settle without an alert being claimed yet: a commit through the store only
    await w.store.commit(rolloutId, [
      {
        instanceId,
        parameter: '/prod/env.php',
        path: '/var/www/html/env.php',
        fromAttempt: 1,
        to: 'Failed',
        lastError: { status: 'Failed' },
      },
    ]);
    await w.store.settle(rolloutId);

    const claims = await Promise.all([
      w.store.claimAlert(rolloutId),
      w.store.claimAlert(rolloutId),
    ]);
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect(await w.store.claimAlert(rolloutId)).toBe(false);
    w.advance(3 * MINUTE);
    expect(await w.store.claimAlert(rolloutId)).toBe(true);
  });
});

describe('case 3: a sweep and a retry waiting out its delay', () => {
  for (const maxAttempts of [2, 3]) {
    it(`does not bump or fail a target whose retry is queued (maxAttempts ${maxAttempts})`, async () => {
      // Arrange: a slow instance fails attempt 1 just before the first sweep is due; its retry
      // then waits out its backoff in SQS while the sweep runs
      const w = await newWorld({ instances: 1, maxAttempts });
      const rolloutId = await w.put();
      const [[commandId, instanceId]] = w.pendingInvocations() as [[string, string]];
      const sweep = w.queues.status.find((m) => JSON.parse(m.body).kind === 'sweep');
      const due = Date.parse(JSON.parse(sweep!.body).due);
      w.clock = due - 5_000;
      w.runInvocation(commandId, instanceId, 'fetch-failed');
      await w.deliver('status');
      const target = (await w.store.load(rolloutId))?.targets[0];
      expect(target).toMatchObject({ status: 'Pending', attempt: 2 });
      expect(Date.parse(target!.retryAt!)).toBeGreaterThan(due);

      // Act: the sweep runs (its hops done) while the retry is still delayed
      w.clock = due;
      for (const m of w.queues.status) m.visibleAt = Math.min(m.visibleAt, due);
      await w.deliver('status');

      // Assert: still attempt 2, pending; the real attempt-2 message then succeeds
      expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({
        status: 'Pending',
        attempt: 2,
      });
      await w.drain();
      expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({
        status: 'Success',
        attempt: 2,
      });
      expect(w.alertsOf(rolloutId)).toBe(0);
    });
  }

  it('waits for a slow instance until its attempt deadline and records its real result', async () => {
    // Arrange: the command is delivered but the instance takes nearly the whole timeout
    const w = await newWorld({ instances: 1, maxAttempts: 3 });
    const rolloutId = await w.put();
    const [[commandId, instanceId]] = w.pendingInvocations() as [[string, string]];

    // Act: sweeps come and go while Run Command still says InProgress, before the deadline
    w.advance(20 * MINUTE); // rollout timeout 600 s + execution 600 s
    await w.deliver('status');
    expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({
      status: 'Pending',
      attempt: 1,
    });
    w.runInvocation(commandId, instanceId, 'updated', 'lost'); // finishes; its event is lost
    await w.drain();

    // Assert: the sweep read the real result
    expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({
      status: 'Success',
      attempt: 1,
      versionWritten: 2,
    });
  });
});

describe('case 4: supersession compares versions, never id order', () => {
  it('two puts in one second: the v2 rollout is never superseded by the v1 rollout', async () => {
    // Arrange: v1's event is delivered after v2 (second-precision times, hash-ordered ids)
    const w = await newWorld({ instances: 1, maxAttempts: 3 });
    const second = Math.floor(w.clock / 1000) * 1000;
    const v1 = await w.put({ eventSecond: second, deliver: false }); // v1 put at .2 s
    const v2 = await w.put({ eventSecond: second, deliver: false }); // v2 put at .7 s
    // v2's propagate runs first; its command fails retryably, the instance keeps v1 on disk
    await w.propagate(v2, 3); // version numbers: world starts at 1, so v1=2, v2=3
    const [[c2, instanceId]] = w.pendingInvocations() as [[string, string]];
    w.parameterVersion.set('/prod/env.php', 2); // the instance's fetch still sees v1
    w.runInvocation(c2, instanceId, 'updated');
    w.parameterVersion.set('/prod/env.php', 3);
    // v1's late event starts a rollout recorded later, at version 2
    w.advance(1);
    await w.propagate(v1, 2);
    const [[c1]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(c1, instanceId, 'fetch-failed');

    // Act
    await w.drain();

    // Assert: the instance ends on v3 and nothing was called superseded by an older version
    expect(w.disk.get(instanceId)?.get('/var/www/html/env.php')).toBe(3);
    const v2Target = (await w.store.load(v2))?.targets[0];
    expect(v2Target?.status).not.toBe('Superseded');
  });

  it('a later rollout at no lower version supersedes a pending retry', async () => {
    const w = await newWorld({ instances: 1, maxAttempts: 3 });
    const first = await w.put();
    const [[c1, instanceId]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(c1, instanceId, 'fetch-failed');
    await w.deliver('status'); // attempt 2 queued
    w.advance(1000);
    const second = await w.put();

    await w.drain();

    expect((await w.store.load(first))?.targets[0]?.status).toBe('Superseded');
    expect((await w.store.load(second))?.targets[0]?.status).toBe('Success');
    expect(w.disk.get(instanceId)?.get('/var/www/html/env.php')).toBe(3);
  });
});

describe('case 5: a settled rollout whose alert failed', () => {
  it('is alerted by the next sweep', async () => {
    // Arrange: the last status event settles the rollout, but SNS publish fails
    const w = await newWorld({ instances: 1, maxAttempts: 1 });
    const rolloutId = await w.put();
    const [[commandId, instanceId]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(commandId, instanceId, 'content-invalid');
    w.inject({ kind: 'sns-fails' });
    await w.deliver('status');
    expect((await w.store.getRollout(rolloutId))?.state).toBe('Settled');
    expect(w.alertsOf(rolloutId)).toBe(0);
    // the failed status message is dropped (say it went to the DLQ): only the sweep is left
    w.queues.status = w.queues.status.filter((m) => JSON.parse(m.body).kind === 'sweep');

    // Act
    await w.drain();

    // Assert
    expect(w.alertsOf(rolloutId)).toBe(1);
    expect((await w.store.getRollout(rolloutId))?.alert).toBe('Sent');
  });
});

describe('case 6: a lost transaction reply', () => {
  it('still queues the retry the commit implied, when the reply of the commit is lost', async () => {
    // Arrange: attempt 1 fails retryably
    const w = await newWorld({ instances: 1, maxAttempts: 3 });
    const rolloutId = await w.put();
    const [[commandId, instanceId]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(commandId, instanceId, 'fetch-failed');
    // Track's calls: GetCommandInvocation (a failure is read alone, no listing), BatchGetItem
    // (commands), DescribeInstances, then TransactWriteItems: its reply is lost.
    w.inject({ kind: 'lost-reply', at: 3 });
    await w.deliver('status');
    const afterCrash = (await w.store.load(rolloutId))?.targets[0];
    expect(afterCrash).toMatchObject({ status: 'Pending', attempt: 2 });
    expect(w.queues.retry).toHaveLength(0); // the crash came before the retry was queued

    // Act: the status message comes back after its visibility timeout (360 s)
    w.advance(6 * MINUTE);
    await w.deliver('status');

    // Assert: the redelivery found the commit applied and queued its retry
    expect(w.queues.retry).toHaveLength(1);
    await w.drain();
    expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({
      status: 'Success',
      attempt: 2,
    });
    expect((await w.store.getRollout(rolloutId))?.counts).toMatchObject({
      success: 1,
      retries: 1,
      pending: 0,
    });
  });
});

describe('case 7: a rollout whose first run does not finish', () => {
  it('a resync that crashes half-way is swept: never-sent targets are sent and the rollout settles', async () => {
    // Arrange: 120 instances (3 chunks); the resync dies (a timeout) at the SendCommand of the
    // chunk it sends itself, after queuing the other two. Calls: SendMessage (sweep),
    // DescribeInstances, 3× DescribeInstanceInformation, PutItem, GetItem, 5× BatchWriteItem
    // (120 targets, 3 chunks, 2 index entries), UpdateItem, GetItem and UpdateItem (the pace),
    // SendMessageBatch, UpdateItem (the chunk's claim), SendCommand…
    const w = await newWorld({ instances: 120, maxAttempts: 3 });
    w.inject({ kind: 'die', at: 17 });
    const rolloutId = await w.resync();
    expect(w.pendingInvocations()).toHaveLength(0);
    const half = await w.store.getRollout(rolloutId);
    expect(half?.state).toBe('InProgress');
    expect(half?.queuedChunks).toBeUndefined();

    // Act
    await w.drain();

    // Assert: the sweep resumed it; the claimed chunk went out once its claim ran out
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.rollout.state).toBe('Settled');
    expect(loaded?.targets.every((t) => t.status === 'Success' && t.attempt === 1)).toBe(true);
    expect(w.commands.size).toBe(3);
    expect(w.alertsOf(rolloutId)).toBe(0);
  });

  it('a resumed plan queues the chunk another run still holds; it is sent once, at attempt 1', async () => {
    // Arrange: the resync dies at the SendCommand of the chunk it sends itself (see above),
    // its two other chunks are sent from the queue, and a run holds chunk 0 when the resume
    // comes (its claim outlives the plan's lease)
    const w = await newWorld({ instances: 120, maxAttempts: 3 });
    w.inject({ kind: 'die', at: 17 });
    const rolloutId = await w.resync();
    w.advance(3 * MINUTE);
    await w.deliver('retry');
    await w.deliver('retry');
    expect(w.commands.size).toBe(2);
    const chunk0 = { path: '/var/www/html/env.php', index: 0 };
    expect(await w.store.claimChunk(rolloutId, chunk0)).toBe('claimed');

    // Act: the resume the sweep asks for
    w.enqueue('retry', JSON.stringify({ kind: 'resume', rolloutId }), 0);
    await w.deliver('retry');

    // Assert: the plan is done (not "busy"): its one unsent chunk queued for whoever gets it
    expect((await w.store.getRollout(rolloutId))?.queuedChunks).toBe(1);
    const queued = w.queues.retry.map((m) => JSON.parse(m.body));
    expect(queued.filter((b) => b.kind === 'send' && b.index === 0)).toHaveLength(1);
    // The holder stops; once its claim runs out the queued chunk goes out, once
    w.advance(3 * MINUTE);
    await w.drain();
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.rollout.state).toBe('Settled');
    expect(loaded?.targets.every((t) => t.status === 'Success' && t.attempt === 1)).toBe(true);
    expect(w.commands.size).toBe(3);
  });

  it('a crash right after the rollout is created still leaves a sweep that finishes it', async () => {
    const w = await newWorld({ instances: 3, maxAttempts: 2 });
    // after SendMessage, DescribeInstances, DescribeInstanceInformation, GetItem (the
    // parameter's release: is it held?), PutItem
    w.inject({ kind: 'crash', at: 5 });
    const rolloutId = await w.resync();
    expect((await w.store.getRollout(rolloutId))?.state).toBe('Creating');

    await w.drain();

    // the fan-out resumed it: every instance has its target and its file
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.rollout.state).toBe('Settled');
    expect(loaded?.targets).toHaveLength(3);
    expect(loaded?.targets.every((t) => t.status === 'Success')).toBe(true);
    expect(loaded?.rollout.counts).toMatchObject({ total: 3, success: 3, pending: 0 });
    expect(w.alertsOf(rolloutId)).toBe(0);
  });

  it('a resync that dies while writing its targets is resumed: no instance is dropped', async () => {
    // Arrange: 120 instances; the run dies at its second BatchWriteItem (25 targets written)
    const w = await newWorld({ instances: 120, maxAttempts: 3 });
    w.inject({ kind: 'die', at: 8 });
    const rolloutId = await w.resync();
    expect((await w.store.load(rolloutId))?.targets.length).toBeLessThan(120);

    // Act
    await w.drain();

    // Assert
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.targets).toHaveLength(120);
    expect(loaded?.rollout.counts).toMatchObject({ total: 120, success: 120, pending: 0 });
    expect([...w.disk.values()].every((files) => files.get('/var/www/html/env.php') === 1)).toBe(
      true,
    );
  });
});

describe('found by review: attempts are used only when really used', () => {
  it('a retry whose message was never queued (a crash after the commit) is sent again, not burned', async () => {
    // Arrange: attempt 1 fails; the instance is briefly not online for attempt 2; the retrier
    // commits the move to attempt 3 and dies before queueing it
    const w = await newWorld({ instances: 1, maxAttempts: 3 });
    const rolloutId = await w.put();
    const [[c1, id]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(c1, id, 'fetch-failed');
    await w.deliver('status');
    w.unmanaged.add(id);
    w.clock = Math.max(...w.queues.retry.map((m) => m.visibleAt));
    // retrier calls: BatchGetItem, GetItem, Query, DescribeInstances, DescribeInstanceInformation,
    // TransactWriteItems, then the SendMessageBatch of attempt 3: it dies there
    w.inject({ kind: 'die', at: 6 });
    await w.deliver('retry');
    expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({ attempt: 3 });
    // (the attempt-2 message stays, to come back stale; no message for attempt 3 exists)
    expect(w.queues.retry.map((m) => JSON.parse(m.body).attempt)).toEqual([2]);
    w.unmanaged.delete(id);

    // Act
    await w.drain();

    // Assert: attempt 3 was really sent and delivered the file
    const target = (await w.store.load(rolloutId))?.targets[0];
    expect(target).toMatchObject({ status: 'Success', attempt: 3 });
    expect(w.alertsOf(rolloutId)).toBe(0);
  });

  it('a late retry is not called lost before SSM itself would end its command', async () => {
    // Arrange: attempt 1 fails; attempt 2 is sent 400 s after it was due (a failed receive)
    const w = await newWorld({ instances: 1, maxAttempts: 2 });
    const rolloutId = await w.put();
    const [[c1, id]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(c1, id, 'fetch-failed');
    await w.deliver('status');
    w.clock = Math.max(...w.queues.retry.map((m) => m.visibleAt)) + 400_000;
    await w.deliver('retry');
    const [[c2]] = w.pendingInvocations() as [[string, string]];

    // Act: sweeps run while the command is still in flight, up to 19 minutes after its send
    const sentAt = w.clock;
    while (w.clock < sentAt + 19 * MINUTE) {
      w.advance(MINUTE);
      for (const m of w.queues.status) m.visibleAt = Math.min(m.visibleAt, w.clock);
      await w.deliver('status');
    }
    w.runInvocation(c2, id, 'updated');
    await w.drain();

    // Assert: its real result stands
    expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({
      status: 'Success',
      attempt: 2,
    });
    expect(w.alertsOf(rolloutId)).toBe(0);
  });

  it('a "never sent" move does not apply once a sender holds a claim or recorded a command', async () => {
    const w = await newWorld({ instances: 1, maxAttempts: 3 });
    const rolloutId = await w.put({ deliver: false });
    await w.store.create(
      {
        rolloutId,
        trigger: { type: 'event', eventId: 'e' },
        environment: 'prod',
        parameters: ['/prod/env.php'],
        files: [{ parameter: '/prod/env.php', path: '/var/www/html/env.php' }],
      },
      [
        {
          instanceId: w.instances[0]!,
          parameter: '/prod/env.php',
          path: '/var/www/html/env.php',
          status: 'Pending',
        },
      ],
    );
    const ref = {
      instanceId: w.instances[0]!,
      parameter: '/prod/env.php',
      path: '/var/www/html/env.php',
    };
    expect(await w.store.claimAttempt(rolloutId, ref, 1)).toBe(true);

    const result = await w.store.commit(rolloutId, [
      {
        ...ref,
        fromAttempt: 1,
        unsent: true,
        to: 'Retry',
        retryAt: new Date(w.clock).toISOString(),
      },
    ]);

    expect(result.stale).toHaveLength(1);
    expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({ attempt: 1 });
  });

  it("a late event of an older attempt in the same batch does not hide the current attempt's result", async () => {
    // Arrange: attempt 1 fails, its event arrives twice; the second copy comes late, in the
    // same batch as attempt 2's success
    const w = await newWorld({ instances: 1, maxAttempts: 3 });
    const rolloutId = await w.put();
    const [[c1, id]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(c1, id, 'fetch-failed', 'twice');
    const late = w.queues.status.filter((m) => !JSON.parse(m.body).kind)[1]!;
    w.queues.status = w.queues.status.filter((m) => m !== late);
    await w.deliver('status');
    w.clock = Math.max(...w.queues.retry.map((m) => m.visibleAt));
    await w.deliver('retry');
    const [[c2]] = w.pendingInvocations() as [[string, string]];
    w.runInvocation(c2, id, 'updated');
    w.queues.status.unshift(late);

    // Act: one batch with the late attempt-1 event first, then attempt 2's
    await w.deliver('status', 10);

    // Assert
    expect((await w.store.load(rolloutId))?.targets[0]).toMatchObject({
      status: 'Success',
      attempt: 2,
    });
  });
});

describe('case 8: a scale-out of 26 or more instances', () => {
  it('completes every lifecycle hook: each instance finds its own bootstrap target by its id', async () => {
    // Arrange: 30 instances launched in the same minute, each with its own bootstrap rollout
    const w = await newWorld({ instances: 30, maxAttempts: 2 });
    const deps = w.bootstrapDeps();
    for (const [i, id] of w.instances.entries()) {
      w.launchTime.set(id, new Date(w.clock - 60_000 + i * 1000));
    }
    const lifecycle = { groupName: 'web', hookName: 'secrets-fanout', token: 'tok' };
    const check = (instanceId: string) =>
      firstCheck(deps, instanceId, w.launchTime.get(instanceId) as Date, lifecycle);
    for (const id of w.instances) await checkBootstrap(deps, check(id));
    for (const id of w.instances) {
      const rolloutId = newRolloutId(w.launchTime.get(id) as Date, `bootstrap:${id}`);
      w.rolloutIds.push(rolloutId);
    }
    await w.drain();

    // Act: the first instance's next check, after 29 later bootstrap rollouts of the parameter
    const result = await checkBootstrap(deps, { ...check(w.instances[0] as string), checks: 1 });

    // Assert
    expect(result).toBe('continued');
    expect(w.lifecycleResults.get(w.instances[0] as string)).toBe('CONTINUE');
  });

  it('gives up within its budget (and alerts once) when its files were never sent', async () => {
    const w = await newWorld({ instances: 1, maxAttempts: 2 });
    const deps = w.bootstrapDeps();
    const id = w.instances[0] as string;
    w.launchTime.set(id, new Date(w.clock));
    const lifecycle = { groupName: 'web', hookName: 'secrets-fanout', token: 'tok' };
    const first = firstCheck(deps, id, new Date(w.clock), lifecycle);

    // Act: the instance is online, but every check's send dies before the rollout exists
    w.advance((w.config.bootstrap.timeoutSeconds + 1) * 1000);
    const result = await checkBootstrap(deps, { ...first, checks: 5 });

    // Assert
    expect(result).toBe('gave-up');
    expect(w.lifecycleResults.get(id)).toBe('ABANDON');
    // its one alert is recorded as sent: no later check claims it again
    const launch = (w.launchTime.get(id) as Date).toISOString();
    expect(await w.store.claimLaunchAlert(id, launch)).toBe(false);
  });
});

describe('case 10: a scale-in between resolution and retry', () => {
  it('records the terminated instance as Unreachable (InstanceTerminated), counted, never paged', async () => {
    // Arrange: attempt 1 fails retryably; the instance is terminated before the retry
    const w = await newWorld({ instances: 2, maxAttempts: 3 });
    const rolloutId = await w.put();
    const [[commandId, gone], [, stays]] = w.pendingInvocations() as [
      [string, string],
      [string, string],
    ];
    w.runInvocation(commandId, gone, 'fetch-failed');
    w.runInvocation(commandId, stays, 'updated');
    await w.deliver('status');
    w.terminated.add(gone);

    // Act
    await w.drain();

    // Assert
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.targets.find((t) => t.instanceId === gone)).toMatchObject({
      status: 'Unreachable',
      reason: 'InstanceTerminated',
    });
    expect(loaded?.rollout.counts).toMatchObject({ unreachable: 1, terminated: 1, success: 1 });
    expect(loaded?.rollout.alert).toBe('None');
    expect(w.alertsOf(rolloutId)).toBe(0);
  });
});

describe('retries go out in chunks (one SendCommand per ≤50 instances)', () => {
  it('a throttled 50-instance SendCommand is retried as one chunk, not 50 single retries', async () => {
    // Arrange: the first SendCommand of the rollout is throttled past the SDK's retries
    const w = await newWorld({ instances: 50, maxAttempts: 3 });
    w.inject({ kind: 'send-throttled' });

    // Act
    const rolloutId = await w.put();

    // Assert: the chunk is queued again whole, using no attempt; then one SendCommand for it
    expect(w.queues.retry).toHaveLength(1);
    const again = JSON.parse(w.queues.retry[0]!.body);
    expect(again).toMatchObject({ kind: 'send', requeues: 1 });
    expect(again.instanceIds).toHaveLength(50);
    await w.drain();
    expect(w.commands.size).toBe(1);
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.targets.every((t) => t.status === 'Success' && t.attempt === 1)).toBe(true);
  });

  it('a batch of failures of one command is retried as one chunk per file', async () => {
    const w = await newWorld({ instances: 10, twoPaths: true, maxAttempts: 3 });
    const rolloutId = await w.put();
    for (const [commandId, instanceId] of w.pendingInvocations()) {
      w.runInvocation(commandId, instanceId, 'fetch-failed');
    }

    await w.deliver('status', 20);

    const messages = w.queues.retry.map((m) => JSON.parse(m.body));
    expect(messages).toHaveLength(2);
    expect(messages.map((m) => m.instanceIds.length)).toEqual([10, 10]);
    expect(new Set(messages.map((m) => m.path))).toEqual(
      new Set(['/var/www/html/env.php', '/opt/app/env.php']),
    );
    await w.drain();
    expect(w.commands.size).toBe(4); // 2 first attempts + 2 chunked retries
    expect((await w.store.getRollout(rolloutId))?.counts).toMatchObject({
      success: 20,
      retries: 20,
    });
  });

  it('sends the rest of a chunk when another run holds one target, and brings that one back alone', async () => {
    // Arrange: 5 instances fail attempt 1; one target's attempt 2 is claimed by another run
    const w = await newWorld({ instances: 5, maxAttempts: 3 });
    const rolloutId = await w.put();
    for (const [commandId, instanceId] of w.pendingInvocations()) {
      w.runInvocation(commandId, instanceId, 'fetch-failed');
    }
    await w.deliver('status', 10);
    const held = w.instances[0] as string;
    const ref = { instanceId: held, parameter: '/prod/env.php', path: '/var/www/html/env.php' };
    expect(await w.store.claimAttempt(rolloutId, ref, 2)).toBe(true);

    // Act
    w.clock = Math.max(...w.queues.retry.map((m) => m.visibleAt));
    await w.deliver('retry');

    // Assert: one SendCommand for the 4 others; the held one comes back in a message of its own
    const retries = [...w.commands.values()].filter((c) => c.comment.endsWith('attempt 2'));
    expect(retries).toHaveLength(1);
    expect([...retries[0]!.invocations.keys()]).toHaveLength(4);
    expect(retries[0]!.invocations.has(held)).toBe(false);
    expect(w.queues.retry.map((m) => JSON.parse(m.body).instanceIds)).toEqual([[held]]);
  });
});
