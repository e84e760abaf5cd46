import type { EC2Client } from '@aws-sdk/client-ec2';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { sendInChunks } from './commands.ts';
import { type FanoutConfig, filesForEnvironment } from './config.ts';
import { resolveTargets } from './fleet.ts';
import { logger } from './powertools.ts';
import { applyThenQueueRetries, retryOrFail } from './retries.ts';
import type { LastError, RolloutStore, Transition } from './rollouts.ts';
import type { RetryMessage } from './schemas/command-status.ts';
import { type SettlementDeps, settleAndAlert } from './settlement.ts';

export interface RetrierDeps extends SettlementDeps {
  ec2: EC2Client;
  ssm: SSMClient;
  sqs: SQSClient;
  store: RolloutStore;
  config: FanoutConfig;
  documentName: string;
  outputLogGroup?: string;
  retryQueueUrl: string;
}

/** Another run holds this attempt's claim; retry the message later. */
export class RetryBusyError extends Error {
  override name = 'RetryBusyError';
  constructor(rolloutId: string, instanceId: string, attempt: number) {
    super(`attempt ${attempt} of ${instanceId} in ${rolloutId} is claimed by another run`);
  }
}

export type RetryResult = 'sent' | 'stale' | 'superseded' | 'unreachable' | 'requeued' | 'failed';

/**
 * Sends a target its next attempt, unless it has moved on (a duplicate message: `stale`), a
 * newer rollout of the same parameter already targets the instance (`superseded`), or the
 * instance is gone (`unreachable`). An instance that is running but not reachable right now,
 * or a send that fails, uses up the attempt and queues the next one (`requeued`), or fails the
 * target when none is left (`failed`). Throws the SDK error when the store cannot be read or written.
 */
export async function retryTarget(deps: RetrierDeps, message: RetryMessage): Promise<RetryResult> {
  const { rolloutId, instanceId, parameter, attempt } = message;
  const target = await deps.store.getTarget(rolloutId, instanceId, parameter);
  if (target !== undefined && target.status === 'Pending' && target.attempt < attempt) {
    // The tracker queues a retry before it commits the move to that attempt: this one came
    // early. Let SQS bring it back rather than drop it as stale.
    throw new RetryBusyError(rolloutId, instanceId, attempt);
  }
  if (
    target === undefined ||
    target.status !== 'Pending' ||
    target.attempt !== attempt ||
    target.commandId !== undefined
  ) {
    // Settle anyway: an earlier run may have moved the target, then failed to alert.
    await settleAndAlert(deps, rolloutId);
    return 'stale';
  }
  const base = { instanceId, parameter, fromAttempt: attempt };
  const finish = async (transition: Transition, result: RetryResult) => {
    await deps.store.apply(rolloutId, [transition]);
    await settleAndAlert(deps, rolloutId);
    return result;
  };

  const newer = await deps.store.newerRolloutTargeting(parameter, rolloutId, instanceId);
  if (newer !== undefined) {
    logger.info('retry skipped: a newer rollout targets the instance', {
      rolloutId,
      instanceId,
      newer,
    });
    return finish({ ...base, to: 'Superseded', reason: `superseded by ${newer}` }, 'superseded');
  }

  const rollout = await deps.store.getRollout(rolloutId);
  const file =
    rollout === undefined
      ? undefined
      : filesForEnvironment(deps.config, rollout.environment).find(
          (f) => f.parameter === parameter && f.path === target.path,
        );
  if (rollout === undefined || file === undefined) {
    return finish(
      {
        ...base,
        to: 'Failed',
        lastError: {
          status: 'NotMapped',
          stderr: `${parameter} → ${target.path} is no longer in custom.fanout`,
        },
      },
      'failed',
    );
  }
  const targets = await resolveTargets(deps, {
    tagKey: deps.config.tagKey,
    environment: rollout.environment,
    instanceIds: [instanceId],
  });
  const unreachable = targets.unreachable[0];
  if (targets.reachable.length === 0 && unreachable === undefined) {
    // No longer running with the environment's tag: terminated, stopped or re-tagged.
    return finish({ ...base, to: 'Unreachable', reason: 'NotRunningInEnvironment' }, 'unreachable');
  }
  if (unreachable !== undefined) {
    return retryLater(deps, message, { status: `Unreachable: ${unreachable.reason}` }, finish);
  }

  if (!(await deps.store.claimAttempt(rolloutId, instanceId, parameter, attempt))) {
    // Another run claimed this attempt and has not recorded a command: it is sending now, or
    // it stopped. Come back after its claim has run out (SQS redelivers this message).
    throw new RetryBusyError(rolloutId, instanceId, attempt);
  }
  const { sent, failed } = await sendInChunks(deps.ssm, {
    documentName: deps.documentName,
    file,
    instanceIds: [instanceId],
    rolloutId,
    attempt,
    rollout: deps.config.rollout,
    ...(deps.outputLogGroup === undefined ? {} : { outputLogGroup: deps.outputLogGroup }),
  });
  const commandId = sent[0]?.commandId;
  if (commandId === undefined) {
    const error = failed[0]?.error;
    return retryLater(
      deps,
      message,
      { status: 'SendCommandFailed', stderr: `${error?.name}: ${error?.message}` },
      finish,
    );
  }
  await deps.store.recordAttemptCommand(rolloutId, instanceId, parameter, attempt, commandId);
  logger.info('retry sent', { rolloutId, instanceId, parameter, attempt, commandId });
  return 'sent';
}

/** Uses up this attempt without a command: queue the next one, or fail if it was the last. */
async function retryLater(
  deps: RetrierDeps,
  message: RetryMessage,
  lastError: LastError,
  finish: (t: Transition, r: RetryResult) => Promise<RetryResult>,
): Promise<RetryResult> {
  const transition = retryOrFail(
    { instanceId: message.instanceId, parameter: message.parameter, fromAttempt: message.attempt },
    lastError,
    deps.config.retry.maxAttempts,
  );
  if (transition.to === 'Failed') return finish(transition, 'failed');
  await applyThenQueueRetries(deps, deps.config.retry, message.rolloutId, [transition]);
  await settleAndAlert(deps, message.rolloutId);
  return 'requeued';
}
