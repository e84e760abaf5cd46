import { RolloutBusyError } from '../errors.ts';
import { movesForwardOnly, type SendChunk, type StageProgress } from '../rollout/model.ts';
import { delayUntil } from '../rollout/policy.ts';
import { LEASE_SECONDS } from '../rollout/table.ts';
import type { Trigger } from '../rollout/trigger.ts';
import { sendPlannedChunk } from './chunk-sender.ts';
import type { FailedChunk, SentChunk } from './commands.ts';
import type { FanOutDeps } from './fanout.ts';
import { isDue, paceSeconds, type Turn, turnsFrom } from './plan.ts';

export type { Turn };

/** Reserves the chunks' time in the pace every rollout shares: each chunk's turn in it. */
export async function reserveTurns(
  deps: Pick<FanOutDeps, 'store' | 'config'>,
  chunks: readonly SendChunk[],
): Promise<Turn[]> {
  const pace = deps.config.rollout;
  return turnsFrom(chunks, await deps.store.reservePace(paceSeconds(chunks, pace)), pace);
}

/** The first-send lease over sends up to `turn`: the sweep calls none of them "never sent". */
export const leaseAfter = (turn: string) => new Date(Date.parse(turn) + LEASE_SECONDS * 1000);

/** What the sends of a rollout carry besides the chunk (all its chunks alike). */
export interface SendContext {
  rolloutId: string;
  environment: string;
  trigger: Trigger;
  pins: Record<string, number>;
  stages?: Pick<StageProgress, 'alarms'> | undefined;
}

export interface QueuedTurns {
  /** Commands sent here (the first chunks due now). */
  commands: SentChunk[];
  failedChunks: FailedChunk[];
  /** Chunks left to the send workers' queue. */
  queued: number;
}

// Chunks whose turn is now that the planner sends itself rather than queue (constant work).
export const SENT_BY_PLANNER = 2;

/**
 * Queues each chunk's send message, delayed until its turn; the first few due now are sent here
 * at once (a bootstrap or a small rollout never waits for a queue). Throws the SDK error.
 */
export async function queueTurns(
  deps: FanOutDeps,
  context: SendContext,
  turns: readonly Turn[],
): Promise<QueuedTurns> {
  const alarm = context.stages?.alarms[0];
  const forward = movesForwardOnly({ stages: context.stages, trigger: context.trigger });
  const messages = turns.map(({ chunk: { stage: _, ...chunk }, notBefore }) => {
    const version = context.pins[chunk.parameter];
    return {
      kind: 'send' as const,
      rolloutId: context.rolloutId,
      environment: context.environment,
      ...chunk,
      ...(version === undefined ? {} : { version, ...(forward ? { forward: true as const } : {}) }),
      ...(alarm === undefined ? {} : { alarm }),
      notBefore,
    };
  });
  const now = deps.ledger.now();
  const dueNow = messages.filter((m) => isDue(m.notBefore, now)).slice(0, SENT_BY_PLANNER);
  const later = messages.filter((m) => !dueNow.includes(m));
  await deps.ledger.queueMessages(
    later.map((body) => ({ body, delay: delayUntil(body.notBefore, now) })),
  );
  const result: QueuedTurns = { commands: [], failedChunks: [], queued: later.length };
  for (const message of dueNow) {
    // Recorded and failed over exactly as a worker would; a throttled chunk goes to the queue.
    // A chunk someone else holds (a resumed plan: a worker with its earlier message, or the
    // run that stopped) is queued like the rest: whoever gets it sends it or finds it sent.
    const outcome = await sendPlannedChunk(deps, message).catch(async (error: unknown) => {
      if (!(error instanceof RolloutBusyError)) throw error;
      await deps.ledger.queueMessages([{ body: message, delay: 0 }]);
      return undefined;
    });
    if (outcome === undefined) {
      result.queued += 1;
      continue;
    }
    const { result: sent, sent: commands, failed } = outcome;
    if (sent === 'requeued') result.queued += 1;
    result.commands.push(...commands);
    result.failedChunks.push(...failed);
  }
  return result;
}
