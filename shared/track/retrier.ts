import type { SQSClient } from '@aws-sdk/client-sqs';
import { filesForEnvironment } from '../config.ts';
import type { RetryMessage } from '../messages/retry.ts';
import { logger } from '../platform/powertools.ts';
import {
  abandonReason,
  type LastError,
  movesForwardOnly,
  type Rollout,
  supersedes,
  type Target,
  type TargetRef,
  TERMINATED,
  type Transition,
} from '../rollout/model.ts';
import { retryOrFail } from '../rollout/policy.ts';
import { isTransient, sendInChunks, withPin } from '../send/commands.ts';
import { resolveTargets } from '../send/fleet.ts';
import { instanceStates, type TrackerDeps } from './tracker.ts';

export interface RetrierDeps extends TrackerDeps {
  sqs: SQSClient;
  documentName: string;
  outputLogGroup?: string;
}

export type RetryResult =
  | 'sent'
  | 'stale'
  | 'superseded'
  | 'unreachable'
  | 'requeued'
  | 'failed'
  | 'busy';

// A newer rollout's target of the same file that will deliver (or has delivered) the newest value.
const DELIVERING = new Set(['Pending', 'Success', 'Unchanged']);
/** A busy or early part of a chunk is looked at again this soon (times its re-queues so far). */
export const BUSY_RETRY_SECONDS = 15;
// 15 + 30 + … + 120 s: longer than a claim (120 s) can hold a target, before the sweep takes over.
const MAX_REQUEUES = 8;

/**
 * Sends the next attempt to a chunk of targets of one file (≤50 instances, queued together by
 * the ledger): one target read, one resolution (DescribeInstances + DescribeInstanceInformation)
 * and one SendCommand for the chunk, whatever its size. A target that has moved on is `stale`;
 * one a later rollout at no lower version delivers is `superseded`; one whose instance left the
 * environment is `unreachable` (terminated: never paged); one running but not reachable now, or
 * whose send fails, uses up the attempt (`requeued`, or `failed` when none is left). Targets
 * another run holds, or whose attempt is not committed yet, come back later in a message of
 * their own (`busy`), as do those SSM turned away with throttling (no attempt used). Every
 * outcome goes to the ledger in one record. Returns the result of each instance; throws the SDK
 * error when the store cannot be read or written.
 */
