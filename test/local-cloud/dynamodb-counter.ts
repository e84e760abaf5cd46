/**
 * A counting front for the local DynamoDB: forwards every call unchanged to dynalite's front
 * (test/support/dynalite.ts) and records each item written — by PutItem, UpdateItem,
 * DeleteItem, BatchWriteItem (each request) and TransactWriteItems (each item) — with its
 * table and key, so benchmarks can count writes per instance and hot-key updates.
 */
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';

type Json = Record<string, any>;

export interface DynamoDbWrite {
  operation: 'PutItem' | 'UpdateItem' | 'DeleteItem' | 'BatchWriteItem' | 'TransactWriteItems';
  table: string;
  /** The item's key as sent (attribute values in wire form), e.g. { pk: { S: 'R#…' }, … }. */
  key: Json;
  /** The caller's access key id (ASIA-LOCAL-<function> for a function). */
  caller: string;
  /** HTTP status of the call that carried it (a failed transaction writes nothing). */
  status: number;
}

export async function startDynamoDbCounter(
  backend: string,
): Promise<{ endpoint: string; writes: DynamoDbWrite[]; close: () => Promise<void> }> {
  const target = new URL(backend);
  const writes: DynamoDbWrite[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '';
      const caller = /Credential=([^/,\s]+)\//.exec(String(req.headers.authorization ?? ''))?.[1];
      const forward = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (reply) => {
          const replyChunks: Buffer[] = [];
          reply.on('data', (chunk: Buffer) => replyChunks.push(chunk));
          reply.on('end', () => {
            const status = reply.statusCode ?? 500;
            try {
              for (const write of itemsWritten(operation, body)) {
                writes.push({ ...write, caller: caller ?? '', status });
              }
            } catch {
              // not JSON: nothing to count
            }
            res.writeHead(status, reply.headers);
            res.end(Buffer.concat(replyChunks));
          });
        },
      );
      forward.on('error', (error) => {
        res.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' });
        res.end(JSON.stringify({ __type: 'InternalServerError', message: error.message }));
      });
      forward.end(body);
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    writes,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function itemsWritten(
  operation: string,
  body: Buffer,
): Array<Pick<DynamoDbWrite, 'operation' | 'table' | 'key'>> {
  if (
    !['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems'].includes(
      operation,
    )
  )
    return [];
  const input = JSON.parse(body.toString('utf8')) as Json;
  const op = operation as DynamoDbWrite['operation'];
  switch (operation) {
    case 'PutItem':
      return [{ operation: op, table: input.TableName, key: input.Item ?? {} }];
    case 'UpdateItem':
    case 'DeleteItem':
      return [{ operation: op, table: input.TableName, key: input.Key ?? {} }];
    case 'BatchWriteItem':
      return Object.entries((input.RequestItems ?? {}) as Record<string, Json[]>).flatMap(
        ([table, requests]) =>
          requests.map((request) => ({
            operation: op,
            table,
            key: request.PutRequest?.Item ?? request.DeleteRequest?.Key ?? {},
          })),
      );
    default:
      return ((input.TransactItems ?? []) as Json[]).flatMap((item) => {
        const [kind, spec] = Object.entries(item)[0] as [string, Json];
        if (kind === 'ConditionCheck') return [];
        return [{ operation: op, table: spec.TableName, key: spec.Key ?? spec.Item ?? {} }];
      });
  }
}
