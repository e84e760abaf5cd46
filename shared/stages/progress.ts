import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { RolloutBusyError } from '../errors.ts';
import type { StageMessage } from '../messages/retry.ts';
import { logger, metrics } from '../platform/powertools.ts';
import type { Rollout, StageProgress, Target } from '../rollout/model.ts';
import { newRolloutId } from '../rollout/rollout-id.ts';
import { type FanOutDeps, fanOut, filesOfRollout, queueStage } from '../send/fanout.ts';
import { newerChange } from '../send/holds.ts';
import { firingAlarms } from './alarms.ts';
import { finishAbandon, finishResume, supersede } from './decisions.ts';
import { reachedInstances, stageName } from './stage-info.ts';

export interface StageDeps extends FanOutDeps {
  cloudwatch: CloudWatchClient;
}

export type StageResult =
  | 'stale'
  | 'waiting'
  | 'baking'
  | 'started'
  | 'done'
  | 'halted'
  | 'superseded';

/** While a stage bakes its alarms are looked at this often. */
const BAKE_LOOK_SECONDS = 60;

/**
 * One look at a staged rollout's current stage (StageMessage), doing what is due:
 * - sending, and every target of the stage is over: a failed instance or an alarm in ALARM
 *   halts the rollout; else the last stage completes it, any other starts its bake;
 * - baking: an alarm in ALARM halts it; a newer change of the parameter ends it (the newer
 *   rollout stages itself); when the bake is over the next stage starts;
 * - halted: finishes the halt (the parameter's pin, the rollback, the alert), each step
 *   idempotent, so a look after a crash completes it.
 * Every move is conditional on the stage it starts from: duplicate looks are harmless.
 * Throws the SDK error (the message is retried).
 */
export async function progressStage(deps: StageDeps, message: StageMessage): Promise<StageResult> {
  const rollout = await deps.store.getRollout(message.rolloutId);
  const stages = rollout?.stages;
  if (rollout === undefined || stages === undefined) return 'stale';
  // A decision a function died in the middle of: finish it first, whatever the stage.
  if (stages.resumeOwed === true) await finishResume(deps, rollout);
  if (stages.phase === 'Abandoned' && rollout.state === 'InProgress') {
    await finishAbandon(deps, rollout);
    return 'superseded';
  }
  if (stages.current !== message.stage || rollout.state !== 'InProgress') return 'stale';
  switch (stages.phase) {
    case 'Sending':
      return finishStage(deps, rollout, stages);
    case 'Baking':
      return bake(deps, rollout, stages);
    case 'Halted':
      await completeHalt(deps, rollout);
      return 'halted';
    default:
      return 'stale';
  }
}

async function finishStage(
  deps: StageDeps,
  rollout: Rollout,
  stages: StageProgress,
): Promise<StageResult> {
  const k = stages.current;
  const targets = await deps.store.stageTargets(rollout.rolloutId, k);
  if (targets.some((t) => t.status === 'Pending')) return 'waiting';
  // A newer change stages itself: this one neither halts nor goes on.
  const newer = await newerChange(deps.store, rollout);
  if (newer !== undefined) {
    await supersede(deps, rollout, newer);
    return 'superseded';
  }
  // The alarms first: an alarm stops the stage's commands (AlarmConfiguration), so their
  // failures are its doing, and the reason names it.
  const firing = await firingAlarms(deps.cloudwatch, stages.alarms);
  if (firing.length > 0) return halt(deps, rollout, alarmReason(firing, stageName(stages, k)));
  const failed = targets.filter((t) => t.status === 'Failed');
  if (failed.length > 0) {
    const instances = new Set(failed.map((t) => t.instanceId)).size;
    return halt(
      deps,
      rollout,
      `${instances} of ${stages.instances[k]} instances of ${stageName(stages, k)} failed (${describeFirst(failed)})`,
    );
  }
  if (k === stages.instances.length - 1) {
    if (await deps.store.completeStages(rollout.rolloutId, k)) {
      logger.info('staged rollout: every stage passed', { rolloutId: rollout.rolloutId });
      metrics.addMetric('StagesPassed', MetricUnit.Count, 1);
    }
    await deps.ledger.finish(rollout.rolloutId);
    return 'done';
  }
  const until = new Date(deps.ledger.now().getTime() + stages.bakeSeconds * 1000);
  if (await deps.store.bakeStage(rollout.rolloutId, k, until)) {
    logger.info('staged rollout: stage passed; baking', {
      rolloutId: rollout.rolloutId,
      stage: k + 1,
      bakeUntil: until.toISOString(),
    });
    metrics.addMetric('StagesPassed', MetricUnit.Count, 1);
    await deps.ledger.checkStage(rollout, Math.min(BAKE_LOOK_SECONDS, stages.bakeSeconds));
  }
  return 'baking';
}

