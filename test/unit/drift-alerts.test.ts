import { describe, expect, it } from 'vitest';
import type { World } from '../support/ledger-world.ts';
import { ledgerWorlds } from '../support/world-tests.ts';

/**
 * Scheduled drift repair pages once for a problem that stays: an instance unreachable (or
 * failing) run after run is named by the first run's alert, not by every run's. Real store on
 * dynalite; Run Command, EC2 and SQS faked in memory.
 */

const world = ledgerWorlds('drift-alerts');

const HOUR = 3_600_000;

describe('drift repair alerts', () => {
  it('pages for an unreachable instance once, and again only for a new problem', async () => {
    const w = await world({ instances: 3, unmanaged: 1, maxAttempts: 1 });
    const runs: string[] = [];
    const run = async (outcome: Parameters<World['drain']>[0] = () => 'updated') => {
      const id = (await w.drift()) ?? '';
      await w.drain(outcome);
      expect((await w.store.getRollout(id))?.state).toBe('Settled');
      runs.push(id);
      w.advance(6 * HOUR);
      return id;
    };

    // 1. Files written for the first time (repaired) and one instance unreachable: news.
    expect(w.alertsOf(await run())).toBe(1);
    // 2. Nothing drifted, the same instance still unreachable: already paged.
    const second = await run();
    expect(w.alertsOf(second)).toBe(0);
    expect((await w.store.getRollout(second))?.counts).toMatchObject({
      unreachable: 1,
      unchanged: 2,
    });
    // 3. A new problem (a file that cannot be written) beside the known one: paged.
    const failing = w.instances[2] ?? '';
    expect(w.alertsOf(await run((_, id) => (id === failing ? 'content-invalid' : 'updated')))).toBe(
      1,
    );
    // 4. The same two problems again: not paged.
    expect(w.alertsOf(await run((_, id) => (id === failing ? 'content-invalid' : 'updated')))).toBe(
      0,
    );
    expect(runs.every((id) => id !== '')).toBe(true);
  });
});
