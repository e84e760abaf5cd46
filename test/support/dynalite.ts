import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { CreateTableCommand, DeleteItemCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';

/**
 * DynamoDB for tests and the local cloud: dynalite (a real DynamoDB implementation, in memory),
 * behind a small front that adds what dynalite lacks — TransactWriteItems.
 *
 * Every write goes through one lock, so a transaction is applied item by item with nothing
 * interleaved, each item's condition evaluated by dynalite itself, and the items already
 * written restored if one fails. Errors have the shape DynamoDB documents
 * (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html):
 * TransactionCanceledException with one CancellationReasons entry per item, in order.
 */
export async function startDynalite(): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const backend = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await listen(backend);
  const backendPort = (backend.address() as AddressInfo).port;
  const lock = new WriteLock();
  const tokens = new RequestTokens();

  const front = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '';
      const send = (status: number, headers: Record<string, string>, payload: Buffer | string) => {
        res.writeHead(status, headers);
        res.end(payload);
      };
      try {
        if (operation === 'TransactWriteItems') {
          const input = JSON.parse(body.toString('utf8'));
          const reply = await lock.run(() =>
            tokens.answer(input, () => transactWrite(backendPort, req.headers, input)),
          );
          send(
            reply.status,
            { 'content-type': 'application/x-amz-json-1.0' },
            JSON.stringify(reply.body),
          );
        } else {
          const forward = () => call(backendPort, req.headers, body);
          const reply = WRITES.has(operation) ? await lock.run(forward) : await forward();
          send(reply.status, reply.headers, reply.body);
        }
      } catch (error) {
        send(
          500,
          { 'content-type': 'application/x-amz-json-1.0' },
          JSON.stringify({
            __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError',
            message: (error as Error).message,
          }),
        );
      }
    });
  });
  await listen(front);
  const { port } = front.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: async () => {
      await close(front);
      await close(backend);
    },
  };
}

/** Creates the table Powertools Idempotency expects (partition key `id`). */
export async function createIdempotencyTable(endpoint: string, tableName: string): Promise<void> {
  await createTable(endpoint, {
    TableName: tableName,
    AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
  });
}

/** Creates the rollouts table as serverless.yml declares it (pk/sk). */
export async function createRolloutsTable(endpoint: string, tableName: string): Promise<void> {
  await createTable(endpoint, {
    TableName: tableName,
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'sk', AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ],
  });
}

async function createTable(
  endpoint: string,
  table: Omit<ConstructorParameters<typeof CreateTableCommand>[0], 'BillingMode'>,
): Promise<void> {
  const client = new DynamoDBClient({ endpoint, region: 'eu-west-1' });
  await client.send(new CreateTableCommand({ ...table, BillingMode: 'PAY_PER_REQUEST' }));
  client.destroy();
}

const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem']);
const MAX_TRANSACTION_ITEMS = 100;

type Json = Record<string, any>;
type Reply = { status: number; headers: Record<string, string>; body: Buffer };

/** Serialises async sections: the single writer of the local DynamoDB. */
class WriteLock {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(section: () => Promise<T>): Promise<T> {
    const result = this.tail.then(section);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * TransactWriteItems' ClientRequestToken: "If you submit a request with the same client token
 * ... within 10 minutes, the original result is returned" and "the same client token but a
 * change in other parameters within the 10-minute idempotency window ... returns an
 * IdempotentParameterMismatch exception"
 * (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html).
 */
class RequestTokens {
  private readonly seen = new Map<
    string,
    { request: string; at: number; reply: { status: number; body: Json } }
  >();

