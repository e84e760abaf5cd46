import { afterAll, afterEach, beforeAll } from 'vitest';
import { startDynalite } from './dynalite.ts';
import { World, type WorldOptions } from './ledger-world.ts';

export type NewWorld = (options: Omit<WorldOptions, 'endpoint' | 'tableName'>) => Promise<World>;

/**
 * A test file's ledger worlds (ledger-world.ts) on one dynalite of its own: starts it before the
 * file's tests and stops it after, gives each world a table of its own (`<prefix>-<n>`), closes
 * the last world after each test and prints its trace when the test failed.
 */
export function ledgerWorlds(prefix: string): NewWorld {
  let dynamo: { endpoint: string; close: () => Promise<void> } | undefined;
  let tables = 0;
  let world: World | undefined;
  beforeAll(async () => {
    dynamo = await startDynalite();
  });
  afterAll(() => dynamo?.close());
  afterEach((context) => {
    if (context.task.result?.state === 'fail' && world !== undefined) {
      console.log(world.trace.join('\n'));
    }
    world?.close();
    world = undefined;
  });
  return async (options) => {
    if (dynamo === undefined) throw new Error('ledgerWorlds: dynalite is not started yet');
    world?.close();
    world = await World.create({
      ...options,
      endpoint: dynamo.endpoint,
      tableName: `${prefix}-${++tables}`,
    });
    return world;
  };
}
