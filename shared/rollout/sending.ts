import { chunkKey, type Item, PACE_KEY, rolloutKey, toChunk } from './items.ts';
import type { SendChunk } from './model.ts';
import { type RolloutTable, sleep } from './table.ts';

/**
 * The first sends of a rollout (RolloutStore delegates here): its planned chunks, who may send
 * one, and the pace every rollout's sends share. Each step is one conditional write; a failed
 * condition is an answer, never an error.
 */

export type ChunkClaim = 'claimed' | 'sent' | 'busy';

/** The planned chunks as items to put with the rollout's targets (nothing is sent yet). */
export function chunkItems(rolloutId: string, chunks: SendChunk[], expiresAt: number): Item[] {
  return chunks.map((c) => ({
    ...chunkKey(rolloutId, c),
    type: 'chunk',
    parameter: c.parameter,
    path: c.path,
    index: c.index,
    instanceIds: c.instanceIds,
    ...(c.stage === undefined ? {} : { stage: c.stage }),
    expiresAt,
  }));
}

/** Every planned chunk of the rollout, in key order. */
export async function plannedChunks(table: RolloutTable, rolloutId: string): Promise<SendChunk[]> {
  const items = await table.queryAll({
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :s)',
    ExpressionAttributeValues: { ':pk': `R#${rolloutId}`, ':s': 'S#' },
    ConsistentRead: true,
  });
  return items.map(toChunk);
}

/**
 * Takes the right to send one chunk: `claimed` (until the lease runs out), `sent` (its command
 * is recorded: nothing to do), or `busy` (another worker holds a live claim).
 */
export async function claimChunk(
  table: RolloutTable,
  rolloutId: string,
  chunk: Pick<SendChunk, 'path' | 'index'>,
): Promise<ChunkClaim> {
  const claimed = await table.conditional({
    Key: chunkKey(rolloutId, chunk),
    UpdateExpression: 'SET claimedUntil = :until',
    ConditionExpression:
      'attribute_exists(pk) AND attribute_not_exists(sentAt) AND (attribute_not_exists(claimedUntil) OR claimedUntil < :now)',
    ExpressionAttributeValues: { ':until': table.leaseEnd(), ':now': table.isoNow() },
  });
  if (claimed) return 'claimed';
  const item = await table.get(chunkKey(rolloutId, chunk));
  // A chunk that is not there belongs to a rollout that no longer exists: nothing to send.
  return item === undefined || item.sentAt !== undefined ? 'sent' : 'busy';
}

/** Marks a claimed chunk done: its commands (if any) are recorded. */
export async function markChunkSent(
  table: RolloutTable,
  rolloutId: string,
  chunk: Pick<SendChunk, 'path' | 'index'>,
  commandIds: string[],
): Promise<void> {
  await table.conditional({
    Key: chunkKey(rolloutId, chunk),
    UpdateExpression: 'SET sentAt = :at, commandIds = :ids REMOVE claimedUntil',
    ConditionExpression: 'attribute_exists(pk)',
    ExpressionAttributeValues: { ':at': table.isoNow(), ':ids': commandIds },
  });
}

/** Lets go of a chunk that sent nothing (SSM was throttling): the next delivery sends it. */
export async function releaseChunk(
  table: RolloutTable,
  rolloutId: string,
  chunk: Pick<SendChunk, 'path' | 'index'>,
): Promise<void> {
  await table.conditional({
    Key: chunkKey(rolloutId, chunk),
    UpdateExpression: 'REMOVE claimedUntil',
    ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(sentAt)',
  });
}

/**
 * Records that every unsent chunk is queued: from here on the workers send and no run of the
 * plan does anything more. The first-send lease runs until at least `sendingUntil` (the last
 * chunk's turn plus a lease), so the sweep never calls a chunk waiting its turn "never sent".
 */
export async function markQueued(
  table: RolloutTable,
  rolloutId: string,
  chunks: number,
  sendingUntil: Date,
): Promise<void> {
  // The lease only moves forward: a throttled chunk, or a part queued late, may have moved it
  // out further already.
  const moved = await table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression: 'SET queuedChunks = :n, sendingUntil = :until',
    ConditionExpression:
      'attribute_exists(pk) AND (attribute_not_exists(sendingUntil) OR sendingUntil < :until)',
    ExpressionAttributeValues: { ':n': chunks, ':until': sendingUntil.toISOString() },
  });
  if (moved) return;
  await table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression: 'SET queuedChunks = :n',
    ConditionExpression: 'attribute_exists(pk)',
    ExpressionAttributeValues: { ':n': chunks },
  });
}

/**
 * Moves the first-send lease out to at least `until` (a chunk throttled by SSM went back to the
 * queue): the sweep never calls a chunk still on its way "never sent".
 */
export async function extendSending(
  table: RolloutTable,
  rolloutId: string,
  until: Date,
): Promise<void> {
  await table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression: 'SET sendingUntil = :until',
    ConditionExpression:
      'attribute_exists(pk) AND (attribute_not_exists(sendingUntil) OR sendingUntil < :until)',
    ExpressionAttributeValues: { ':until': until.toISOString() },
  });
}

// Optimistic updates of the one pace item lost to another writer before giving up.
const PACE_ROUNDS = 8;

/**
 * Reserves `seconds` of the shared send pace, after every earlier reservation (of any rollout):
 * returns when the reservation starts. The pace item holds the instant the last reservation
 * ends (generic cell rate algorithm); an idle pace starts now. One read and one conditional
 * write, again if another reservation came in between. Throws the SDK error, or after
 * PACE_ROUNDS lost races.
 */
export async function reservePace(table: RolloutTable, seconds: number): Promise<Date> {
  for (let round = 0; round < PACE_ROUNDS; round++) {
    const item = await table.get(PACE_KEY);
    const now = table.clock().getTime();
    const freeAt = typeof item?.freeAt === 'number' ? item.freeAt : undefined;
    const start = Math.max(now, freeAt ?? 0);
    const ok = await table.conditional({
      Key: PACE_KEY,
      UpdateExpression: 'SET freeAt = :end, expiresAt = :expires',
      ConditionExpression:
        freeAt === undefined ? 'attribute_not_exists(freeAt)' : 'freeAt = :previous',
      ExpressionAttributeValues: {
        ':end': start + Math.round(seconds * 1000),
        ':expires': table.expiry(),
        ...(freeAt === undefined ? {} : { ':previous': freeAt }),
      },
    });
    if (ok) return new Date(start);
    // Another planner reserved in between: back off a little, with jitter, and read again.
    await sleep(Math.random() * 50 * 2 ** round);
  }
  throw new Error(`could not reserve the send pace after ${PACE_ROUNDS} tries`);
}
