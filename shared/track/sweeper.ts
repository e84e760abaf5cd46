import type { SweepMessage } from '../messages/sweep.ts';
import { logger } from '../platform/powertools.ts';
import { firstAttemptCommands, type Target, type Transition, targetId } from '../rollout/model.ts';
import { attemptDeadline, mayBeSendingStill, retryOrFail } from '../rollout/policy.ts';
import { observeTargets, type TrackerDeps } from './tracker.ts';

export type SweepResult = 'early' | 'done' | 'again';

/**
 * One sweep of one rollout (see SweepMessageSchema): the safety net that makes "nothing stays
 * pending silently" true. For each pending target it asks Run Command about the current
 * attempt's command; a target whose attempt is past its deadline with no final status, or that
 * nobody is sending (no retry waiting out its delay, no live claim, no sending lease), uses up
 * its attempt. What it observed goes to the ledger like any other observation; a settled
 * rollout whose alert is still owed gets it sent. It looks again until the rollout is settled
 * and its alert is out. Throws SDK errors, so the message is retried.
 */
export async function sweepRollout(deps: TrackerDeps, sweep: SweepMessage): Promise<SweepResult> {
  const { ledger, store } = deps;
  const now = ledger.now();
  if (now.getTime() < Date.parse(sweep.due)) {
    await ledger.scheduleSweep(sweep.rolloutId, new Date(sweep.due), sweep.round);
    return 'early';
  }
  let loaded = await store.load(sweep.rolloutId);
  if (loaded === undefined) return 'done';
  if (
    loaded.rollout.state === 'Creating' &&
    !mayBeSendingStill({ attempt: 1 }, loaded.rollout, now)
  ) {
    // Its creator stopped before the targets were all written, and no run took over (a resync
    // is not redelivered): count what was written; what was never sent is retried below.
    logger.warn('rollout left half-created; finishing it', { rolloutId: sweep.rolloutId });
    await store.finishCreating(sweep.rolloutId, []);
    loaded = (await store.load(sweep.rolloutId)) ?? loaded;
  }
  const { rollout, targets, commands } = loaded;

  const transitions: Transition[] = [];
  const pending = targets.filter((t) => t.status === 'Pending');
  const firstCommand = firstAttemptCommands(commands);
  const commandOf = (t: Target) =>
    t.commandId ?? (t.attempt === 1 ? firstCommand.get(targetId(t)) : undefined);
  const overdue = (t: Target) => now.getTime() > attemptDeadline(t, rollout, deps.config);
  const jitter = Math.random(); // one backoff for the sweep's retries: they go out as chunks
  const lost = (t: Target, status: string, stderr: string) =>
    retryOrFail(
      { instanceId: t.instanceId, parameter: t.parameter, path: t.path, fromAttempt: t.attempt },
      { status, stderr },
      deps.config.retry,
      now,
      () => jitter,
    );

  // 1. Targets with a command: ask Run Command, as if their status events had arrived.
  const sent = pending.flatMap((t) => {
    const commandId = commandOf(t);
    return commandId === undefined ? [] : [{ target: t, attempt: t.attempt, commandId }];
  });
  if (sent.length > 0) {
    const observed = await observeTargets(deps, rollout.rolloutId, sent);
    transitions.push(...observed.transitions);
    const unfinished = new Set(observed.unfinished.map(targetId));
    for (const t of pending.filter((p) => unfinished.has(targetId(p)) && overdue(p))) {
      transitions.push(
        lost(t, 'NoFinalStatus', 'Run Command reported no final status by the attempt deadline'),
      );
    }
  }
  // 2. Targets with no command that nobody can still be sending.
  for (const t of pending) {
    if (commandOf(t) !== undefined || mayBeSendingStill(t, rollout, now)) continue;
    transitions.push(lost(t, 'NeverSent', 'no command was recorded for this attempt'));
  }
  if (transitions.length > 0) {
    logger.info('sweep observed targets', {
      rolloutId: rollout.rolloutId,
      transitions: transitions.length,
    });
  }

  // 3. The ledger commits, queues retries, settles and alerts; look again while not done.
  await ledger.record(rollout.rolloutId, transitions);
  const after = await store.getRollout(rollout.rolloutId);
  if (after === undefined || isDone(after)) return 'done';
  await ledger.sweepAgain(sweep, nextLook(await store.load(rollout.rolloutId), deps, now));
  return 'again';
}

function isDone(rollout: { state: string; alert: string }): boolean {
  return rollout.state === 'Settled' && (rollout.alert === 'None' || rollout.alert === 'Sent');
}

/** The soonest instant something of the rollout can need the sweep: a deadline or a retry. */
function nextLook(
  loaded: Awaited<ReturnType<TrackerDeps['store']['load']>>,
  deps: TrackerDeps,
  now: Date,
): number {
  if (loaded === undefined) return now.getTime();
  const times = loaded.targets
    .filter((t) => t.status === 'Pending')
    .map((t) => attemptDeadline(t, loaded.rollout, deps.config));
  // A settled rollout whose alert is not out yet: after the current claim has run out.
  if (loaded.rollout.alertClaimUntil !== undefined) {
    times.push(Date.parse(loaded.rollout.alertClaimUntil));
  }
  const future = times.filter((t) => t > now.getTime());
  return future.length > 0 ? Math.min(...future) : now.getTime();
}
