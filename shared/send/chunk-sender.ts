import { filesForEnvironment } from '../config.ts';
import { RolloutBusyError } from '../errors.ts';
import type { SendChunkMessage } from '../messages/retry.ts';
import { logger } from '../platform/powertools.ts';
import { abandonReason, type Transition } from '../rollout/model.ts';
import { delayUntil, retryOrFail } from '../rollout/policy.ts';
import { LEASE_SECONDS } from '../rollout/store.ts';
import {
  type FailedChunk,
  isTransient,
  type SentChunk,
  sendInChunks,
  withPin,
} from './commands.ts';
import type { FanOutDeps } from './fanout.ts';
import { newerChange } from './holds.ts';
import { isDue } from './plan.ts';

export interface ChunkOutcome {
  result: 'sent' | 'already-sent' | 'later' | 'requeued' | 'failed';
  sent: SentChunk[];
  failed: FailedChunk[];
}

/** A throttled chunk comes back after this long (times its re-queues so far). */
const THROTTLED_RETRY_SECONDS = 15;
// 15 + 30 + … + 120 s of SSM throttling before the chunk's targets use up their first attempt.
const MAX_REQUEUES = 8;

/**
 * Sends one planned chunk of a rollout's first attempts, at its turn: claims it (so a
 * redelivered message or a second worker never sends it twice), one SendCommand (a second for
 * the rest when SSM refuses a few ids), records each command, then marks the chunk sent.
 * Early (its turn is further away than SQS could delay it): queued again. Throttled: let go and
 * queued again a little later, no attempt used. Refused for any other reason: the targets go to
 * their next attempt like any failed one. Throws RolloutBusyError while another worker holds
 * the chunk (SQS brings the message back), and the SDK error if the store cannot be written.
 */
export async function sendPlannedChunk(
  deps: FanOutDeps,
  message: SendChunkMessage,
): Promise<ChunkOutcome> {
  const { rolloutId } = message;
  const now = deps.ledger.now();
  if (!isDue(message.notBefore, now)) {
    await deps.ledger.queueMessages([{ body: message, delay: delayUntil(message.notBefore, now) }]);
    return { result: 'later', sent: [], failed: [] };
  }
  const claim = await deps.store.claimChunk(rolloutId, message);
  if (claim === 'sent') return { result: 'already-sent', sent: [], failed: [] };
  if (claim === 'busy') throw new RolloutBusyError(rolloutId);
  // A pinned chunk of a staged rollout that was ended, or that a newer change overtook, must
  // not write its older version any more.
  const overtaken = message.version === undefined ? undefined : await overtakenBy(deps, rolloutId);
  if (overtaken !== undefined) {
    return closeUnsent(deps, message, { unsent: true, to: 'Superseded', reason: overtaken });
  }

  const mapped = filesForEnvironment(deps.config, message.environment).find(
    (f) => f.parameter === message.parameter && f.path === message.path,
  );
  const file =
    mapped === undefined ? undefined : withPin(mapped, message.version, message.forward === true);
  if (file === undefined) {
    const stderr = `${message.parameter} → ${message.path} is no longer in custom.fanout`;
    return closeUnsent(deps, message, { to: 'Failed', lastError: { status: 'NotMapped', stderr } });
  }

  const { sent, failed } = await sendInChunks(deps.ssm, {
    documentName: deps.documentName,
    file,
    instanceIds: message.instanceIds,
    rolloutId,
    rollout: deps.config.rollout,
    ...(deps.outputLogGroup === undefined ? {} : { outputLogGroup: deps.outputLogGroup }),
    ...(message.alarm === undefined ? {} : { alarm: message.alarm }),
    onSent: (part) =>
      deps.store.recordCommand(rolloutId, {
        commandId: part.commandId,
        parameter: part.parameter,
        path: part.path,
        attempt: 1,
        instanceIds: part.instanceIds,
      }),
  });
  const requeues = (message.requeues ?? 0) + 1;
  if (
    sent.length === 0 &&
    failed.every((f) => isTransient(f.error.name)) &&
    requeues <= MAX_REQUEUES
  ) {
    // SSM said nothing about the instances: let go and come back, no attempt used.
    const delay = THROTTLED_RETRY_SECONDS * requeues;
    await deps.store.releaseChunk(rolloutId, message);
    await deps.store.extendSending(
      rolloutId,
      new Date(now.getTime() + (delay + LEASE_SECONDS) * 1000),
    );
    await deps.ledger.queueMessages([{ body: { ...message, requeues }, delay }]);
    logger.warn('chunk throttled by SSM; queued again', {
      rolloutId,
      path: message.path,
      requeues,
    });
    return { result: 'requeued', sent: [], failed: [] };
  }
  await deps.store.markChunkSent(
    rolloutId,
    message,
    sent.map((part) => part.commandId),
  );
  await deps.ledger.record(rolloutId, sendFailures(failed, deps));
  return { result: failed.length === 0 ? 'sent' : 'failed', sent, failed };
}

/** A refused first attempt is retried like any other failed attempt, while attempts remain. */
export function sendFailures(failed: FailedChunk[], deps: Pick<FanOutDeps, 'ledger' | 'config'>) {
  const now = deps.ledger.now();
  // One backoff for all: a refused chunk is retried as one chunk, not as 50 single retries.
  const jitter = Math.random();
  return failed.flatMap((chunk): Transition[] => {
    const lastError = {
      status: 'SendCommandFailed',
      stderr: `${chunk.error.name}: ${chunk.error.message}`,
    };
    return chunk.instanceIds.map((instanceId) =>
      retryOrFail(
        { instanceId, parameter: chunk.parameter, path: chunk.path, fromAttempt: 1 },
        lastError,
        deps.config.retry,
        now,
        () => jitter,
      ),
    );
  });
}

/**
 * Why a staged rollout's chunk must not go out any more (the rollout was abandoned, or a change
 * to a newer version started since), or undefined. Throws the SDK error.
 */
async function overtakenBy(deps: FanOutDeps, rolloutId: string): Promise<string | undefined> {
  const rollout = await deps.store.getRollout(rolloutId);
  const stages = rollout?.stages;
  if (rollout === undefined || stages === undefined) return undefined;
  if (stages.phase === 'Abandoned') return abandonReason(stages);
  const newer = await newerChange(deps.store, rollout);
  return newer === undefined ? undefined : `superseded by the change to v${newer}`;
}

/**
 * Ends a claimed chunk's targets without sending it (`end` says how), then marks the chunk sent
 * with no command, so no worker sends it after this. Throws the SDK error.
 */
async function closeUnsent(
  deps: FanOutDeps,
  message: SendChunkMessage,
  end:
    | { to: 'Superseded'; reason: string; unsent: true }
    | { to: 'Failed'; lastError: { status: string; stderr: string } },
): Promise<ChunkOutcome> {
  await deps.ledger.record(
    message.rolloutId,
    message.instanceIds.map(
      (instanceId): Transition => ({
        instanceId,
        parameter: message.parameter,
        path: message.path,
        fromAttempt: 1,
        ...end,
      }),
    ),
  );
  await deps.store.markChunkSent(message.rolloutId, message, []);
  return { result: 'failed', sent: [], failed: [] };
}
