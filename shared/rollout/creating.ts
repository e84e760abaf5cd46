import { PutCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { RolloutBusyError } from '../errors.ts';
import { chunk } from '../platform/chunk.ts';
import {
  counterAttributes,
  type Item,
  instanceIdsKey,
  newTargetItem,
  rolloutKey,
} from './items.ts';
import {
  countTargets,
  type NewTarget,
  type PlanPart,
  planChunks,
  type Rollout,
  type Target,
  targetId,
} from './model.ts';
import { partItems } from './parts.ts';
import { chunkItems } from './sending.ts';
import { cancellationCodes, isConditionFailure, type RolloutTable } from './table.ts';

/**
 * A rollout coming into being (RolloutStore delegates here): the rollout item written alone,
 * in state Creating, as the lock; then its targets and planned chunks (in one piece) or its
 * part items (in parts, parts.ts), and the move to InProgress with every count. Nothing of a
 * Creating rollout is queued, so a run that takes over from a creator that stopped may write it
 * again. A failed condition is an answer, never an error.
 */

export type NewRollout = Omit<Rollout, 'createdAt' | 'state' | 'alert' | 'counts'>;

// An instance restriction of up to this many ids stays on the rollout item (about 22 KB);
// a longer one (a rollback of a large staged rollout) would take the item past DynamoDB's 400 KB
// at about 19,000 ids, so it goes in items of its own, 5,000 ids (about 110 KB) each, written in
// one transaction with the rollout item. A transaction holds at most 100 items and 4 MB
// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html),
// so at most 30 pages: 150,000 instances.
const INLINE_INSTANCE_IDS = 1000;
const INSTANCE_IDS_PER_ITEM = 5000;
const MAX_INSTANCE_ID_PAGES = 30;

/** Writes the rollout item, Creating: `false` when it exists already. Throws the SDK error. */
export async function beginRollout(table: RolloutTable, rollout: NewRollout): Promise<boolean> {
  const item = (fields: NewRollout & { instanceIdPages?: number }) => ({
    ...rolloutKey(rollout.rolloutId),
    type: 'rollout',
    ...fields,
    createdAt: table.isoNow(),
    state: 'Creating',
    alert: 'None',
    ...counterAttributes(countTargets([])),
    sendingUntil: table.leaseEnd(),
    expiresAt: table.expiry(),
  });
  const { instanceIds, ...rest } = rollout;
  if (instanceIds === undefined || instanceIds.length <= INLINE_INSTANCE_IDS) {
    try {
      await table.db.send(
        new PutCommand({
          TableName: table.name,
          Item: item(rollout),
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
    return true;
  }
  const pages = chunk(instanceIds, INSTANCE_IDS_PER_ITEM);
  if (pages.length > MAX_INSTANCE_ID_PAGES) {
    throw new RangeError(
      `a rollout may be restricted to at most ${MAX_INSTANCE_ID_PAGES * INSTANCE_IDS_PER_ITEM} instances, not ${instanceIds.length}`,
    );
  }
  try {
    await table.db.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            Put: {
              TableName: table.name,
              Item: item({ ...rest, instanceIdPages: pages.length }),
              ConditionExpression: 'attribute_not_exists(pk)',
            },
          },
          ...pages.map((ids, page) => ({
            Put: {
              TableName: table.name,
              Item: {
                ...instanceIdsKey(rollout.rolloutId, page),
                type: 'instanceIds',
                instanceIds: ids,
                expiresAt: table.expiry(),
              },
            },
          })),
        ],
      }),
    );
  } catch (error) {
    const codes = cancellationCodes(error);
    if (codes?.[0] === 'ConditionalCheckFailed') return false;
    // Another run is creating the same rollout at this moment (its transaction and ours touch
    // the same items): it finishes it, as a creator whose lease is live would.
    if (codes?.includes('TransactionConflict')) {
      throw new RolloutBusyError(rollout.rolloutId);
    }
    throw error;
  }
  return true;
}

/**
 * Writes a Creating rollout's targets that are not `written` yet and its chunks planned over all
 * of them, then makes it InProgress with counts taken from every target it now holds (a staged
 * one's stage sizes too, unless `fresh`: the creator's own call, whose stages count exactly these
 * targets). Throws the SDK error.
 */
