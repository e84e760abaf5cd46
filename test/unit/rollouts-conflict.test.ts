import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { RolloutStore } from '../../shared/rollout/store.ts';

// Real DynamoDB cancels a transaction that races another on the same item
// (TransactionConflict); the local one serialises writes and never does, so this is mocked.
const dbMock = mockClient(DynamoDBDocumentClient);
const store = new RolloutStore(DynamoDBDocumentClient.from(new DynamoDBClient({})), 'rollouts');
const transition = {
  instanceId: 'i-1',
  parameter: '/prod/env.php',
  path: '/var/www/html/env.php',
  fromAttempt: 1,
  to: 'Success' as const,
};
const conflict = () =>
  Object.assign(new Error('Transaction cancelled [None, TransactionConflict]'), {
    name: 'TransactionCanceledException',
    CancellationReasons: [{ Code: 'None' }, { Code: 'TransactionConflict' }],
  });

afterEach(() => dbMock.reset());

describe('RolloutStore under transaction conflicts', () => {
  it('tries again after a conflict with a concurrent batch', async () => {
    dbMock.on(TransactWriteCommand).rejectsOnce(conflict()).resolves({});
    const result = await store.commit('r-1', [transition]);
    expect(result).toEqual({ applied: [transition], alreadyApplied: [], stale: [] });
    expect(dbMock.commandCalls(TransactWriteCommand)).toHaveLength(2);
  });

  it('gives up after a few conflicts, so the batch comes back later', async () => {
    dbMock.on(TransactWriteCommand).rejects(conflict());
    await expect(store.commit('r-1', [transition])).rejects.toThrow('TransactionConflict');
    expect(dbMock.commandCalls(TransactWriteCommand)).toHaveLength(6);
  });
});
