import {
  BatchGetCommand,
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  paginateQuery,
  type QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { chunk, mapSettled } from '../platform/chunk.ts';
import type { Item, Key } from './items.ts';

// Items expire 90 days after the rollout (the table's TTL attribute).
const RETENTION_SECONDS = 90 * 24 * 60 * 60;
const BATCH_WRITE_SIZE = 25;
const BATCH_GET_SIZE = 100;
// BatchWriteItem calls in flight: 10,000 targets are 400 calls, so one after another they
// would take most of a function's timeout at 100 ms a call.
const BATCH_WRITES_IN_FLIGHT = 8;
/**
 * Sending leases, attempt claims and alert claims run out after this long: longer than any
 * function that holds one may run (60 s timeout), so a live holder is never raced, and a holder
 * that died leaves the work to the next caller.
 */
export const LEASE_SECONDS = 120;
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether a DynamoDB error is a failed condition: the one error the store turns into answers. */
export const isConditionFailure = (error: unknown) =>
  (error as Error).name === 'ConditionalCheckFailedException';

/**
 * A cancelled transaction's reason codes, one per item in the order given ('None' for an item
 * that was fine); undefined for any other error (API_TransactWriteItems.html, CancellationReasons).
 */
export const cancellationCodes = (error: unknown): Array<string | undefined> | undefined =>
  (error as Error).name === 'TransactionCanceledException'
    ? (error as { CancellationReasons?: Array<{ Code?: string }> }).CancellationReasons?.map(
        (reason) => reason.Code,
      )
    : undefined;

/**
 * The driver under the store: one table, one clock, and the few DynamoDB patterns the store
 * uses (conditional update, consistent get, paged query, batched get and put). Throws SDK errors
 * except a failed condition, which `conditional` answers with false.
 */
export class RolloutTable {
  readonly db: DynamoDBDocumentClient;
  readonly name: string;
  private readonly now: () => Date;

  constructor(db: DynamoDBDocumentClient, name: string, now: () => Date) {
    this.db = db;
    this.name = name;
    this.now = now;
  }

  /** An UpdateItem whose condition may fail: false then, true when applied. */
  async conditional(update: Omit<ConstructorParameters<typeof UpdateCommand>[0], 'TableName'>) {
    try {
      await this.db.send(new UpdateCommand({ TableName: this.name, ...update }));
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  /** One item, strongly consistent. */
  async get(Key: Key): Promise<Item | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({ TableName: this.name, Key, ConsistentRead: true }),
    );
    return Item;
  }

  /** Every item a query matches, all pages. */
  async queryAll(
    query: Omit<ConstructorParameters<typeof QueryCommand>[0], 'TableName'>,
  ): Promise<Item[]> {
    const items: Item[] = [];
    for await (const page of paginateQuery(
      { client: this.db },
      { TableName: this.name, ...query },
    )) {
      items.push(...(page.Items ?? []));
    }
    return items;
  }

  /** Items by key, strongly consistent, 100 a call, unprocessed keys asked again. */
  async batchGet(keys: Key[]): Promise<Item[]> {
    const found: Item[] = [];
    for (const part of chunk(keys, BATCH_GET_SIZE)) {
      let request: Item | undefined = {
        [this.name]: { Keys: part, ConsistentRead: true },
      };
      for (let round = 0; request !== undefined && Object.keys(request).length > 0; round++) {
        // Unprocessed keys mean throttling: back off before asking again.
        if (round > 0) await sleep(Math.min(1000, 50 * 2 ** round));
        const reply: { Responses?: Record<string, Item[]>; UnprocessedKeys?: Item } =
          await this.db.send(new BatchGetCommand({ RequestItems: request }));
        found.push(...(reply.Responses?.[this.name] ?? []));
        request = reply.UnprocessedKeys;
      }
    }
    return found;
  }

  /**
   * Puts items 25 a call, BATCH_WRITES_IN_FLIGHT calls at once, unprocessed ones again with
   * backoff; throws (after the others finished) if a call fails or items stay unprocessed
   * after 8 rounds.
   */
  async batchPut(items: Record<string, unknown>[]): Promise<void> {
    const results = await mapSettled(
      chunk(items, BATCH_WRITE_SIZE),
      BATCH_WRITES_IN_FLIGHT,
      async (part) => {
        let request: Item | undefined = {
          [this.name]: part.map((Item) => ({ PutRequest: { Item } })),
        };
        for (let round = 0; request !== undefined && Object.keys(request).length > 0; round++) {
          if (round > 0) await sleep(Math.min(1000, 50 * 2 ** round));
          const reply: { UnprocessedItems?: Item } = await this.db.send(
            new BatchWriteCommand({ RequestItems: request }),
          );
          request = reply.UnprocessedItems;
          if (round >= 8 && request !== undefined && Object.keys(request).length > 0) {
            throw new Error('DynamoDB left items unprocessed after 8 retries');
          }
        }
      },
    );
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** The time every rule of the rollouts reads: the store's clock (a test's, or the real one). */
  clock(): Date {
    return this.now();
  }

  isoNow(): string {
    return this.now().toISOString();
  }

  leaseEnd(): string {
    return new Date(this.now().getTime() + LEASE_SECONDS * 1000).toISOString();
  }

  expiry(): number {
    return Math.floor(this.now().getTime() / 1000) + RETENTION_SECONDS;
  }
}