async function bake(
  deps: StageDeps,
  rollout: Rollout,
  stages: StageProgress,
): Promise<StageResult> {
  const k = stages.current;
  const newer = await newerChange(deps.store, rollout);
  if (newer !== undefined) {
    await supersede(deps, rollout, newer);
    return 'superseded';
  }
  const firing = await firingAlarms(deps.cloudwatch, stages.alarms);
  if (firing.length > 0) {
    return halt(deps, rollout, alarmReason(firing, `the bake of ${stageName(stages, k)}`));
  }
  const now = deps.ledger.now().getTime();
  const left = Math.ceil((Date.parse(stages.bakeUntil ?? '') - now) / 1000);
  if (left > 0) {
    await deps.ledger.checkStage(rollout, Math.min(BAKE_LOOK_SECONDS, left));
    return 'baking';
  }
  if (!(await deps.store.startStage(rollout.rolloutId, { stage: k, phase: 'Baking' }))) {
    return 'stale';
  }
  const started = await deps.store.getRollout(rollout.rolloutId);
  if (started === undefined) return 'stale';
  const summary = await queueStage(deps, started);
  logger.info('staged rollout: next stage started', {
    rolloutId: rollout.rolloutId,
    stage: k + 2,
    of: stages.instances.length,
    instances: summary.targeted.length,
  });
  return 'started';
}

/**
 * Halts the rollout at its current stage with `reason`, then completes the halt. Only the
 * caller whose conditional write moved it halts it; the others find it halted.
 */
async function halt(deps: StageDeps, rollout: Rollout, reason: string): Promise<StageResult> {
  const stages = rollout.stages as StageProgress;
  const k = stages.current;
  const at = deps.ledger.now();
  // Counted now, after the stage's last commit: the failures this halt's alert names.
  const failedAtHalt = (await deps.store.getRollout(rollout.rolloutId))?.counts.failed ?? 0;
  const halted = await deps.store.haltStage(rollout.rolloutId, {
    stage: k,
    reason,
    at: at.toISOString(),
    ...(stages.previousVersion === undefined
      ? {}
      : { rollbackRolloutId: newRolloutId(at, `rollback:${rollout.rolloutId}:${k}`) }),
    failedAtHalt,
  });
  if (halted) {
    logger.warn('staged rollout halted', { rolloutId: rollout.rolloutId, stage: k + 1, reason });
    metrics.addMetric('RolloutsHalted', MetricUnit.Count, 1);
  }
  const now = await deps.store.getRollout(rollout.rolloutId);
  if (now !== undefined) await completeHalt(deps, now);
  return 'halted';
}

/**
 * What a halt implies, each step safe to repeat: the parameter is pinned to its last complete
 * version (new instances, drift repair and re-syncs write that, not the halted one); the
 * instances the rollout reached are rolled back to it, tracked as a rollout of their own; the
 * alert goes out (the ledger's, once).
 */
async function completeHalt(deps: StageDeps, rollout: Rollout): Promise<void> {
  const stages = rollout.stages;
  if (stages?.phase !== 'Halted' || stages.halt === undefined) return;
  for (const parameter of rollout.parameters) {
    const held = await deps.store.hold(rollout.environment, parameter, {
      rolloutId: rollout.rolloutId,
      version: rollout.version ?? 0,
      state: 'Halted',
      ...(stages.previousVersion === undefined ? {} : { pinned: stages.previousVersion }),
    });
    const newer = held ? undefined : await newerChange(deps.store, rollout);
    if (newer !== undefined) {
      // A newer change started since: it owns the parameter (and the instances), so this halt
      // neither pins nor rolls back; it ends here, its alert still owed.
      await supersede(deps, rollout, newer);
      return;
    }
  }
  const rollbackId = stages.halt.rollbackRolloutId;
  if (rollbackId !== undefined && stages.previousVersion !== undefined) {
    const reached = await reachedInstances(deps, rollout);
    try {
      await fanOut(deps, {
        rolloutId: rollbackId,
        trigger: { type: 'rollback', of: rollout.rolloutId, stage: stages.halt.stage },
        environment: rollout.environment,
        files: filesOfRollout(deps, rollout),
        instanceIds: reached,
        pins: Object.fromEntries(
          rollout.parameters.map((p) => [p, stages.previousVersion as number]),
        ),
        // Recorded even when every reached instance is gone since: the sweep stops watching
        // a halt once its rollback exists.
        tolerateMissing: true,
      });
    } catch (error) {
      // Another look is creating it right now; it finishes it.
      if (!(error instanceof RolloutBusyError)) throw error;
    }
  }
  await deps.ledger.finish(rollout.rolloutId);
}

function alarmReason(firing: Array<{ name: string; reason?: string }>, during: string): string {
  const names = firing.map((a) => a.name).join(', ');
  const why = firing[0]?.reason === undefined ? '' : `: ${firing[0].reason}`;
  return `alarm ${names} in ALARM during ${during}${why}`;
}

function describeFirst(failed: Target[]): string {
  const [first] = failed;
  if (first === undefined) return '';
  const e = first.lastError;
  const what = e === undefined ? 'Failed' : `${e.status}${e.meaning ? ` ${e.meaning}` : ''}`;
  return `${first.instanceId}: ${what}${failed.length > 1 ? `, and ${failed.length - 1} more` : ''}`;
}