export async function retryChunk(
  deps: RetrierDeps,
  message: RetryMessage,
): Promise<Map<string, RetryResult>> {
  const { rolloutId, attempt, parameter, path } = message;
  const refs = message.instanceIds.map((instanceId) => ({ instanceId, parameter, path }));
  const targets = await deps.store.getTargets(rolloutId, refs);
  const results = new Map<string, RetryResult>();
  const state = (ref: TargetRef) => classifyTarget(targets.get(ref.instanceId), attempt);
  // Not committed yet (a copy from a commit still in flight): SQS brings it back.
  const early = refs.filter((ref) => state(ref) === 'early');
  for (const ref of refs.filter((r) => state(r) === 'stale')) results.set(ref.instanceId, 'stale');
  const due = refs.filter((ref) => state(ref) === 'due');

  const transitions: Transition[] = [];
  const jitter = Math.random(); // one backoff for the chunk: its next retry stays one chunk
  const report = (ref: TargetRef, transition: Transition, result: RetryResult) => {
    transitions.push(transition);
    results.set(
      ref.instanceId,
      transition.to === 'Failed' && result === 'requeued' ? 'failed' : result,
    );
  };
  // `unsent`: not sending it ourselves (we hold no claim), so only while nobody else sent it.
  const useUp = (ref: TargetRef, lastError: LastError, unsent = true) =>
    report(
      ref,
      retryOrFail(
        { ...ref, fromAttempt: attempt, ...(unsent ? { unsent: true as const } : {}) },
        lastError,
        deps.config.retry,
        deps.ledger.now(),
        () => jitter,
      ),
      'requeued',
    );

  const rollout = due.length === 0 ? undefined : await deps.store.getRollout(rolloutId);
  const mapped =
    rollout === undefined
      ? undefined
      : filesForEnvironment(deps.config, rollout.environment).find(
          (f) => f.parameter === parameter && f.path === path,
        );
  // A pinned rollout retries the version it pinned, never the latest.
  const pinned = rollout?.pins?.[parameter];
  // A staged rollout's retries carry its alarm like its first sends.
  const alarm = rollout?.stages?.alarms[0];
  const file =
    mapped === undefined || rollout === undefined
      ? undefined
      : withPin(mapped, pinned, movesForwardOnly(rollout));
  let toSend: TargetRef[] = [];
  if (due.length > 0 && (rollout === undefined || file === undefined)) {
    for (const ref of due) {
      report(
        ref,
        {
          ...ref,
          fromAttempt: attempt,
          to: 'Failed',
          lastError: {
            status: 'NotMapped',
            stderr: `${parameter} → ${path} is no longer in custom.fanout`,
          },
        },
        'failed',
      );
    }
  } else if (rollout?.stages?.phase === 'Abandoned') {
    // A staged rollout a newer change (or a person) ended: its pinned version must not go out
    // any more, not even to the stage it had reached.
    const reason = abandonReason(rollout.stages);
    for (const ref of due) {
      report(ref, { ...ref, fromAttempt: attempt, to: 'Superseded', reason }, 'superseded');
    }
  } else if (rollout !== undefined) {
    toSend = await notSuperseded(deps, rollout, due, (ref, newer) =>
      report(
        ref,
        { ...ref, fromAttempt: attempt, to: 'Superseded', reason: `superseded by ${newer}` },
        'superseded',
      ),
    );
    toSend = await stillReachable(deps, rollout.environment, toSend, {
      gone: (ref, reason) =>
        report(ref, { ...ref, fromAttempt: attempt, to: 'Unreachable', reason }, 'unreachable'),
      unreachableNow: (ref, reason) => useUp(ref, { status: `Unreachable: ${reason}` }),
    });
  }

  // Claim each target's attempt: another run may hold it (sending now, or stopped).
  const claims = await Promise.all(
    toSend.map((ref) => deps.store.claimAttempt(rolloutId, ref, attempt)),
  );
  const claimed = toSend.filter((_, i) => claims[i]);
  const busy: TargetRef[] = [...early, ...toSend.filter((_, i) => !claims[i])];
  if (claimed.length > 0 && file !== undefined) {
    const { sent, failed } = await sendInChunks(deps.ssm, {
      documentName: deps.documentName,
      file,
      instanceIds: claimed.map((ref) => ref.instanceId),
      rolloutId,
      attempt,
      rollout: deps.config.rollout,
      ...(deps.outputLogGroup === undefined ? {} : { outputLogGroup: deps.outputLogGroup }),
      ...(alarm === undefined ? {} : { alarm }),
    });
    for (const chunk of sent) {
      const chunkRefs = claimed.filter((ref) => chunk.instanceIds.includes(ref.instanceId));
      await deps.store.recordAttemptCommands(rolloutId, chunkRefs, attempt, chunk.commandId);
      for (const ref of chunkRefs) results.set(ref.instanceId, 'sent');
      logger.info('retry sent', {
        rolloutId,
        parameter,
        path,
        attempt,
        commandId: chunk.commandId,
        instances: chunkRefs.length,
      });
    }
    for (const chunk of failed) {
      const chunkRefs = claimed.filter((ref) => chunk.instanceIds.includes(ref.instanceId));
      if (isTransient(chunk.error.name)) {
        // Throttled (after the SDK's adaptive retries) or a 5xx: SSM said nothing about the
        // instances, so no attempt is used; let go of the claims and come back a little later.
        await deps.store.releaseClaims(rolloutId, chunkRefs, attempt);
        busy.push(...chunkRefs);
        continue;
      }
      for (const ref of chunkRefs) {
        useUp(
          ref,
          { status: 'SendCommandFailed', stderr: `${chunk.error.name}: ${chunk.error.message}` },
          false,
        );
      }
    }
  }
  await deps.ledger.record(rolloutId, transitions);
  if (busy.length > 0) await comeBack(deps, message, busy, results);
  return results;
}

/**
 * Puts the busy part of a chunk back on the retry queue in a message of its own, a bounded
 * number of times (the message counts them); past that it is left to the sweep, which finds
 * the attempt unsent and re-queues or uses it up. The original message is then done, so a
 * busy retry never lands in the dead-letter queue. Throws the SDK error.
 */
