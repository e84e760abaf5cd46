import type { SweepMessage } from '../messages/sweep.ts';
import { logger } from '../platform/powertools.ts';
import {
  firstAttemptCommands,
  type Rollout,
  type Target,
  type Transition,
  targetId,
} from '../rollout/model.ts';
import {
  attemptDeadline,
  commandDeadline,
  mayBeSendingStill,
  retryOrFail,
} from '../rollout/policy.ts';
import { observeTargets, type TrackerDeps } from './tracker.ts';

export type SweepResult = 'early' | 'done' | 'again';

/**
 * One sweep of one rollout (see SweepMessageSchema): the safety net that makes "nothing stays
 * pending silently" true. A half-created rollout is resumed by the fan-out. For each pending
 * target it asks Run Command about the current attempt's command; one still unfinished after
 * SSM must have ended it uses up its attempt. One that nobody is sending (no retry waiting out
 * its delay, no live claim, no sending lease) is sent again, a few times at most, then uses up
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
  const loaded = await store.load(sweep.rolloutId);
  if (loaded === undefined) return 'done';
  const { rollout, targets, commands } = loaded;
  if (
    rollout.state === 'Creating' ||
    (rollout.state === 'InProgress' &&
      rollout.queuedChunks === undefined &&
      (rollout.stages === undefined || rollout.stages.phase === 'Sending'))
  ) {
    // Its creator stopped before every target was written, or before every chunk was queued
    // (a resync is not redelivered): once its lease has run out, the fan-out resumes it
    // (writing what is missing, queuing what was not queued) under a lease of its own.
    if (!mayBeSendingStill({ attempt: 1 }, rollout, now)) {
      logger.warn('rollout left half-created; resuming it', { rolloutId: rollout.rolloutId });
      await ledger.requestResume(rollout.rolloutId);
    }
    await ledger.sweepAgain(sweep, now.getTime());
    return 'again';
  }

  const transitions: Transition[] = [];
  // A staged rollout's later stages are pending until theirs starts: nothing is lost there.
  const pending = targets.filter((t) => t.status === 'Pending' && !waitingForStage(t, rollout));
  const sentAt = new Map(commands.map((c) => [c.commandId, c.sentAt]));
  const firstCommand = firstAttemptCommands(commands);
  const commandOf = (t: Target) =>
    t.commandId ?? (t.attempt === 1 ? firstCommand.get(targetId(t)) : undefined);
  const jitter = Math.random(); // one backoff for the sweep's retries: they go out as chunks
  const lost = (t: Target, status: string, stderr: string, unsent: boolean) =>
    retryOrFail(
      {
        instanceId: t.instanceId,
        parameter: t.parameter,
        path: t.path,
        fromAttempt: t.attempt,
        ...(unsent ? { unsent: true as const } : {}),
      },
      { status, stderr },
      deps.config.retry,
      now,
      () => jitter,
    );

  // 1. Targets with a command: ask Run Command, as if their status events had arrived. One
  //    that Run Command has not finished is lost only once SSM itself must have ended it.
  const sent = pending.flatMap((t) => {
    const commandId = commandOf(t);
    return commandId === undefined ? [] : [{ target: t, attempt: t.attempt, commandId }];
  });
  if (sent.length > 0) {
    const observed = await observeTargets(deps, rollout.rolloutId, sent);
    transitions.push(...observed.transitions);
    const unfinished = new Set(observed.unfinished.map(targetId));
    for (const { target, commandId } of sent) {
      if (!unfinished.has(targetId(target))) continue;
      const deadline = commandDeadline(sentAt.get(commandId) ?? rollout.createdAt, deps.config);
      if (now.getTime() <= deadline) continue;
      transitions.push(
        lost(
          target,
          'NoFinalStatus',
          'Run Command reported no final status by the time it must have ended the command',
          false,
        ),
      );
    }
  }
  // 2. Targets with no command that nobody can still be sending: send them again (a few times
  //    at most); what cannot be re-sent uses up its attempt.
  const unsent = pending.filter(
    (t) => commandOf(t) === undefined && !mayBeSendingStill(t, rollout, now),
  );
  if (unsent.length > 0) {
    for (const t of await ledger.resend(rollout.rolloutId, unsent)) {
      transitions.push(lost(t, 'NeverSent', 'no command was sent for this attempt', true));
    }
  }
  if (transitions.length > 0) {
    logger.info('sweep observed targets', {
      rolloutId: rollout.rolloutId,
      transitions: transitions.length,
    });
  }

  // 3. The ledger commits, queues retries, settles and alerts; look again while not done.
  await ledger.record(rollout.rolloutId, transitions);
  const after = await store.load(rollout.rolloutId);
  if (after === undefined || (isDone(after.rollout) && (await haltFinished(deps, after.rollout)))) {
    return 'done';
  }
  if (stageLookOwed(after.rollout, now)) {
    // A bake whose look was lost, or a halt not finished (pin, rollback, alert): look again.
    await ledger.checkStage(after.rollout);
  }
  await ledger.sweepAgain(sweep, nextLook(after, deps, now));
  return 'again';
}

/**
 * Settled with its alert out; or halted with the halt's alert out (nothing moves until a person
 * decides, and a resume starts a sweep of its own).
 */
