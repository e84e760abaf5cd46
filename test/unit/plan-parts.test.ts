import { describe, expect, it } from 'vitest';
import type { World, WorldOptions } from '../support/ledger-world.ts';
import { ledgerWorlds } from '../support/world-tests.ts';

/**
 * A large rollout planned in parts (shared/send/parts.ts), against the real store on dynalite,
 * Run Command, EC2 and SQS faked in memory, time on a virtual clock: the planner records only
 * the first part, the send workers the others; and a function dying at every one of the AWS
 * calls of the planner, or of a part's worker, after which redelivery and the sweep must still
 * finish the job exactly: every instance gets its file once (at most once more for a death
 * between a SendCommand and its record), nothing is rewritten, the rollout settles.
 */

const world = ledgerWorlds('parts');

// 250 instances in parts of 100 targets: parts of 100, 100 and 50 (2, 2 and 1 chunks).
const INSTANCES = 250;
const PART = 100;

function newWorld(options: Partial<Omit<WorldOptions, 'endpoint' | 'tableName'>> = {}) {
  return world({ instances: INSTANCES, maxAttempts: 3, planPartTargets: PART, ...options });
}

/** Every instance a command was sent to, once per command. */
const sentTo = (w: World) => [...w.commands.values()].flatMap((c) => [...c.invocations.keys()]);

/** The rollout settled, every instance has its file and got it once (twice if `died`). */
async function expectDone(w: World, rolloutId: string, died: boolean, label: string) {
  const loaded = await w.store.load(rolloutId);
  expect(loaded?.rollout.state, label).toBe('Settled');
  expect(loaded?.targets, label).toHaveLength(INSTANCES);
  expect(loaded?.rollout.counts, label).toMatchObject({
    total: INSTANCES,
    success: INSTANCES,
    pending: 0,
  });
  expect(
    loaded?.targets.every((t) => t.status === 'Success' && t.attempt === 1),
    label,
  ).toBe(true);
  for (const files of w.disk.values()) expect(files.get('/var/www/html/env.php'), label).toBe(1);
  const sent = sentTo(w);
  expect(new Set(sent), label).toEqual(new Set(w.instances));
  // A death between a SendCommand and its record sends that chunk once more (SendCommand
  // takes no idempotency token: API_SendCommand.html): at most once more.
  for (const id of w.instances) {
    expect(sent.filter((s) => s === id).length, label).toBeLessThanOrEqual(died ? 2 : 1);
  }
  expect(w.alertsOf(rolloutId), label).toBe(0);
}