  async answer(
    input: Json,
    run: () => Promise<{ status: number; body: Json }>,
  ): Promise<{ status: number; body: Json }> {
    const token: unknown = input.ClientRequestToken;
    if (typeof token !== 'string') return run();
    const { ClientRequestToken: _, ...rest } = input;
    const request = JSON.stringify(rest);
    const earlier = this.seen.get(token);
    if (earlier !== undefined && Date.now() - earlier.at < 10 * 60_000) {
      if (earlier.request !== request) {
        return {
          status: 400,
          body: {
            __type: 'com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException',
            message:
              'The request uses the same client token as a previous, but non-identical request.',
          },
        };
      }
      return earlier.reply;
    }
    const reply = await run();
    // Only a committed transaction is remembered; a cancelled one did nothing to repeat.
    if (reply.status === 200) this.seen.set(token, { request, at: Date.now(), reply });
    return reply;
  }
}

async function transactWrite(
  port: number,
  headers: IncomingHttpHeaders,
  input: Json,
): Promise<{ status: number; body: Json }> {
  const items: Json[] = input.TransactItems ?? [];
  const validation = (message: string) => ({
    status: 400,
    body: { __type: 'com.amazon.coral.validate#ValidationException', message },
  });
  if (items.length < 1 || items.length > MAX_TRANSACTION_ITEMS) {
    return validation(
      `1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to ${MAX_TRANSACTION_ITEMS}`,
    );
  }
  const api = async (operation: string, payload: Json) => {
    const reply = await call(
      port,
      { ...headers, 'x-amz-target': `DynamoDB_20120810.${operation}` },
      Buffer.from(JSON.stringify(payload)),
    );
    return { status: reply.status, body: JSON.parse(reply.body.toString('utf8') || '{}') as Json };
  };

  const operations = await Promise.all(
    items.map(async (item) => {
      const [kind, spec] = Object.entries(item)[0] as [string, Json];
      const key = spec.Key ?? (await keyOf(api, spec.TableName, spec.Item));
      return { kind, spec, key };
    }),
  );
  const identities = operations.map(
    (op) => `${op.spec.TableName}\0${JSON.stringify(sortKeys(op.key))}`,
  );
  if (new Set(identities).size !== identities.length) {
    return validation('Transaction request cannot include multiple operations on one item');
  }

  const applied: Array<{ table: string; key: Json; before: Json | undefined }> = [];
  const restore = async () => {
    for (const { table, key, before } of applied.reverse()) {
      if (before === undefined) await api('DeleteItem', { TableName: table, Key: key });
      else await api('PutItem', { TableName: table, Item: before });
    }
  };
  for (const [index, { kind, spec, key }] of operations.entries()) {
    const snapshot = await api('GetItem', {
      TableName: spec.TableName,
      Key: key,
      ConsistentRead: true,
    });
    const before = snapshot.body.Item as Json | undefined;
    const conditional = {
      ConditionExpression: spec.ConditionExpression,
      ExpressionAttributeNames: spec.ExpressionAttributeNames,
      ExpressionAttributeValues: spec.ExpressionAttributeValues,
    };
    let reply: { status: number; body: Json };
    switch (kind) {
      case 'Put':
        reply = await api('PutItem', {
          TableName: spec.TableName,
          Item: spec.Item,
          ...conditional,
        });
        break;
      case 'Update':
        reply = await api('UpdateItem', {
          TableName: spec.TableName,
          Key: key,
          UpdateExpression: spec.UpdateExpression,
          ...conditional,
        });
        break;
      case 'Delete':
        reply = await api('DeleteItem', { TableName: spec.TableName, Key: key, ...conditional });
        break;
      case 'ConditionCheck':
        // Evaluated by dynalite as a conditional write of a probe attribute, then undone.
        reply = await api('UpdateItem', {
          TableName: spec.TableName,
          Key: key,
          UpdateExpression: 'SET #txProbe = :txProbe',
          ...conditional,
          ExpressionAttributeNames: { ...spec.ExpressionAttributeNames, '#txProbe': '__txProbe' },
          ExpressionAttributeValues: {
            ...spec.ExpressionAttributeValues,
            ':txProbe': { BOOL: true },
          },
        });
        break;
      default:
        await restore();
        return validation(`Unknown transaction operation ${kind}`);
    }
    applied.push({ table: spec.TableName, key, before });
    if (kind === 'ConditionCheck' && reply.status === 200) {
      applied.pop();
      if (before === undefined) await api('DeleteItem', { TableName: spec.TableName, Key: key });
      else await api('PutItem', { TableName: spec.TableName, Item: before });
    }
    if (reply.status !== 200) {
      if (kind !== 'ConditionCheck') applied.pop();
      await restore();
      const failedCode = String(reply.body.__type ?? '').split('#')[1] ?? 'ValidationError';
      if (failedCode !== 'ConditionalCheckFailedException') return reply;
      const reasons = operations.map((_, i) =>
        i === index
          ? { Code: 'ConditionalCheckFailed', Message: 'The conditional request failed' }
          : { Code: 'None' },
      );
      return {
        status: 400,
        body: {
          __type: 'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
          message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons.map((r) => r.Code).join(', ')}]`,
          CancellationReasons: reasons,
        },
      };
    }
  }
  return { status: 200, body: {} };
}

const keySchemas = new Map<string, string[]>();
async function keyOf(
  api: (operation: string, payload: Json) => Promise<{ body: Json }>,
  table: string,
  item: Json,
): Promise<Json> {
  let names = keySchemas.get(table);
  if (names === undefined) {
    const { body } = await api('DescribeTable', { TableName: table });
    names = (body.Table?.KeySchema ?? []).map((k: Json) => k.AttributeName as string) as string[];
    keySchemas.set(table, names);
  }
  return Object.fromEntries(names.map((name: string) => [name, item[name]]));
}

function sortKeys(value: Json): Json {
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)));
}

// One pool of kept-alive connections to the backend: a new TCP connection per forwarded call
// cost more than the call itself.
const backendAgent = new Agent({ keepAlive: true, maxSockets: 16 });

function call(port: number, headers: IncomingHttpHeaders, body: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        agent: backendAgent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        headers: { ...headers, host: `127.0.0.1:${port}`, 'content-length': String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const replyHeaders: Record<string, string> = {};
          for (const [name, value] of Object.entries(res.headers)) {
            if (
              typeof value === 'string' &&
              name !== 'connection' &&
              name !== 'transfer-encoding'
            ) {
              replyHeaders[name] = value;
            }
          }
          resolve({
            status: res.statusCode ?? 500,
            headers: replyHeaders,
            body: Buffer.concat(chunks),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function listen(server: Server): Promise<void> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * Forgets the send pace the rollouts of a table share (its one item), so a test's rollout is
 * not queued behind an earlier test's.
 */
export async function resetPace(endpoint: string, tableName: string): Promise<void> {
  const client = new DynamoDBClient({ endpoint, region: 'eu-west-1' });
  await client.send(
    new DeleteItemCommand({
      TableName: tableName,
      Key: { pk: { S: 'PACE' }, sk: { S: 'fetches' } },
    }),
  );
  client.destroy();
}
