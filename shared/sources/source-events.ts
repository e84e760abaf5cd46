import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';

/**
 * The bookkeeping of source events, in the idempotency table (key `id`, TTL `expiration`):
 * - a *claim* per source version (`claim#<source>#<version>`): the first event that saw a secret's
 *   AWSCURRENT version names the rollout for it, so the several events one change makes (a
 *   rotation's UpdateSecretVersionStage and RotationSucceeded) start one rollout;
 * - a *burst* per mapped path (`burst#<environment>#<path>`): changes under the path coalesce
 *   into it until none has come for the settle window.
 * No policy here, only keys and conditional writes; no item ever holds a value.
 */

// Long past any redelivery (EventBridge retries for 24 h) and any burst's wait.
const KEEP_SECONDS = 2 * 24 * 60 * 60;

export interface Burst {
  burstId: string;
  firstEventAt: string;
  lastEventAt: string;
  changes: number;
  /** The burst id whose settle message was sent (set after SendMessage succeeded). */
  scheduled?: string;
}

const isConditionFailure = (error: unknown) =>
  (error as Error).name === 'ConditionalCheckFailedException';

export class SourceEvents {
  private readonly db: DynamoDBDocumentClient;
  private readonly table: string;

  constructor(db: DynamoDBDocumentClient, table: string) {
    this.db = db;
    this.table = table;
  }

  private expiration(now: Date): number {
    return Math.floor(now.getTime() / 1000) + KEEP_SECONDS;
  }

  /**
   * Claims `key` for `rolloutId`; returns the rollout id of whoever claimed it first (this one,
   * or an earlier event's) and whether this call made the claim. Throws the SDK error.
   */
  async claim(
    key: string,
    rolloutId: string,
    now: Date,
  ): Promise<{ rolloutId: string; first: boolean }> {
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.table,
          Item: { id: `claim#${key}`, rolloutId, expiration: this.expiration(now) },
          ConditionExpression: 'attribute_not_exists(id)',
        }),
      );
      return { rolloutId, first: true };
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
    }
    const { Item } = await this.db.send(
      new GetCommand({ TableName: this.table, Key: { id: `claim#${key}` }, ConsistentRead: true }),
    );
    return { rolloutId: String(Item?.rolloutId ?? rolloutId), first: false };
  }

  /**
   * Adds one change to the path's burst, opening it if none is open (`eventId` becomes its id);
   * returns the burst as it now is. One atomic UpdateItem, so concurrent events join one burst.
   */
  async addChange(burstKey: string, eventId: string, now: Date): Promise<Burst> {
    const at = now.toISOString();
    const { Attributes } = await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { id: `burst#${burstKey}` },
        UpdateExpression:
          'SET burstId = if_not_exists(burstId, :id), firstEventAt = if_not_exists(firstEventAt, :at), lastEventAt = :at, expiration = :exp ADD changes :one',
        ExpressionAttributeValues: {
          ':id': eventId,
          ':at': at,
          ':exp': this.expiration(now),
          ':one': 1,
        },
        ReturnValues: 'ALL_NEW',
      }),
    );
    return toBurst(Attributes ?? {});
  }

  /** Records that the burst's settle message is on its way. Never fails for a closed burst. */
  async markScheduled(burstKey: string, burstId: string): Promise<void> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { id: `burst#${burstKey}` },
          UpdateExpression: 'SET scheduled = :id',
          ConditionExpression: 'burstId = :id',
          ExpressionAttributeValues: { ':id': burstId },
        }),
      );
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
    }
  }

  /** The open burst of a path, or undefined. */
  async getBurst(burstKey: string): Promise<Burst | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.table,
        Key: { id: `burst#${burstKey}` },
        ConsistentRead: true,
      }),
    );
    return Item === undefined ? undefined : toBurst(Item);
  }

  /**
   * Closes the burst if it is still `burstId` with no change after `lastEventAt`: true when this
   * call closed it (the caller then starts the rollout), false when a change came in meanwhile.
   */
  async close(burstKey: string, burstId: string, lastEventAt: string): Promise<boolean> {
    try {
      await this.db.send(
        new DeleteCommand({
          TableName: this.table,
          Key: { id: `burst#${burstKey}` },
          ConditionExpression: 'burstId = :id AND lastEventAt = :last',
          ExpressionAttributeValues: { ':id': burstId, ':last': lastEventAt },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }
}

function toBurst(item: Record<string, unknown>): Burst {
  return {
    burstId: String(item.burstId),
    firstEventAt: String(item.firstEventAt),
    lastEventAt: String(item.lastEventAt),
    changes: Number(item.changes ?? 0),
    ...(typeof item.scheduled === 'string' ? { scheduled: item.scheduled } : {}),
  };
}

/** The burst key of a path of an environment. */
export function burstKey(environment: string, path: string): string {
  return `${environment}#${path}`;
}
