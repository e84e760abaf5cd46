import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  countTargets,
  needsAlert,
  settleAlertOwed,
  TERMINATED,
} from '../../shared/rollout/model.ts';
import { createRolloutsTable, resetPace, startDynalite } from './dynalite.ts';
import { type Outcome, World } from './ledger-world.ts';

/**
 * A model-based test of the rollout ledger: random interleavings of everything that can happen
 * to rollouts of one parameter — puts (two in the same second, events delivered late or twice),
 * resyncs, status events (lost, duplicated, reordered, late, from older attempts), concurrent
 * track batches, retries, sweeps, the clock jumping, crashes between any two AWS calls, lost
 * replies, and failed alert publishes — run against the real ledger, store (dynalite), tracker,
 * retrier, sweeper and fan-out (shared/…), with Run Command, EC2 and SQS faked in memory.
 * Every scenario is then drained (every message delivered, every invocation finished, every
 * sweep run) and the ledger's promises are checked.
 *
 * Seeded, so CI runs the same scenarios every time; FC_SEED / FC_RUNS explore others. A failure
 * prints the shrunk scenario: its setup, its choices and the trace of what happened. The
 * scenarios of one test file share one table, each in an environment of its own.
 */

const setup = fc.record({
  instances: fc.integer({ min: 1, max: 3 }),
  twoPaths: fc.boolean(),
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  unmanaged: fc.integer({ min: 0, max: 1 }),
});
type Setup = typeof setup extends fc.Arbitrary<infer T> ? T : never;

// Staged scenarios: a canary of one instance, then the rest, baking a minute (the alarm stays
// OK: a halt comes from a failed canary).
const STAGES = { canary: 1, waves: [], bakeSeconds: 60, alarms: ['api-5xx'] };

const OUTCOMES: Outcome[] = [
  'updated',
  'updated',
  'updated',
  'fetch-failed',
  'fetch-failed',
  'content-invalid',
  'delivery-timeout',
];
const EVENTS = ['one', 'one', 'one', 'lost', 'twice'] as const;
const JUMPS = [1_000, 20_000, 5 * 60_000, 25 * 60_000];
const MAX_ROLLOUTS = 3;

/** Plays one scenario: each choice picks the next thing to happen. */
async function play(w: World, choices: number[]): Promise<void> {
  const events: Array<{ rolloutId: string; version: number }> = [];
  let started = 0;
  let lastSecond: number | undefined;
  for (const c of choices) {
    const pick = <T>(items: readonly T[], salt = 1) =>
      items[Math.floor(c / 13 / salt) % items.length] as T;
    switch (c % 13) {
      case 0:
      case 1: {
        // A put; sometimes in the same second as the previous one; its event now or later.
        if (started >= MAX_ROLLOUTS) break;
        started++;
        const eventSecond = c % 2 === 0 && lastSecond !== undefined ? lastSecond : undefined;
        const rolloutId = await w.put({
          deliver: false,
          ...(eventSecond === undefined ? {} : { eventSecond }),
        });
        lastSecond = eventSecond ?? Math.floor(w.clock / 1000) * 1000;
        events.push({ rolloutId, version: w.parameterVersion.get(w.parameter) ?? 0 });
        if (c % 3 !== 0) await w.propagate(rolloutId, events.at(-1)?.version ?? 0);
        break;
      }
      case 2: {
        // An event delivered (again, or late and out of order).
        const event = pick(events);
        if (event !== undefined) await w.propagate(event.rolloutId, event.version);
        break;
      }
      case 3:
        if (started < MAX_ROLLOUTS) {
          started++;
          await w.resync();
        }
        break;
      case 4:
      case 5:
      case 6: {
        const pending = w.pendingInvocations();
        const [commandId, instanceId] = pick(pending) ?? [];
        if (commandId !== undefined && instanceId !== undefined) {
          w.runInvocation(commandId, instanceId, pick(OUTCOMES, 7), pick(EVENTS, 11));
        }
        break;
      }
      case 7:
      case 8:
        await w.deliver('status', 1 + (c % 4));
        break;
      case 9:
        // Two track batches at once (the event source mapping allows 2 concurrent batches).
        await Promise.all([w.deliver('status', 2), w.deliver('status', 2)]);
        break;
      case 10:
        await w.deliver('retry');
        break;
      case 11:
        w.advance(pick(JUMPS));
        break;
      case 12: {
        const at = Math.floor(c / 13) % 14;
        const kind = pick(['crash', 'lost-reply', 'die', 'sns-fails'] as const, 14);
        w.inject(kind === 'sns-fails' ? { kind } : { kind, at });
        break;
      }
    }
  }
  // Every event is delivered in the end (EventBridge retries; the DLQ alarm is another story).
  for (const event of events) await w.propagate(event.rolloutId, event.version);
  await w.drain(() => 'updated', 2000);
}

