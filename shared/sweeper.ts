import { logger } from './powertools.ts';
import { applyThenQueueRetries, retryOrFail } from './retries.ts';
import { firstAttemptCommands, type Target, targetId } from './rollouts.ts';
import { settleAndAlert } from './settlement.ts';
import { MAX_ROUNDS, queueSweep, ROUND_SECONDS, type SweepMessage } from './sweeps.ts';
import { type StatusMessage, type TrackerDeps, trackStatusEvents } from './tracker.ts';

export interface SweeperDeps extends TrackerDeps {
  statusQueueUrl: string;
  now?: () => Date;
}

export type SweepResult = 'early' | 'done' | 'again' | 'gave-up';

/**
 * One sweep of one rollout (see SweepMessageSchema). Throws SDK errors, so the message is
 * retried.
 */
export async function sweepRollout(deps: SweeperDeps, sweep: SweepMessage): Promise<SweepResult> {
  const now = deps.now?.() ?? new Date();
  if (now.getTime() < Date.parse(sweep.due)) {
    await queueSweep(deps.sqs, deps.statusQueueUrl, sweep, now);
    return 'early';
  }
  const loaded = await deps.store.load(sweep.rolloutId);
  if (loaded === undefined || loaded.rollout.state === 'Settled') return 'done';
  const pending = loaded.targets.filter((t) => t.status === 'Pending');
  if (pending.length === 0) {
    await settleAndAlert(deps, sweep.rolloutId);
    return 'done';
  }

  // 1. Targets with a command: ask Run Command, as if their status events had arrived.
  const firstCommand = firstAttemptCommands(loaded.commands);
  const commandOf = (t: Target) =>
    t.commandId ?? (t.attempt === 1 ? firstCommand.get(targetId(t)) : undefined);
  const asked = pending.flatMap((t) => {
    const commandId = commandOf(t);
    return commandId === undefined ? [] : [syntheticStatus(commandId, t.instanceId, now)];
  });
  if (asked.length > 0) await trackStatusEvents(deps, asked);

  // 2. Targets never sent, once nobody can still be sending them: retry (or fail) them.
  const leaseOver =
    loaded.rollout.sendingUntil === undefined ||
    Date.parse(loaded.rollout.sendingUntil) < now.getTime();
  const unsent = pending.filter((t) => commandOf(t) === undefined);
  if (leaseOver && unsent.length > 0) {
    const lastError = { status: 'NeverSent', stderr: 'no command was recorded for this attempt' };
    const transitions = unsent.map((t) =>
      retryOrFail(
        { instanceId: t.instanceId, parameter: t.parameter, fromAttempt: t.attempt },
        lastError,
        deps.config.retry.maxAttempts,
      ),
    );
    await applyThenQueueRetries(deps, deps.config.retry, sweep.rolloutId, transitions);
  }

  // 3. Still pending: look again later, or give up on what Run Command never finished.
  const rollout = await deps.store.getRollout(sweep.rolloutId);
  if (rollout === undefined || rollout.counts.pending === 0) {
    await settleAndAlert(deps, sweep.rolloutId);
    return 'done';
  }
  if (sweep.round + 1 < MAX_ROUNDS) {
    const due = new Date(now.getTime() + ROUND_SECONDS * 1000).toISOString();
    await queueSweep(deps.sqs, deps.statusQueueUrl, { ...sweep, due, round: sweep.round + 1 }, now);
    return 'again';
  }
  const stuck = ((await deps.store.load(sweep.rolloutId))?.targets ?? []).filter(
    (t) => t.status === 'Pending',
  );
  logger.warn('giving up on targets with no final status', {
    rolloutId: sweep.rolloutId,
    targets: stuck.length,
  });
  await deps.store.apply(
    sweep.rolloutId,
    stuck.map((t) => ({
      instanceId: t.instanceId,
      parameter: t.parameter,
      fromAttempt: t.attempt,
      to: 'Failed' as const,
      lastError: {
        status: 'NoFinalStatus',
        stderr: `Run Command never reported a final status (after ${MAX_ROUNDS} sweeps)`,
      },
    })),
  );
  await settleAndAlert(deps, sweep.rolloutId);
  return 'gave-up';
}

function syntheticStatus(commandId: string, instanceId: string, now: Date): StatusMessage {
  return {
    messageId: `sweep:${commandId}:${instanceId}`,
    event: {
      version: '0',
      id: `sweep-${commandId}-${instanceId}`,
      source: 'aws.ssm',
      'detail-type': 'EC2 Command Invocation Status-change Notification',
      account: '',
      time: now.toISOString(),
      region: '',
      resources: [],
      detail: {
        'command-id': commandId,
        'document-name': '',
        'instance-id': instanceId,
        status: 'Unknown',
      },
    },
  };
}
