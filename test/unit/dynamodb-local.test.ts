import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactWriteCommand,
} from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRolloutsTable, startDynalite } from '../support/dynalite.ts';

// The local DynamoDB adds TransactWriteItems to dynalite; the rollout store depends on its
// all-or-nothing behaviour, so it is tested like the real thing would behave.
let dynamo: Awaited<ReturnType<typeof startDynalite>>;
let db: DynamoDBDocumentClient;
const TableName = 'tx-test';

beforeAll(async () => {
  dynamo = await startDynalite();
  await createRolloutsTable(dynamo.endpoint, TableName);
  db = DynamoDBDocumentClient.from(
    new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'eu-west-1' }),
  );
});
afterAll(async () => {
  db.destroy();
  await dynamo.close();
});

const get = async (sk: string) =>
  (await db.send(new GetCommand({ TableName, Key: { pk: 'p', sk }, ConsistentRead: true }))).Item;

describe('TransactWriteItems on the local DynamoDB', () => {
  it('applies every item when every condition holds', async () => {
    await db.send(new PutCommand({ TableName, Item: { pk: 'p', sk: 'a', n: 1 } }));
    await db.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            Update: {
              TableName,
              Key: { pk: 'p', sk: 'a' },
              UpdateExpression: 'ADD n :one',
              ConditionExpression: 'n = :one',
              ExpressionAttributeValues: { ':one': 1 },
            },
          },
          {
            Put: {
              TableName,
              Item: { pk: 'p', sk: 'b', n: 5 },
              ConditionExpression: 'attribute_not_exists(pk)',
            },
          },
        ],
      }),
    );
    expect(await get('a')).toMatchObject({ n: 2 });
    expect(await get('b')).toMatchObject({ n: 5 });
  });

  it('applies nothing when one condition fails, and says which', async () => {
    // Arrange
    await db.send(new PutCommand({ TableName, Item: { pk: 'p', sk: 'c', n: 1 } }));
    await db.send(new PutCommand({ TableName, Item: { pk: 'p', sk: 'd', n: 1 } }));
    // Act
    const error = await db
      .send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Update: {
                TableName,
                Key: { pk: 'p', sk: 'c' },
                UpdateExpression: 'ADD n :one',
                ExpressionAttributeValues: { ':one': 1 },
              },
            },
            { Put: { TableName, Item: { pk: 'p', sk: 'new' } } },
            {
              Update: {
                TableName,
                Key: { pk: 'p', sk: 'd' },
                UpdateExpression: 'ADD n :one',
                ConditionExpression: 'n = :two',
                ExpressionAttributeValues: { ':one': 1, ':two': 2 },
              },
            },
          ],
        }),
      )
      .catch((e) => e);
    // Assert
    expect(error.name).toBe('TransactionCanceledException');
    expect(error.CancellationReasons.map((r: { Code: string }) => r.Code)).toEqual([
      'None',
      'None',
      'ConditionalCheckFailed',
    ]);
    expect(await get('c')).toMatchObject({ n: 1 });
    expect(await get('new')).toBeUndefined();
    expect(await get('d')).toMatchObject({ n: 1 });
  });

  it('refuses two operations on one item', async () => {
    const error = await db
      .send(
        new TransactWriteCommand({
          TransactItems: [
            { Put: { TableName, Item: { pk: 'p', sk: 'e' } } },
            { Delete: { TableName, Key: { pk: 'p', sk: 'e' } } },
          ],
        }),
      )
      .catch((e) => e);
    expect(error.name).toBe('ValidationException');
    expect(await get('e')).toBeUndefined();
  });

  it('checks a ConditionCheck without writing the item', async () => {
    await db.send(new PutCommand({ TableName, Item: { pk: 'p', sk: 'f', n: 1 } }));
    await db.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            ConditionCheck: {
              TableName,
              Key: { pk: 'p', sk: 'f' },
              ConditionExpression: 'n = :one',
              ExpressionAttributeValues: { ':one': 1 },
            },
          },
          { Put: { TableName, Item: { pk: 'p', sk: 'g' } } },
        ],
      }),
    );
    expect(await get('f')).toEqual({ pk: 'p', sk: 'f', n: 1 });
    expect(await get('g')).toBeDefined();
  });
});
