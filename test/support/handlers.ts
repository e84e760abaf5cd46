import { DeleteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { RolloutStore } from '../../shared/rollout/store.ts';
import { startRolloutStore } from './rollouts.ts';

/**
 * For a handler test file: before all tests, start a local DynamoDB with the rollouts table,
 * point the SDK at it and import the handler module (handlers read their config at import);
 * stop it after all; before each test, forget the shared send pace. Read `store` and `handler` inside tests.
 */
export function withRolloutsTable<M>(importHandler: () => Promise<M>): {
  store: RolloutStore;
  db: DynamoDBDocumentClient;
  handler: M;
} {
  const context = {} as { store: RolloutStore; db: DynamoDBDocumentClient; handler: M };
  let close: () => Promise<void> = async () => undefined;
  beforeAll(async () => {
    const local = await startRolloutStore(process.env.ROLLOUTS_TABLE);
    close = local.close;
    context.store = local.store;
    context.db = local.db;
    process.env.AWS_ENDPOINT_URL_DYNAMODB = local.endpoint;
    context.handler = await importHandler();
  });
  // The send pace is one item all rollouts share: forget it, so no test's rollout waits its
  // turn behind an earlier test's.
  beforeEach(async () => {
    await context.db.send(
      new DeleteCommand({
        TableName: process.env.ROLLOUTS_TABLE,
        Key: { pk: 'PACE', sk: 'fetches' },
      }),
    );
  });
  afterAll(() => close());
  return context;
}
