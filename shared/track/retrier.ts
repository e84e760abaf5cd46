import type { SQSClient } from '@aws-sdk/client-sqs';
import { filesForEnvironment } from '../config.ts';
import { RetryBusyError } from '../errors.ts';
import type { RetryMessage } from '../messages/retry.ts';
import { logger } from '../platform/powertools.ts';
import {
  type LastError,
  type Rollout,
  supersedes,
  type TargetRef,
  TERMINATED,
  type Transition,
} from '../rollout/model.ts';
import { retryOrFail } from '../rollout/policy.ts';
import { sendInChunks } from '../send/commands.ts';
import { resolveTargets } from '../send/fleet.ts';
import { instanceStates, type TrackerDeps } from './tracker.ts';

export interface RetrierDeps extends TrackerDeps {
  sqs: SQSClient;
  documentName: string;
  outputLogGroup?: string;
}

export type RetryResult = 'sent' | 'stale' | 'superseded' | 'unreachable' | 'requeued' | 'failed';

// A newer rollout's target of the same file that will deliver (or has delivered) the newest value.
const DELIVERING = new Set(['Pending', 'Success', 'Unchanged']);

/**
 * Sends a target its next attempt, unless it has moved on (a duplicate message: `stale`), a
 * rollout that started later at no lower version will deliver the file (`superseded`), or the
 * instance left the environment (`unreachable`). An instance that is running but not reachable
 * right now, or a send that fails, uses up the attempt (`requeued`, or `failed` when none is
 * left). Every outcome is reported to the ledger. Throws RetryBusyError when another run holds
 * the attempt, and the SDK error when the store cannot be read or written.
 */
export async function retryTarget(deps: RetrierDeps, message: RetryMessage): Promise<RetryResult> {
  const { rolloutId, attempt } = message;
  const ref: TargetRef = {
    instanceId: message.instanceId,
    parameter: message.parameter,
    path: message.path,
  };
  const target = await deps.store.getTarget(rolloutId, ref);
  if (target !== undefined && target.status === 'Pending' && target.attempt < attempt) {
    // Not committed yet (the ledger commits before it queues, so this is a copy from a commit
    // still in flight): let SQS bring it back rather than drop it as stale.
    throw new RetryBusyError(rolloutId, ref.instanceId, attempt);
  }
  if (
    target === undefined ||
    target.status !== 'Pending' ||
    target.attempt !== attempt ||
    target.commandId !== undefined
  ) {
    // Finish anyway: an earlier run may have moved the target, then stopped before settling.
    await deps.ledger.finish(rolloutId);
    return 'stale';
  }
  const rollout = await deps.store.getRollout(rolloutId);
  const report = async (transition: Transition, result: RetryResult) => {
    await deps.ledger.record(rolloutId, [transition]);
    return result;
  };
  const base = { ...ref, fromAttempt: attempt };

  const newer = rollout === undefined ? undefined : await supersedingRollout(deps, rollout, ref);
  if (newer !== undefined) {
    logger.info('retry skipped: a later rollout delivers the file', { rolloutId, ...ref, newer });
    return report({ ...base, to: 'Superseded', reason: `superseded by ${newer}` }, 'superseded');
  }

  const file =
    rollout === undefined
      ? undefined
      : filesForEnvironment(deps.config, rollout.environment).find(
          (f) => f.parameter === ref.parameter && f.path === ref.path,
        );
  if (rollout === undefined || file === undefined) {
    return report(
      {
        ...base,
        to: 'Failed',
        lastError: {
          status: 'NotMapped',
          stderr: `${ref.parameter} → ${ref.path} is no longer in custom.fanout`,
        },
      },
      'failed',
    );
  }
  const targets = await resolveTargets(deps, {
    tagKey: deps.config.tagKey,
    environment: rollout.environment,
    instanceIds: [ref.instanceId],
  });
  const unreachable = targets.unreachable[0];
  if (targets.reachable.length === 0 && unreachable === undefined) {
    // No longer a running member of the environment. Terminated (a scale-in) is normal and
    // never pages; stopped or re-tagged is worth a look.
    const state = (await instanceStates(deps.ec2, [ref.instanceId])).get(ref.instanceId);
    const reason =
      state === 'terminated' || state === 'missing' ? TERMINATED : 'NotRunningInEnvironment';
    return report({ ...base, to: 'Unreachable', reason }, 'unreachable');
  }
  if (unreachable !== undefined) {
    return useUpAttempt(deps, message, { status: `Unreachable: ${unreachable.reason}` });
  }

  if (!(await deps.store.claimAttempt(rolloutId, ref, attempt))) {
    // Another run claimed this attempt and has not recorded a command: it is sending now, or
    // it stopped. Come back after its claim has run out (SQS redelivers this message).
    throw new RetryBusyError(rolloutId, ref.instanceId, attempt);
  }
  const { sent, failed } = await sendInChunks(deps.ssm, {
    documentName: deps.documentName,
    file,
    instanceIds: [ref.instanceId],
    rolloutId,
    attempt,
    rollout: deps.config.rollout,
    ...(deps.outputLogGroup === undefined ? {} : { outputLogGroup: deps.outputLogGroup }),
  });
  const commandId = sent[0]?.commandId;
  if (commandId === undefined) {
    const error = failed[0]?.error;
    return useUpAttempt(deps, message, {
      status: 'SendCommandFailed',
      stderr: `${error?.name}: ${error?.message}`,
    });
  }
  await deps.store.recordAttemptCommand(rolloutId, ref, attempt, commandId);
  logger.info('retry sent', { rolloutId, ...ref, attempt, commandId });
  return 'sent';
}

/** Uses up this attempt without a command: the next one is queued, or the target fails. */
async function useUpAttempt(
  deps: RetrierDeps,
  message: RetryMessage,
  lastError: LastError,
): Promise<RetryResult> {
  const transition = retryOrFail(
    {
      instanceId: message.instanceId,
      parameter: message.parameter,
      path: message.path,
      fromAttempt: message.attempt,
    },
    lastError,
    deps.config.retry,
    deps.ledger.now(),
  );
  await deps.ledger.record(message.rolloutId, [transition]);
  return transition.to === 'Failed' ? 'failed' : 'requeued';
}

/**
 * A rollout of the same parameter that started after this one, at no lower version, and will
 * deliver (or delivered) the same file to the same instance; its id, or undefined. Reads every
 * such rollout (all pages), and one target of each; other instances' bootstraps are left out
 * by the query, since they never target this instance. Throws the SDK error.
 */
async function supersedingRollout(
  deps: RetrierDeps,
  rollout: Rollout,
  ref: TargetRef,
): Promise<string | undefined> {
  const later = await deps.store.rolloutsOfParameterSince(
    ref.parameter,
    rollout.createdAt,
    ref.instanceId,
  );
  for (const entry of later) {
    if (!supersedes(entry, rollout)) continue;
    const other = await deps.store.getTarget(entry.rolloutId, ref);
    if (other !== undefined && DELIVERING.has(other.status)) return entry.rolloutId;
  }
  return undefined;
}
