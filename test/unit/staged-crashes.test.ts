import { describe, expect, it } from 'vitest';
import type { World, WorldOptions } from '../support/ledger-world.ts';
import { ledgerWorlds } from '../support/world-tests.ts';

/**
 * Staged rollouts against the real store on dynalite, Run Command, EC2, SQS and CloudWatch
 * faked in memory, time on a virtual clock: the stage moves, and a function dying at every one
 * of the AWS calls of the step that makes a move (the next stage's start, a halt), after which
 * redelivery and the sweep must still finish the job exactly.
 */

const world = ledgerWorlds('staged');

const BAKE_SECONDS = 60;

async function newWorld(options: Partial<Omit<WorldOptions, 'endpoint' | 'tableName'>> = {}) {
  const w = await world({
    instances: 4,
    maxAttempts: 1,
    stages: { canary: 1, waves: [], bakeSeconds: BAKE_SECONDS, alarms: ['api-5xx'] },
    ...options,
  });
  w.alarms.set('api-5xx', 'OK');
  return w;
}

/** Each command's instances, in the order they were sent, with the version they name. */
function sends(w: World): Array<[string, string[]]> {
  return [...w.commands.values()].map((c) => [c.parameter, [...c.invocations.keys()]]);
}

/** Runs the canary's command and the looks that follow until the canary is baking. */
async function untilBaking(w: World, rolloutId: string) {
  for (let i = 0; i < 20; i++) {
    const rollout = await w.store.getRollout(rolloutId);
    if (rollout?.stages?.phase === 'Baking') return;
    for (const [c, id] of w.pendingInvocations()) w.runInvocation(c, id, 'updated');
    if (w.visible('status').length > 0) await w.deliver('status');
    else if (w.visible('retry').length > 0) await w.deliver('retry');
  }
  throw new Error('the canary never baked');
}

describe('staged rollouts on the ledger', () => {
  it('sends the canary, bakes, then the rest, all at the pinned version', async () => {
    const w = await newWorld();
    await w.put(); // v2 (v1 is the world's first version)
    const rolloutId = w.rolloutIds[0] ?? '';
    await w.drain();

    const loaded = await w.store.load(rolloutId);
    expect(loaded?.rollout.state).toBe('Settled');
    expect(loaded?.rollout.stages?.phase).toBe('Done');
    expect(sends(w)).toEqual([
      ['/prod/env.php:2', [w.instances[0]]],
      ['/prod/env.php:2', w.instances.slice(1)],
    ]);
    expect(w.alertsOf(rolloutId)).toBe(0);
    expect((await w.store.getRelease('prod', '/prod/env.php')).completeVersion).toBe(2);
  });

  it('starts the next stage whichever call of the starting step its function dies at', async () => {
    for (let at = 0; ; at++) {
      const w = await newWorld();
      await w.put();
      const rolloutId = w.rolloutIds[0] ?? '';
      await untilBaking(w, rolloutId);
      w.advance(BAKE_SECONDS * 1000);
      expect(w.visible('retry').map((m) => JSON.parse(m.body).kind)).toEqual(['stage']);
      w.inject({ kind: 'die', at });
      await w.deliver('retry');
      const died = w.trace.at(-1)?.includes('✗') === true;

      await w.drain();
      const loaded = await w.store.load(rolloutId);
      expect(loaded?.rollout.state, `died at call ${at}`).toBe('Settled');
      expect(loaded?.rollout.stages?.phase).toBe('Done');
      expect(loaded?.targets.every((t) => t.status === 'Success' && t.versionWritten === 2)).toBe(
        true,
      );
      // Each instance got a command of the rollout, none skipped. A death between a SendCommand
      // and its record sends that chunk once more (SendCommand takes no idempotency token:
      // API_SendCommand.html), harmless at a pinned version; at most once more.
      const sent = sends(w).flatMap(([, ids]) => ids);
      expect(new Set(sent)).toEqual(new Set(w.instances));
      for (const id of w.instances) {
        expect(sent.filter((s) => s === id).length).toBeLessThanOrEqual(died ? 2 : 1);
      }
      expect(w.alertsOf(rolloutId)).toBe(0);
      if (!died) break;
    }
  });

  it('halts, pins, rolls back and alerts once whichever call of the halting step its function dies at', async () => {
    for (let at = 0; ; at++) {
      const w = await newWorld();
      await w.put(); // v2: complete everywhere
      await w.drain();
      await w.put(); // v3: the canary fails it
      const rolloutId = w.rolloutIds[1] ?? '';
      for (const [c, id] of w.pendingInvocations()) w.runInvocation(c, id, 'content-invalid');
      await w.deliver('status');
      expect(w.visible('retry').map((m) => JSON.parse(m.body).kind)).toEqual(['stage']);
      w.inject({ kind: 'die', at });
      await w.deliver('retry');
      const died = w.trace.at(-1)?.includes('✗') === true;

      await w.drain();
      const rollout = await w.store.getRollout(rolloutId);
      expect(rollout?.stages?.phase, `died at call ${at}`).toBe('Halted');
      expect(rollout?.alert).toBe('Sent');
      expect(w.alertsOf(rolloutId)).toBe(1);
      const release = await w.store.getRelease('prod', '/prod/env.php');
      expect(release.hold).toEqual({ rolloutId, version: 3, state: 'Halted', pinned: 2 });
      // The canary was rolled back to v2 by its own rollout; the others never heard of v3.
      const rollbackId = rollout?.stages?.halt?.rollbackRolloutId ?? '';
      const rollback = await w.store.load(rollbackId);
      expect(rollback?.rollout.state).toBe('Settled');
      expect(rollback?.targets.map((t) => [t.instanceId, t.versionWritten])).toEqual([
        [w.instances[0], 2],
      ]);
      const v3 = sends(w).filter(([parameter]) => parameter === '/prod/env.php:3');
      expect(v3.flatMap(([, ids]) => ids)).toEqual([w.instances[0]]);
      for (const id of w.instances) expect(w.disk.get(id)?.get('/var/www/html/env.php')).toBe(2);
      if (!died) break;
    }
  });
});

