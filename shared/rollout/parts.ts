import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { type Item, newTargetItem, partKey, rolloutKey } from './items.ts';
import type { NewTarget, PlanPart, SendChunk } from './model.ts';
import { chunkItems } from './sending.ts';
import { isConditionFailure, type RolloutTable } from './table.ts';

/**
 * A large rollout's plan in parts (RolloutStore delegates here): the planner records the
 * rollout with every count and one part item per ≤`planPartTargets` targets (their chunks with
 * their turns, their unreachable instances); the send workers record each part's targets and
 * chunks and queue its sends. So no invocation writes more than one part, and the first sends
 * go out while later parts are still being recorded. Each step is one conditional write; a
 * failed condition is an answer, never an error.
 *
 *   pk = R#<rolloutId>   sk = Q#<part>   a part: its chunks (with turns) and unreachable targets
 */

export interface PartRecord extends PlanPart {
  /** Its targets and chunks are written: from here on they are only queued, never rewritten. */
  recordedAt?: string;
  /** Its sends are queued: nothing more to do for it. */
  queuedAt?: string;
}

export type PartClaim = PartRecord | 'queued' | 'busy';

/**
 * The part items. An item holds at most 400 KB
 * (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html): a
 * part's ≤`planPartTargets` (≤5,000) instance ids take ~22 B each in its chunks, and its
 * unreachable targets are grouped by file (the parameter and path once, then ~45 B per
 * instance), so a part stays under ~250 KB whatever the names' lengths.
 */
export function partItems(rolloutId: string, parts: PlanPart[], expiresAt: number): Item[] {
  return parts.map((p) => ({
    ...partKey(rolloutId, p.part),
    type: 'part',
    part: p.part,
    chunks: p.chunks,
    unreachable: byFile(p.unreachable),
    expiresAt,
  }));
}

interface UnreachableOfFile {
  parameter: string;
  path: string;
  instances: Array<{ instanceId: string; reason?: string }>;
}

function byFile(targets: readonly NewTarget[]): UnreachableOfFile[] {
  const files = new Map<string, UnreachableOfFile>();
  for (const { instanceId, parameter, path, reason } of targets) {
    const key = JSON.stringify([parameter, path]);
    const file = files.get(key) ?? { parameter, path, instances: [] };
    file.instances.push(reason === undefined ? { instanceId } : { instanceId, reason });
    files.set(key, file);
  }
  return [...files.values()];
}

function fromFiles(files: readonly UnreachableOfFile[]): NewTarget[] {
  return files.flatMap(({ parameter, path, instances }) =>
    instances.map(({ instanceId, reason }) => ({
      instanceId,
      parameter,
      path,
      status: 'Unreachable' as const,
      ...(reason === undefined ? {} : { reason }),
    })),
  );
}

function toPart(item: Item): PartRecord {
  return {
    part: Number(item.part),
    chunks: (item.chunks ?? []).map((c: Item) => ({
      parameter: c.parameter,
      path: c.path,
      index: Number(c.index),
      instanceIds: c.instanceIds,
      notBefore: c.notBefore,
    })),
    unreachable: fromFiles(item.unreachable ?? []),
    ...(item.recordedAt === undefined ? {} : { recordedAt: item.recordedAt }),
    ...(item.queuedAt === undefined ? {} : { queuedAt: item.queuedAt }),
  };
}

/**
 * Takes the right to record and queue one part: the part (claimed until the lease runs out),
 * `queued` (done already, or not there: nothing to do), or `busy` (another run holds a live
 * claim). One conditional write that returns the part.
 */
export async function claimPart(
  table: RolloutTable,
  rolloutId: string,
  part: number,
): Promise<PartClaim> {
  try {
    const { Attributes } = await table.db.send(
      new UpdateCommand({
        TableName: table.name,
        Key: partKey(rolloutId, part),
        UpdateExpression: 'SET claimedUntil = :until',
        ConditionExpression:
          'attribute_exists(pk) AND attribute_not_exists(queuedAt) AND (attribute_not_exists(claimedUntil) OR claimedUntil < :now)',
        ExpressionAttributeValues: { ':until': table.leaseEnd(), ':now': table.isoNow() },
        ReturnValues: 'ALL_NEW',
      }),
    );
    return toPart(Attributes as Item);
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
  }
  const item = await table.get(partKey(rolloutId, part));
  return item === undefined || item.queuedAt !== undefined ? 'queued' : 'busy';
}

/** Lets go of a claimed part that could not be queued (an error): the next delivery takes it. */
export async function releasePart(table: RolloutTable, rolloutId: string, part: number) {
  await table.conditional({
    Key: partKey(rolloutId, part),
    UpdateExpression: 'REMOVE claimedUntil',
    ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(queuedAt)',
  });
}

/**
 * Writes a claimed part's targets and planned chunks, then marks it recorded. Only before that
 * mark may they be written (nothing of the part is queued yet, so nothing is overwritten that
 * was sent); after it a run only queues them.
 */
export async function recordPart(
  table: RolloutTable,
  rolloutId: string,
  part: PartRecord,
): Promise<void> {
  const at = table.isoNow();
  const expiresAt = table.expiry();
  const pending = part.chunks.flatMap((c) =>
    c.instanceIds.map((instanceId) => ({
      instanceId,
      parameter: c.parameter,
      path: c.path,
      status: 'Pending' as const,
    })),
  );
  const chunks: SendChunk[] = part.chunks.map(({ notBefore: _, ...c }) => c);
  await table.batchPut([
    ...[...pending, ...part.unreachable].map((t) => newTargetItem(rolloutId, t, at, expiresAt)),
    ...chunkItems(rolloutId, chunks, expiresAt),
  ]);
  await table.conditional({
    Key: partKey(rolloutId, part.part),
    UpdateExpression: 'SET recordedAt = :at',
    ConditionExpression: 'attribute_exists(pk)',
    ExpressionAttributeValues: { ':at': table.isoNow() },
  });
}

/**
 * Marks a part queued and counts it on the rollout: the number of parts queued so far, or
 * undefined when another run had marked it first (it counted it).
 */
export async function completePart(
  table: RolloutTable,
  rolloutId: string,
  part: number,
): Promise<number | undefined> {
  const marked = await table.conditional({
    Key: partKey(rolloutId, part),
    UpdateExpression: 'SET queuedAt = :at REMOVE claimedUntil',
    ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(queuedAt)',
    ExpressionAttributeValues: { ':at': table.isoNow() },
  });
  if (!marked) return undefined;
  const { Attributes } = await table.db.send(
    new UpdateCommand({
      TableName: table.name,
      Key: rolloutKey(rolloutId),
      UpdateExpression: 'ADD partsQueued :one',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeValues: { ':one': 1 },
      ReturnValues: 'UPDATED_NEW',
    }),
  );
  return Number(Attributes?.partsQueued ?? 0);
}

/** The parts not queued yet, in order (a resumed plan queues them again). */
export async function unqueuedParts(table: RolloutTable, rolloutId: string): Promise<number[]> {
  const items = await table.queryAll({
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :q)',
    ExpressionAttributeValues: { ':pk': `R#${rolloutId}`, ':q': 'Q#' },
    ProjectionExpression: 'part, queuedAt',
    ConsistentRead: true,
  });
  return items
    .filter((item) => item.queuedAt === undefined)
    .map((item) => Number(item.part))
    .sort((a, b) => a - b);
}
