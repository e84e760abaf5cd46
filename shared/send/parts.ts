import { RolloutBusyError } from '../errors.ts';
import type { PartMessage } from '../messages/retry.ts';
import { logger } from '../platform/powertools.ts';
import { type NewTarget, type PlanPart, planChunks, type Rollout } from '../rollout/model.ts';
import { delayUntil } from '../rollout/policy.ts';
import type { PartRecord } from '../rollout/store.ts';
import type { FanOutDeps } from './fanout.ts';
import { splitIntoParts, type Turn } from './plan.ts';
import {
  leaseAfter,
  type QueuedTurns,
  queueTurns,
  reserveTurns,
  SENT_BY_PLANNER,
} from './turns.ts';

/**
 * A large rollout planned in parts, so that no invocation's work grows with the fleet:
 * - the planner resolves the fleet, reserves every chunk's turn in the shared pace, records the
 *   rollout with all its counts and one part item per ~`planPartTargets` targets, queues a
 *   message for every part but the first, and records and sends the first itself (only the
 *   first two chunks, so its first command does not wait for a thousand target writes);
 * - a send worker records a part's targets and chunks and queues its sends at their turns;
 * - the part that completes the set marks the rollout queued (the plan is done).
 * The first commands go out while later parts are still being written. A run that stops is
 * resumed exactly: a part recorded is never rewritten, only queued again (the chunk claims keep
 * a chunk queued twice from being sent twice); a resumed plan queues only the parts not queued.
 */

export const partMessage = (rolloutId: string, part: number): PartMessage => ({
  kind: 'part',
  rolloutId,
  part,
});

/**
 * Plans a Creating rollout (whose lease this run holds) in parts and queues them; records and
 * queues the first part here. Throws the SDK error.
 */
export async function planInParts(
  deps: FanOutDeps,
  rolloutId: string,
  targets: NewTarget[],
): Promise<QueuedTurns> {
  const parts = splitIntoParts(
    await reserveTurns(deps, planChunks(targets)),
    targets.filter((t) => t.status === 'Unreachable'),
    deps.config.rollout.planPartTargets,
    // The planner's own part is only the chunks it sends itself: its first command goes out
    // without waiting for a thousand target writes; the workers write the rest meanwhile.
    SENT_BY_PLANNER,
  );
  // Another run made it meanwhile (this one outlived its lease): its parts stand.
  if (!(await deps.store.finishCreatingInParts(rolloutId, targets, parts))) {
    throw new RolloutBusyError(rolloutId);
  }
  // Each part is written shortly before its first turn, not all at once: the writes of a large
  // rollout spread over its pace instead of crowding its table partition (R#<rollout>).
  const now = deps.ledger.now();
  await deps.ledger.queueMessages(
    parts.slice(1).map((p) => ({
      body: partMessage(rolloutId, p.part),
      delay: Math.max(0, delayUntil(firstTurn(p) ?? now, now) - PART_LEAD_SECONDS),
    })),
  );
  const first = await queuePart(deps, rolloutId, 0);
  return { ...first, queued: first.queued + parts.length - 1 };
}

// A part is queued this long before its first turn, to be written in time.
const PART_LEAD_SECONDS = 60;
// A part whose first turn passed longer ago than this (its message came late: a worker failed,
// or the sweep resumed the plan) takes new turns rather than send its chunks all at once.
const LATE_MS = 10_000;

const firstTurn = (part: Pick<PlanPart, 'chunks'>) => {
  const first = part.chunks[0]?.notBefore;
  return first === undefined ? undefined : new Date(first);
};

/**
 * The part's chunks and their turns: as planned, or, for a part queued late, new turns after
 * every send reserved so far (its planned turns have passed; sent together, its instances would
 * all fetch at once and be throttled).
 */
async function turnsOf(deps: FanOutDeps, part: PartRecord): Promise<Turn[]> {
  const planned = part.chunks.map(({ notBefore, ...chunk }) => ({ chunk, notBefore }));
  const first = firstTurn(part);
  const now = deps.ledger.now().getTime();
  if (first === undefined || now - first.getTime() <= LATE_MS) return planned;
  logger.warn('part queued late: its chunks take new turns in the pace', {
    part: part.part,
    lateSeconds: Math.round((now - first.getTime()) / 1000),
  });
  return reserveTurns(
    deps,
    planned.map((t) => t.chunk),
  );
}

/**
 * Records one part's targets and chunks (unless recorded already) and queues its sends; the
 * first few due now are sent here. Nothing to do for a part already queued. Throws
 * RolloutBusyError while another run holds the part, and the SDK error.
 */
export async function queuePart(
  deps: FanOutDeps,
  rolloutId: string,
  part: number,
): Promise<QueuedTurns> {
  const nothing: QueuedTurns = { commands: [], failedChunks: [], queued: 0 };
  const claim = await deps.store.claimPart(rolloutId, part);
  if (claim === 'queued') return nothing;
  if (claim === 'busy') throw new RolloutBusyError(rolloutId);
  try {
    const rollout = await deps.store.getRollout(rolloutId);
    if (rollout?.parts === undefined) return nothing;
    if (claim.recordedAt === undefined) await deps.store.recordPart(rolloutId, claim);
    const turns = await turnsOf(deps, claim);
    const queued = await queueTurns(deps, { ...rollout, pins: rollout.pins ?? {} }, turns);
    // The sweep calls a chunk "never sent" only once the lease is over: it covers these turns
    // (in turn order, planned or new).
    const last = turns.at(-1)?.notBefore;
    if (last !== undefined) await deps.store.extendSending(rolloutId, leaseAfter(last));
    const done = await deps.store.completePart(rolloutId, part);
    if (done !== undefined && done >= rollout.parts.count) await planQueued(deps, rollout);
    return queued;
  } catch (error) {
    // Let the next delivery take it at once rather than after the claim's lease.
    await deps.store.releasePart(rolloutId, part).catch(() => undefined);
    throw error;
  }
}

/**
 * Resumes a plan in parts that stopped (under the caller's lease): queues the parts not queued
 * yet, or, when every part is, marks the plan done. Returns the parts queued. Throws the SDK
 * error.
 */
export async function requeueParts(deps: FanOutDeps, rollout: Rollout): Promise<number> {
  const parts = await deps.store.unqueuedParts(rollout.rolloutId, rollout.parts?.count ?? 0);
  if (parts.length === 0) {
    await planQueued(deps, rollout);
    return 0;
  }
  await deps.ledger.queueMessages(
    parts.map((p) => ({ body: partMessage(rollout.rolloutId, p), delay: 0 })),
  );
  return parts.length;
}

/**
 * Every part is queued: the plan is done, with the first-send lease until at least the last
 * planned turn plus a lease (each part moved it out over its own turns already). It may settle
 * now: with nothing to send (every instance unreachable), or every target over before the last
 * part of unreachable ones was written.
 */
async function planQueued(deps: FanOutDeps, rollout: Rollout): Promise<void> {
  const parts = rollout.parts;
  if (parts === undefined) return;
  await deps.store.markQueued(rollout.rolloutId, parts.chunks, leaseAfter(parts.lastTurn));
  await deps.ledger.record(rollout.rolloutId, []);
}