/** v2 complete everywhere, then v3 halted at its failing canary, its rollback settled. */
async function haltedAtCanary(w: World): Promise<string> {
  await w.put(); // v2
  await w.drain();
  await w.put(); // v3
  const rolloutId = w.rolloutIds[1] ?? '';
  await w.drain((_, instanceId) => (instanceId === w.instances[0] ? 'content-invalid' : 'updated'));
  expect((await w.store.getRollout(rolloutId))?.stages?.phase).toBe('Halted');
  return rolloutId;
}

describe('decisions on a halted rollout', () => {
  it('a resume is finished whichever call its function dies at: every instance ends at v3', async () => {
    for (let at = 0; ; at++) {
      const w = await newWorld();
      const rolloutId = await haltedAtCanary(w);
      w.inject({ kind: 'die', at });
      const answer = await w.decide(rolloutId, 'resume');
      const died = answer === undefined;
      // What was decided before the death is finished by the sweep; a decision that never
      // got written is simply asked again (the caller saw an error).
      await w.drain();
      if ((await w.store.getRollout(rolloutId))?.stages?.phase === 'Halted') {
        expect((await w.decide(rolloutId, 'resume'))?.status).toBe(202);
      }
      if (!died) expect(answer?.status).toBe(202);

      await w.drain();
      const rollout = await w.store.getRollout(rolloutId);
      expect(rollout?.state, `died at call ${at}`).toBe('Settled');
      expect(rollout?.stages?.phase).toBe('Done');
      expect(rollout?.stages?.resumeOwed).toBeUndefined();
      for (const id of w.instances) expect(w.disk.get(id)?.get('/var/www/html/env.php')).toBe(3);
      expect((await w.store.getRelease('prod', '/prod/env.php')).completeVersion).toBe(3);
      // The pin is gone: a new repair writes the latest again.
      expect(w.alertsOf(rolloutId)).toBe(1);
      if (!died) break;
    }
  });

  it('an abandon is finished whichever call its function dies at: the rest never sent', async () => {
    for (let at = 0; ; at++) {
      const w = await newWorld();
      const rolloutId = await haltedAtCanary(w);
      const commands = w.commands.size;
      w.inject({ kind: 'die', at });
      const answer = await w.decide(rolloutId, 'abandon');
      const died = answer === undefined;
      // What was decided before the death is finished by the sweep; a decision that never
      // got written is simply asked again (the caller saw an error).
      await w.drain();
      if ((await w.store.getRollout(rolloutId))?.stages?.phase === 'Halted') {
        expect((await w.decide(rolloutId, 'abandon'))?.status).toBe(200);
      }

      await w.drain();
      const loaded = await w.store.load(rolloutId);
      expect(loaded?.rollout.state, `died at call ${at}`).toBe('Settled');
      expect(loaded?.rollout.stages?.phase).toBe('Abandoned');
      expect(loaded?.rollout.counts).toMatchObject({ failed: 1, superseded: 3, pending: 0 });
      expect(w.commands.size).toBe(commands);
      expect((await w.store.getRelease('prod', '/prod/env.php')).hold).toMatchObject({
        rolloutId,
        state: 'Abandoned',
        pinned: 2,
      });
      expect(w.alertsOf(rolloutId)).toBe(1);
      if (!died) break;
    }
  });

  it('a resume waits for the rollback to settle', async () => {
    const w = await newWorld();
    await w.put(); // v2
    await w.drain();
    await w.put(); // v3: its canary fails; the rollback's command is left running
    const rolloutId = w.rolloutIds[1] ?? '';
    for (let i = 0; i < 30; i++) {
      const rollout = await w.store.getRollout(rolloutId);
      if (rollout?.stages?.phase === 'Halted') break;
      for (const [c, id] of w.pendingInvocations()) {
        if (w.commands.get(c)?.parameter.endsWith(':3')) w.runInvocation(c, id, 'content-invalid');
      }
      if (w.visible('status').length > 0) await w.deliver('status');
      else if (w.visible('retry').length > 0) await w.deliver('retry');
    }
    const answer = await w.decide(rolloutId, 'resume');
    expect(answer?.status).toBe(409);
    expect(answer?.body.error).toMatch(/rollback .* is not over yet/);
    expect((await w.store.getRollout(rolloutId))?.stages?.phase).toBe('Halted');
  });
});