async function comeBack(
  deps: RetrierDeps,
  message: RetryMessage,
  busy: TargetRef[],
  results: Map<string, RetryResult>,
): Promise<void> {
  const requeues = (message.requeues ?? 0) + 1;
  if (requeues > MAX_REQUEUES) {
    logger.warn('retry still busy after its re-queues; the sweep takes it from here', {
      rolloutId: message.rolloutId,
      path: message.path,
      attempt: message.attempt,
      instances: busy.length,
    });
    for (const ref of busy) results.set(ref.instanceId, 'busy');
    return;
  }
  for (const ref of busy) results.set(ref.instanceId, 'busy');
  await deps.ledger.requeueRetry(
    { ...message, instanceIds: busy.map((ref) => ref.instanceId), requeues },
    BUSY_RETRY_SECONDS * requeues,
  );
}

/** Where a target stands for a retry of `attempt`. */
function classifyTarget(target: Target | undefined, attempt: number): 'due' | 'early' | 'stale' {
  if (target === undefined || target.status !== 'Pending') return 'stale';
  if (target.attempt < attempt) return 'early';
  return target.attempt === attempt && target.commandId === undefined ? 'due' : 'stale';
}

/**
 * The targets no later rollout takes over; `superseded` is told about the others. A rollout
 * supersedes if it started after this one at no lower version and its target of the same file
 * will deliver (or delivered) it. One paged query of the parameter's rollouts since this one
 * (other instances' bootstraps filtered out), then one target read per later rollout.
 */
async function notSuperseded(
  deps: RetrierDeps,
  rollout: Rollout,
  refs: TargetRef[],
  superseded: (ref: TargetRef, by: string) => void,
): Promise<TargetRef[]> {
  if (refs.length === 0) return [];
  const [first] = refs;
  const later = (
    await deps.store.rolloutsOfParameterSince(
      first?.parameter ?? '',
      rollout.createdAt,
      refs.map((ref) => ref.instanceId),
    )
  ).filter((entry) => supersedes(entry, rollout));
  const left = new Map(refs.map((ref) => [ref.instanceId, ref]));
  for (const entry of later) {
    if (left.size === 0) break;
    const theirs = await deps.store.getTargets(entry.rolloutId, [...left.values()]);
    for (const [instanceId, target] of theirs) {
      const ref = left.get(instanceId);
      if (ref === undefined || !DELIVERING.has(target.status)) continue;
      logger.info('retry skipped: a later rollout delivers the file', {
        rolloutId: rollout.rolloutId,
        ...ref,
        newer: entry.rolloutId,
      });
      superseded(ref, entry.rolloutId);
      left.delete(instanceId);
    }
  }
  return [...left.values()];
}

/**
 * The targets whose instances are still running, tagged and reachable; the others are told
 * apart: gone from the environment (terminated: never paged; stopped or re-tagged: worth a
 * look) or running but not reachable right now. One resolution for all of them.
 */
async function stillReachable(
  deps: RetrierDeps,
  environment: string,
  refs: TargetRef[],
  tell: {
    gone: (ref: TargetRef, reason: string) => void;
    unreachableNow: (ref: TargetRef, reason: string) => void;
  },
): Promise<TargetRef[]> {
  if (refs.length === 0) return [];
  const resolved = await resolveTargets(deps, {
    tagKey: deps.config.tagKey,
    environment,
    instanceIds: refs.map((ref) => ref.instanceId),
  });
  const reachable = new Set(resolved.reachable);
  const unreachable = new Map(resolved.unreachable.map((u) => [u.instanceId, u.reason]));
  const gone = refs.filter(
    (ref) => !reachable.has(ref.instanceId) && !unreachable.has(ref.instanceId),
  );
  const states = await instanceStates(
    deps.ec2,
    gone.map((ref) => ref.instanceId),
  );
  for (const ref of gone) {
    const state = states.get(ref.instanceId);
    tell.gone(
      ref,
      state === 'terminated' || state === 'missing' ? TERMINATED : 'NotRunningInEnvironment',
    );
  }
  for (const ref of refs) {
    const reason = unreachable.get(ref.instanceId);
    if (reason !== undefined) tell.unreachableNow(ref, reason);
  }
  return refs.filter((ref) => reachable.has(ref.instanceId));
}