function isDone(rollout: Rollout): boolean {
  if (rollout.stages?.resumeOwed === true) return false;
  if (rollout.stages?.phase === 'Halted' && rollout.state === 'InProgress') {
    return rollout.alert === 'Sent';
  }
  return rollout.state === 'Settled' && (rollout.alert === 'None' || rollout.alert === 'Sent');
}

/**
 * Whether a halt's consequences exist (its rollback rollout is recorded), so the sweep may stop
 * watching a halted rollout: its alert can go out before the rollback is created, and a stage
 * look lost to the dead-letter queue must not leave the instances unrolled-back.
 */
async function haltFinished(deps: TrackerDeps, rollout: Rollout): Promise<boolean> {
  const rollbackId = rollout.stages?.halt?.rollbackRolloutId;
  if (rollout.stages?.phase !== 'Halted' || rollbackId === undefined) return true;
  return (await deps.store.getRollout(rollbackId)) !== undefined;
}

/** Whether a target belongs to a stage of its rollout that has not started. Never throws. */
function waitingForStage(target: Target, rollout: Rollout): boolean {
  return (
    target.stage !== undefined &&
    rollout.stages !== undefined &&
    target.stage > rollout.stages.current
  );
}

/**
 * Whether the stage's own looks may have been lost: a bake past its end, a halt, a decision
 * whose consequences a function died in the middle of.
 */
function stageLookOwed(rollout: Rollout, now: Date): boolean {
  const stages = rollout.stages;
  if (stages === undefined) return false;
  // A decision cut short: a resume's pin and roll-forward, an abandon's untouched targets.
  if (stages.resumeOwed === true) return true;
  if (rollout.state !== 'InProgress') return false;
  if (stages.phase === 'Halted' || stages.phase === 'Abandoned') return true;
  return (
    stages.phase === 'Baking' &&
    stages.bakeUntil !== undefined &&
    Date.parse(stages.bakeUntil) <= now.getTime()
  );
}

/** The soonest instant something of the rollout can need the sweep: a deadline or a retry. */
function nextLook(
  loaded: Awaited<ReturnType<TrackerDeps['store']['load']>>,
  deps: TrackerDeps,
  now: Date,
): number {
  if (loaded === undefined) return now.getTime();
  const sentAt = new Map(loaded.commands.map((c) => [c.commandId, c.sentAt]));
  const times = loaded.targets
    .filter((t) => t.status === 'Pending' && !waitingForStage(t, loaded.rollout))
    .map((t) => {
      const at = t.commandId === undefined ? undefined : sentAt.get(t.commandId);
      return at === undefined
        ? attemptDeadline(t, loaded.rollout, deps.config)
        : commandDeadline(at, deps.config);
    });
  // A settled rollout whose alert is not out yet: after the current claim has run out.
  if (loaded.rollout.alertClaimUntil !== undefined) {
    times.push(Date.parse(loaded.rollout.alertClaimUntil));
  }
  // A bake's end: the stage's look is due then (the sweep covers it if that look is lost).
  if (loaded.rollout.stages?.bakeUntil !== undefined) {
    times.push(Date.parse(loaded.rollout.stages.bakeUntil));
  }
  const future = times.filter((t) => t > now.getTime());
  return future.length > 0 ? Math.min(...future) : now.getTime();
}