/** The ledger's promises, checked on the drained world; throws naming the broken one. */
async function check(w: World): Promise<void> {
  const rollouts = await w.rollouts();
  for (const { rollout, targets } of rollouts) {
    const where = `rollout ${rollout.rolloutId}`;
    const halted = rollout.stages?.phase === 'Halted';
    // Every target ends in exactly one terminal state; every rollout is settled, but a halted
    // staged rollout, which waits for a person with only its unreached stages pending.
    expect(
      targets.filter(
        (t) =>
          t.status === 'Pending' && !(halted && (t.stage ?? 0) > (rollout.stages?.current ?? 0)),
      ),
      `${where}: pending targets`,
    ).toEqual([]);
    expect(rollout.state, `${where}: state`).toBe(halted ? 'InProgress' : 'Settled');
    // Every instance it resolved has a target for every file, even if its creator died.
    expect(targets.length, `${where}: targets`).toBe(w.instances.length * rollout.files.length);
    // Counters equal the per-target states.
    const { retries: _r, ...counted } = countTargets(targets);
    const { retries: _s, ...stored } = rollout.counts;
    expect(stored, `${where}: counters`).toEqual(counted);
    // Exactly one alert for a rollout that needs one, none for the others; a staged rollout's
    // halt is its one alert (a settling after it pages only for new news).
    const alerts = w.alertsOf(rollout.rolloutId);
    if (rollout.stages?.halt !== undefined) {
      expect(alerts, `${where}: alerts published after a halt`).toBe(1);
      expect(rollout.alert, `${where}: alert state`).toBe('Sent');
    } else if (
      rollout.stages !== undefined ? settleAlertOwed(rollout) : needsAlert(rollout.counts)
    ) {
      expect(alerts, `${where}: alerts published`).toBe(1);
      expect(rollout.alert, `${where}: alert state`).toBe('Sent');
    } else {
      expect(alerts, `${where}: alerts published`).toBe(0);
      expect(rollout.alert, `${where}: alert state`).toBe('None');
    }
  }
  // No instance silently ends older than a rollout that targeted it: either its file is at
  // least that version, or a rollout at that version or later failed it (and so alerted).
  for (const { rollout, targets } of rollouts) {
    for (const t of targets) {
      const onDisk = w.disk.get(t.instanceId)?.get(t.path) ?? 0;
      if (onDisk >= (rollout.version ?? 0)) continue;
      const alerted = rollouts.some(
        (other) =>
          (other.rollout.version ?? 0) >= (rollout.version ?? 0) &&
          // A staged rollout that halted rolled the instances it reached back, and said so.
          (other.rollout.stages?.halt !== undefined ||
            other.targets.some(
              (o) =>
                o.instanceId === t.instanceId &&
                o.path === t.path &&
                (o.status === 'Failed' || (o.status === 'Unreachable' && o.reason !== TERMINATED)),
            )),
      );
      expect(
        alerted,
        `${t.instanceId} ${t.path} has v${onDisk}, rollout ${rollout.rolloutId} was v${rollout.version} (${t.status}) and nothing alerted`,
      ).toBe(true);
    }
  }
}

/**
 * Declares the model test for one seed: `runs` scenarios (FC_RUNS and FC_SEED override), in a
 * test file of its own so that two seeds run on two cores.
 */
export function describeLedgerModel(
  defaultSeed: number,
  defaultRuns: number,
  variant: { staged?: boolean; parts?: boolean } = {},
): void {
  const RUNS = Number(process.env.FC_RUNS ?? defaultRuns);
  const SEED = Number(process.env.FC_SEED ?? defaultSeed);
  let dynamo: { endpoint: string; close: () => Promise<void> };
  let scenarios = 0;
  const tableName = 'model-rollouts';
  beforeAll(async () => {
    dynamo = await startDynalite();
    await createRolloutsTable(dynamo.endpoint, tableName);
  });
  afterAll(() => dynamo.close());

  const named = variant.staged === true ? ', staged' : variant.parts === true ? ', in parts' : '';
  describe(`the rollout ledger under random interleavings${named}`, () => {
    it(`keeps its promises in ${RUNS} scenarios of seed ${SEED}`, async () => {
      let last: { setup: Setup; trace: string[] } | undefined;
      await fc.assert(
        fc.asyncProperty(
          setup,
          fc.array(fc.nat({ max: 100_000 }), { minLength: 5, maxLength: 40 }),
          async (options, choices) => {
            scenarios += 1;
            const w = new World({
              ...options,
              endpoint: dynamo.endpoint,
              tableName,
              environment: `m${SEED % 1000}s${scenarios}`,
              instanceBase: scenarios,
              ...(variant.staged === true ? { stages: STAGES } : {}),
              // Every rollout planned in parts of one chunk (below the config's minimum).
              ...(variant.parts === true ? { planPartTargets: 1 } : {}),
            });
            w.alarms.set('api-5xx', 'OK');
            // Every scenario's clock starts at the same instant: the send pace a previous one
            // reserved (on its own, later clock) must not hold this one's sends back.
            await resetPace(dynamo.endpoint, tableName);
            try {
              await play(w, choices);
              await check(w);
            } catch (error) {
              last = { setup: options, trace: w.trace };
              throw error;
            } finally {
              w.close();
            }
          },
        ),
        {
          numRuns: RUNS,
          seed: SEED,
          reporter: (details) => {
            if (!details.failed) return;
            throw new Error(
              `${fc.defaultReportMessage(details)}\n\n${String((details.errorInstance as Error | undefined)?.message ?? details.errorInstance)}\n\nsetup: ${JSON.stringify(last?.setup)}\ntrace of the shrunk scenario:\n${last?.trace.join('\n')}`,
            );
          },
        },
      );
    }, 300_000);
  });
}