describe('a newer change while an older one stages', () => {
  it('ends the older one where it stands: no halt, no pin, no rollback of the newer value', async () => {
    const w = await newWorld();
    await w.put(); // v2
    await w.drain();
    await w.put(); // v3: its canary command is out
    const v3 = w.rolloutIds[1] ?? '';
    const canary = w.pendingInvocations();
    await w.put(); // v4 before v3's canary reports
    const v4 = w.rolloutIds[2] ?? '';
    // v3's canary fails after all: it must not halt, pin or roll back anything
    for (const [c, id] of canary) w.runInvocation(c, id, 'content-invalid');
    await w.drain();

    const old = await w.store.load(v3);
    expect(old?.rollout.state).toBe('Settled');
    expect(old?.rollout.stages?.phase).toBe('Abandoned');
    expect(old?.rollout.stages?.halt).toBeUndefined();
    expect((await w.store.getRollout(v4))?.stages?.phase).toBe('Done');
    for (const id of w.instances) expect(w.disk.get(id)?.get('/var/www/html/env.php')).toBe(4);
    const release = await w.store.getRelease('prod', '/prod/env.php');
    expect(release.completeVersion).toBe(4);
    expect(w.alertsOf(v3)).toBe(0);
  });

  it('an older change delivered after a newer one is staged sends nothing', async () => {
    const w = await newWorld();
    await w.put({ deliver: false }); // v2: its event comes late
    await w.put(); // v4? no: v3, staged now
    await w.drain();
    const sent = w.commands.size;
    await w.propagate(w.rolloutIds[0] ?? '', 2);
    await w.drain();
    expect(w.commands.size).toBe(sent);
    expect(await w.store.getRollout(w.rolloutIds[0] ?? '')).toBeUndefined();
  });

  it('drift repair leaves a parameter being staged to its rollout', async () => {
    const w = await newWorld();
    await w.put(); // v2
    await w.drain();
    await w.put(); // v3 staging: only its canary has it
    await untilBaking(w, w.rolloutIds[1] ?? '');
    const sent = w.commands.size;
    await w.drift();
    expect(w.commands.size).toBe(sent);
    expect(w.trace.at(-1)).toMatch(/ drift$/);
  });
});

describe('a staged rollout halted after reaching many instances', () => {
  it.each([
    // 250 ids: an instance-id filter of 250 values is refused by EC2 (FilterLimitExceeded,
    // more than 200 filter values in one call), so they are named 198 a call.
    [250, 'its ids are named to EC2 198 a call at most'],
    // 1,010 ids: more than the rollout item keeps itself, so its rollback's restriction is kept
    // in items of its own (a rollback of about 19,000 would not fit DynamoDB's 400 KB item).
    [1010, "its rollback's instance ids are kept in items of their own"],
  ])(
    'rolls back every one of %i instances it reached, and a resume brings them all to the new version: %s',
    async (reached) => {
      const w = await newWorld({
        instances: reached + 10,
        stages: { canary: reached, waves: [], bakeSeconds: BAKE_SECONDS, alarms: ['api-5xx'] },
      });
      w.alarms.set('api-5xx', 'OK');
      await w.put(); // v2: complete everywhere
      await w.drain();
      await w.put(); // v3: one canary instance fails it
      const rolloutId = w.rolloutIds[1] ?? '';
      // The canary goes out in chunks; the last canary instance fails, so all were reached.
      const inCanary = [...w.instances].sort().slice(0, reached);
      const failing = inCanary.at(-1);
      await w.drain((_, instanceId) => (instanceId === failing ? 'content-invalid' : 'updated'));

      const rollout = await w.store.getRollout(rolloutId);
      expect(rollout?.stages?.phase).toBe('Halted');
      const rollback = await w.store.load(rollout?.stages?.halt?.rollbackRolloutId ?? '');
      expect(rollback?.rollout.state).toBe('Settled');
      expect(rollback?.rollout.instanceIds).toEqual(inCanary);
      expect(rollback?.targets).toHaveLength(reached);
      for (const id of w.instances) expect(w.disk.get(id)?.get('/var/www/html/env.php')).toBe(2);
      expect(w.alertsOf(rolloutId)).toBe(1);

      // The resume sends v3 again to the instances the rollback took back (read from its items).
      expect((await w.decide(rolloutId, 'resume'))?.status).toBe(202);
      await w.drain();
      expect((await w.store.getRollout(rolloutId))?.stages?.phase).toBe('Done');
      for (const id of w.instances) expect(w.disk.get(id)?.get('/var/www/html/env.php')).toBe(3);
    },
  );
});
