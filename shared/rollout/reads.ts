import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { type IndexEntry, type Item, indexPk, toCommand, toIndexEntry, toTarget } from './items.ts';
import type { CommandRecord, Rollout, Target } from './model.ts';
import type { RolloutTable } from './table.ts';

/** The larger reads of the rollouts table (RolloutStore delegates here). */

/** One page of a rollout's targets, all its commands, and where the next page starts. */
export interface Page {
  rollout: Rollout;
  targets: Target[];
  commands: CommandRecord[];
  lastKey?: string;
}

export async function loadPage(
  table: RolloutTable,
  getRollout: (rolloutId: string) => Promise<Rollout | undefined>,
  rolloutId: string,
  limit: number,
  after?: string,
): Promise<Page | undefined> {
  const rollout = await getRollout(rolloutId);
  if (rollout === undefined) return undefined;
  const pk = `R#${rolloutId}`;
  const { Items, LastEvaluatedKey } = await table.db.send(
    new QueryCommand({
      TableName: table.name,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :t)',
      ExpressionAttributeValues: { ':pk': pk, ':t': 'T#' },
      ...(after === undefined ? {} : { ExclusiveStartKey: { pk, sk: after } }),
      Limit: limit,
      ConsistentRead: true,
    }),
  );
  const commands = await table.queryAll({
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :c)',
    ExpressionAttributeValues: { ':pk': pk, ':c': 'C#' },
    ConsistentRead: true,
  });
  const lastKey = LastEvaluatedKey?.sk as string | undefined;
  return {
    rollout,
    targets: (Items ?? []).map(toTarget),
    commands: commands.map(toCommand),
    ...(lastKey === undefined ? {} : { lastKey }),
  };
}

export async function rolloutsOfParameterSince(
  table: RolloutTable,
  parameter: string,
  after: string,
  instanceIds: string[],
): Promise<IndexEntry[]> {
  const names = instanceIds.map((_, i) => `:i${i}`);
  const items = await table.queryAll({
    KeyConditionExpression: 'pk = :pk AND sk > :after',
    FilterExpression: `attribute_not_exists(bootstrapOf) OR bootstrapOf IN (${names.join(', ')})`,
    ExpressionAttributeValues: {
      ':pk': indexPk({ parameter }),
      // Entries of the same millisecond sort after `after` itself: `<after>#…` > `<after>`.
      ':after': after,
      ...Object.fromEntries(instanceIds.map((id, i) => [`:i${i}`, id])),
    },
  });
  return items.map(toIndexEntry);
}

/**
 * A long restriction's ids (creating.ts `beginRollout`), from its `pages` items in key order.
 * Throws the SDK error, or an Error if an item is missing (say, deleted by TTL before the rest):
 * a restriction read short would silently leave instances out.
 */
export async function instanceIdsOf(
  table: RolloutTable,
  rolloutId: string,
  pages: number,
): Promise<string[]> {
  const items = await table.queryAll({
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :i)',
    ExpressionAttributeValues: { ':pk': `R#${rolloutId}`, ':i': 'I#' },
    ConsistentRead: true,
  });
  return restrictionFrom(rolloutId, pages, items);
}

/** The ids in a restriction's page items; throws an Error unless all `pages` are there. */
export function restrictionFrom(rolloutId: string, pages: number, items: Item[]): string[] {
  const found = items.filter((item) => item.type === 'instanceIds');
  if (found.length !== pages) {
    throw new Error(
      `rollout ${rolloutId} keeps its instances in ${pages} items, ${found.length} found`,
    );
  }
  return found.flatMap((item) => item.instanceIds as string[]);
}