describe('a rollout larger than planPartTargets is planned in parts', () => {
  it('the planner records only the first part; the send workers record the others', async () => {
    const w = await newWorld();
    const rolloutId = await w.resync();

    // The planner: every count, the first part's 100 targets, two part messages queued.
    const planned = await w.store.load(rolloutId);
    expect(planned?.rollout.counts).toMatchObject({ total: INSTANCES, pending: INSTANCES });
    expect(planned?.rollout.parts).toMatchObject({ count: 3, chunks: 5 });
    expect(planned?.targets).toHaveLength(PART);
    expect(planned?.rollout.queuedChunks).toBeUndefined();
    const parts = w.queues.retry.map((m) => JSON.parse(m.body)).filter((b) => b.kind === 'part');
    expect(parts.map((b) => b.part)).toEqual([1, 2]);
    // Its first chunk due now went out from the planner itself.
    expect(w.commands.size).toBeGreaterThanOrEqual(1);

    await w.drain();
    await expectDone(w, rolloutId, false, 'clean');
    expect(w.commands.size).toBe(5);
    const rollout = await w.store.getRollout(rolloutId);
    expect(rollout?.queuedChunks).toBe(5);
    expect(rollout?.partsQueued).toBe(3);
  });

  it('a part delivered twice records its targets once and sends each chunk once', async () => {
    const w = await newWorld();
    const rolloutId = await w.resync();
    const message = w.queues.retry.find((m) => JSON.parse(m.body).kind === 'part');
    if (message === undefined) throw new Error('no part message');
    w.enqueue('retry', message.body, 0);
    await w.drain();
    await expectDone(w, rolloutId, false, 'redelivered');
    expect(w.commands.size).toBe(5);
  });

  it('finishes exactly whichever call of the planner its function dies at', async () => {
    for (let at = 0; ; at++) {
      const w = await newWorld();
      w.inject({ kind: 'die', at });
      // A resync's plan is not redelivered: the sweep alone must finish it.
      const rolloutId = await w.resync();
      const died = w.trace.at(-1)?.includes('✗') === true;
      const recorded = (await w.store.getRollout(rolloutId)) !== undefined;
      await w.drain(undefined, 2000);
      if (!recorded) {
        // Died before the rollout was recorded (the caller got the error): nothing happens.
        expect(await w.store.getRollout(rolloutId), `died at ${at}`).toBeUndefined();
        expect(w.commands.size, `died at ${at}`).toBe(0);
        continue;
      }
      await expectDone(w, rolloutId, died, `planner died at call ${at}`);
      if (!died) break;
    }
  });

  it('finishes exactly whichever call of a part its worker dies at', async () => {
    for (let at = 0; ; at++) {
      const w = await newWorld();
      const rolloutId = await w.resync();
      // Part 1's message is the first visible one.
      expect(JSON.parse(w.visible('retry')[0]?.body ?? '{}').kind).toBe('part');
      w.inject({ kind: 'die', at });
      await w.deliver('retry');
      const died = w.trace.at(-1)?.includes('✗') === true;
      await w.drain(undefined, 2000);
      await expectDone(w, rolloutId, died, `part worker died at call ${at}`);
      if (!died) break;
    }
  });

  it('a parameter change in parts whose event is redelivered after the planner died', async () => {
    for (const at of [3, 8, 14]) {
      const w = await newWorld();
      w.inject({ kind: 'die', at });
      const rolloutId = await w.put({ deliver: true });
      expect(w.trace.at(-1)).toContain('✗');
      // EventBridge retries the event (a new version 2 is what every file gets).
      w.advance(3 * 60_000);
      await w.propagate(rolloutId, 2);
      await w.drain(undefined, 2000);
      const loaded = await w.store.load(rolloutId);
      expect(loaded?.rollout.state, `died at ${at}`).toBe('Settled');
      expect(loaded?.rollout.counts).toMatchObject({ total: INSTANCES, success: INSTANCES });
      for (const files of w.disk.values()) expect(files.get('/var/www/html/env.php')).toBe(2);
    }
  });

  it('unreachable instances and two files: parts of whole chunks, then parts of unreachables', async () => {
    const w = await newWorld({ twoPaths: true, unmanaged: 120, planPartTargets: 100 });
    const rolloutId = await w.resync();
    const planned = await w.store.getRollout(rolloutId);
    // 130 reachable × 2 files = 6 chunks (50, 50, 30 per file) in parts of ≥100 targets: 3
    // parts; 120 unreachable × 2 files = 240 unreachable targets in parts of 100: 3 parts.
    expect(planned?.parts).toMatchObject({ count: 6, chunks: 6 });
    expect(planned?.counts).toMatchObject({ total: 500, unreachable: 240, pending: 260 });
    await w.drain();
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.rollout.state).toBe('Settled');
    expect(loaded?.targets).toHaveLength(500);
    expect(loaded?.rollout.counts).toMatchObject({ success: 260, unreachable: 240, pending: 0 });
    expect(w.commands.size).toBe(6);
  });
});

/** Takes a part's message off the send queue (its worker failed five times: the DLQ). */
function losePart(w: World, part: number) {
  const message = w.queues.retry.find((m) => {
    const body = JSON.parse(m.body);
    return body.kind === 'part' && body.part === part;
  });
  if (message === undefined) throw new Error(`no message for part ${part}`);
  w.queues.retry.splice(w.queues.retry.indexOf(message), 1);
}

// Found by an independent review of the plan in parts, each reproduced first (it failed before
// its fix).
describe('review: a part queued late or lost', () => {
  it('a part resumed by the sweep takes new turns and keeps the lease over them: no instance gets two first attempts', async () => {
    // 250 instances: part 0 = chunks 0-1 (the planner's), part 1 = chunks 2-4.
    const w = await newWorld({ planPartTargets: 200 });
    const rolloutId = await w.resync();
    const created = Date.parse((await w.store.getRollout(rolloutId))?.createdAt ?? '');
    losePart(w, 1);
    // Everything else runs until just before the first sweep (createdAt + 1,440 s); the first
    // sweep finds the plan stuck and asks for a resume, which queues part 1 again.
    await w.runUntil(created + 1_439_000);
    expect((await w.store.getRollout(rolloutId))?.queuedChunks).toBeUndefined();
    w.clock = created + 1_441_000;
    await w.deliver('status'); // the sweep: resume requested, next look in 60 s
    await w.deliver('retry'); // the resume: part 1 queued again
    await w.deliver('retry'); // part 1: recorded, its chunks queued at new turns
    const rollout = await w.store.getRollout(rolloutId);
    expect(rollout?.queuedChunks).toBe(5);
    // The lease covers the chunks just queued (the sweep relies on it: policy.ts).
    expect(Date.parse(rollout?.sendingUntil ?? '')).toBeGreaterThan(w.clock);
    const queued = w.queues.retry
      .map((m) => JSON.parse(m.body))
      .filter((b) => b.kind === 'send')
      .map((b) => Date.parse(b.notBefore));
    expect(queued.length).toBeGreaterThan(0);
    expect(Date.parse(rollout?.sendingUntil ?? '')).toBeGreaterThan(Math.max(...queued));
    // New turns: spaced by the pace (50 instances at 40 a second), not all at once.
    const sorted = [...queued].sort((a, b) => a - b);
    for (let i = 1; i < sorted.length; i++) {
      expect((sorted[i] as number) - (sorted[i - 1] as number)).toBeGreaterThanOrEqual(1250);
    }
    // The sweep looks again before the late chunks are delivered (the send queue is busy): it
    // sends nothing twice.
    w.advance(61_000);
    expect(w.visible('status').some((m) => JSON.parse(m.body).kind === 'sweep')).toBe(true);
    await w.deliver('status');
    while (w.visible('retry').length > 0) await w.deliver('retry');
    await w.drain(undefined, 2000);
    await expectDone(w, rolloutId, false, 'late part');
  });

  it('a lost part of unreachable targets is written before the rollout settles and alerts', async () => {
    // 130 reachable × 2 files and 120 unreachable × 2 files; the last part: unreachable only.
    const w = await newWorld({ twoPaths: true, unmanaged: 120, planPartTargets: 100 });
    const listed = listedInAlert(w);
    const rolloutId = await w.resync();
    const parts = w.queues.retry.map((m) => JSON.parse(m.body)).filter((b) => b.kind === 'part');
    const last = Math.max(...parts.map((b) => b.part));
    losePart(w, last);
    await w.drain(undefined, 3000);
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.rollout.state).toBe('Settled');
    expect(loaded?.targets).toHaveLength(500);
    expect(loaded?.rollout.counts).toMatchObject({ success: 260, unreachable: 240, pending: 0 });
    expect(listed.unreachable).toEqual([240]);
  });

  it('a part of unreachable targets delivered late (one failed receive) is in the one alert', async () => {
    const w = await newWorld({ twoPaths: true, unmanaged: 120, planPartTargets: 100 });
    const listed = listedInAlert(w);
    const rolloutId = await w.resync();
    const lastPart = w.queues.retry.filter((m) => JSON.parse(m.body).kind === 'part').at(-1);
    if (lastPart === undefined) throw new Error('no part message');
    lastPart.visibleAt = w.clock + 360_000; // SQS shows it again after its visibility timeout
    await w.drain(undefined, 3000);
    expect(w.alertsOf(rolloutId)).toBe(1);
    expect(listed.unreachable).toEqual([240]);
  });
});

