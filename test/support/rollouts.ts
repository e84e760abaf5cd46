import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { RolloutStore } from '../../shared/rollout/store.ts';
import { createRolloutsTable, startDynalite } from './dynalite.ts';

/** A RolloutStore on a fresh table of a local DynamoDB; `close` stops it. */
export async function startRolloutStore(tableName = 'rollouts') {
  const dynamo = await startDynalite();
  await createRolloutsTable(dynamo.endpoint, tableName);
  const db = DynamoDBDocumentClient.from(
    new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'eu-west-1' }),
    {
      marshallOptions: { removeUndefinedValues: true },
    },
  );
  return {
    endpoint: dynamo.endpoint,
    db,
    store: new RolloutStore(db, tableName),
    close: async () => {
      db.destroy();
      await dynamo.close();
    },
  };
}

let sequence = 0;
/** A new rollout id that sorts after every earlier one in this run. */
export function nextRolloutId(): string {
  sequence += 1;
  return `20261123T1613${String(sequence).padStart(2, '0')}000Z-${sequence.toString(16).padStart(8, '0')}`;
}