export async function finishCreating(
  table: RolloutTable,
  rollout: Rollout,
  targets: NewTarget[],
  written: Target[],
  fresh: boolean,
): Promise<void> {
  const { rolloutId } = rollout;
  const at = table.isoNow();
  const expiresAt = table.expiry();
  const have = new Set(written.map(targetId));
  const missing = targets.filter((target) => !have.has(targetId(target)));
  const all: NewTarget[] = [
    ...written.map(({ instanceId, parameter, path, status, reason, stage }) => ({
      instanceId,
      parameter,
      path,
      status: status === 'Unreachable' ? ('Unreachable' as const) : ('Pending' as const),
      ...(reason === undefined ? {} : { reason }),
      ...(stage === undefined ? {} : { stage }),
    })),
    ...missing,
  ];
  await table.batchPut([
    ...missing.map((target) => newTargetItem(rolloutId, target, at, expiresAt)),
    ...chunkItems(rolloutId, planChunks(all), expiresAt),
    ...indexItems(rollout, expiresAt),
  ]);
  // A staged rollout's stage sizes count the targets it really holds (a takeover may have
  // resolved a slightly different fleet than its creator).
  const stages =
    rollout.stages === undefined || fresh
      ? {}
      : {
          '#stages.targets': rollout.stages.targets.map(
            (_, k) => all.filter((t) => t.stage === k).length,
          ),
          '#stages.instances': rollout.stages.instances.map(
            (_, k) => new Set(all.filter((t) => t.stage === k).map((t) => t.instanceId)).size,
          ),
        };
  // false: another run finished creating it first, and its counts stand.
  await toInProgress(table, rollout, all, stages);
}

/**
 * Makes a Creating rollout InProgress planned in parts: its part items and index entries are
 * written, and its counts count every target, so it cannot settle before each part's targets
 * are recorded and over. The planner's lease is renewed (the parts' messages are queued next;
 * each part has a claim of its own, and moves the lease out over the turns it queues). False
 * when it was not Creating any more (another run made it). Throws the SDK error.
 */
export async function finishCreatingInParts(
  table: RolloutTable,
  rollout: Rollout,
  targets: NewTarget[],
  parts: PlanPart[],
): Promise<boolean> {
  const expiresAt = table.expiry();
  await table.batchPut([
    ...partItems(rollout.rolloutId, parts, expiresAt),
    ...indexItems(rollout, expiresAt),
  ]);
  const turns = parts.flatMap((p) => p.chunks.map((c) => c.notBefore)).sort();
  return toInProgress(table, rollout, targets, {
    parts: { count: parts.length, chunks: turns.length, lastTurn: turns.at(-1) ?? table.isoNow() },
    sendingUntil: table.leaseEnd(),
  });
}

/**
 * Creating → InProgress with the counts of `targets`, and these attributes set too (a name may
 * be a path under `#stages.`). False when the rollout was not Creating. Throws the SDK error.
 */
function toInProgress(
  table: RolloutTable,
  rollout: Rollout,
  targets: NewTarget[],
  more: Record<string, unknown>,
): Promise<boolean> {
  const values = { ...counterAttributes(countTargets(targets)), ...more };
  const names = Object.keys(values);
  return table.conditional({
    Key: rolloutKey(rollout.rolloutId),
    UpdateExpression: `SET #state = :inProgress, ${names.map((n, i) => `${n} = :v${i}`).join(', ')}`,
    ConditionExpression: '#state = :creating',
    ExpressionAttributeNames: {
      '#state': 'state',
      ...(names.some((n) => n.startsWith('#stages.')) ? { '#stages': 'stages' } : {}),
    },
    ExpressionAttributeValues: {
      ':inProgress': 'InProgress',
      ':creating': 'Creating',
      ...Object.fromEntries(
        names.map((name, i) => [`:v${i}`, values[name as keyof typeof values]]),
      ),
    },
  });
}

/** The rollout's entries in the parameter and environment indexes (rollouts in start order). */
function indexItems(rollout: Rollout, expiresAt: number): Item[] {
  const sk = `${rollout.createdAt}#${rollout.rolloutId}`;
  return [
    ...rollout.parameters.map((parameter) => ({ pk: `P#${parameter}`, sk })),
    { pk: `E#${rollout.environment}`, sk },
  ].map((key) => ({
    ...key,
    type: 'index',
    rolloutId: rollout.rolloutId,
    createdAt: rollout.createdAt,
    triggerType: rollout.trigger.type,
    ...(rollout.trigger.type === 'bootstrap' ? { bootstrapOf: rollout.trigger.instanceId } : {}),
    ...(rollout.version === undefined ? {} : { version: rollout.version }),
    expiresAt,
  }));
}