describe('review: limits and takeovers', () => {
  it('plans a rollout with thousands of unreachable targets (each part item under 400 KB)', async () => {
    const w = await newWorld({
      instances: 2001,
      unmanaged: 1990,
      twoPaths: true,
      planPartTargets: 4000,
    });
    const rolloutId = await w.resync();
    expect(w.trace.filter((line) => line.includes('✗'))).toEqual([]);
    expect((await w.store.getRollout(rolloutId))?.state).toBe('InProgress');
    await w.drain(undefined, 3000);
    const loaded = await w.store.load(rolloutId);
    expect(loaded?.rollout.counts).toMatchObject({ total: 4002, unreachable: 3980, success: 22 });
    expect(loaded?.targets).toHaveLength(4002);
  });

  it('a takeover keeps its creator’s plan in one piece when the fleet grew past planPartTargets', async () => {
    const { countTargets } = await import('../../shared/rollout/model.ts');
    let tookOver = 0;
    for (let at = 0; at < 16; at++) {
      // 30 instances, one file: 30 targets, not more than planPartTargets (30): one piece.
      const w = await newWorld({ instances: 30, planPartTargets: 30 });
      w.inject({ kind: 'die', at });
      const rolloutId = await w.put({ deliver: true });
      const before = await w.store.load(rolloutId);
      if (before?.rollout.state !== 'Creating' || before.targets.length === 0) continue;
      tookOver += 1;
      // Before the event comes back: one instance with a target is terminated, two launched.
      w.terminated.add(before.targets[0]?.instanceId ?? '');
      for (const n of [31, 32]) {
        const id = `i-${'0'.repeat(9)}${String(n).padStart(8, '0')}`;
        w.instances.push(id);
        w.disk.set(id, new Map());
      }
      w.advance(3 * 60_000);
      await w.propagate(rolloutId, 2); // 31 instances now: more than 30
      await w.drain(undefined, 3000);
      const after = await w.store.load(rolloutId);
      expect(after?.rollout.state, `died at ${at}`).toBe('Settled');
      expect(after?.rollout.parts, `died at ${at}`).toBeUndefined();
      const { retries: _a, ...counted } = countTargets(after?.targets ?? []);
      const { retries: _b, ...stored } = after?.rollout.counts ?? ({} as never);
      expect(stored, `died at ${at}: counts match the targets`).toEqual(counted);
    }
    expect(tookOver).toBeGreaterThan(0);
  });
});

/** Counts the unreachable targets each alert of the world lists (what the notifier is given). */
function listedInAlert(w: World): { unreachable: number[] } {
  const listed = { unreachable: [] as number[] };
  const deps = (w.ledger as unknown as { deps: { notify: (...a: unknown[]) => Promise<void> } })
    .deps;
  const notify = deps.notify;
  deps.notify = async (rollout, targets) => {
    listed.unreachable.push(
      (targets as Array<{ status: string }>).filter((t) => t.status === 'Unreachable').length,
    );
    return notify(rollout, targets);
  };
  return listed;
}
