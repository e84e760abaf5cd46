import { RolloutBusyError } from '../errors.ts';
import { logger } from '../platform/powertools.ts';
import type { Rollout, StageProgress, Transition } from '../rollout/model.ts';
import { newRolloutId } from '../rollout/rollout-id.ts';
import { type FanOutDeps, fanOut, filesOfRollout, queueStage } from '../send/fanout.ts';
import { reachedInstances, stageName } from './stage-info.ts';

/** An answer for a person: an HTTP status and a JSON body. */
export interface DecisionAnswer {
  status: number;
  body: Record<string, unknown>;
}

const refuse = (status: number, error: string): DecisionAnswer => ({ status, body: { error } });

/**
 * A person's decision on a halted staged rollout, from the resync endpoint:
 * - resume: the value was fine after all (the alarm was something else, the database now
 *   accepts the password). The instances that were rolled back get the rollout's version again
 *   (a rollout of their own), the pin is lifted, and the next stage starts as planned.
 * - abandon: the version is not to go out. The stages not reached are never sent (their
 *   targets end Superseded), the rollout settles, and the parameter stays pinned to its last
 *   complete version for new instances, drift repair and re-syncs until a newer version is put.
 * Anything but a halted staged rollout of `environment` is refused (404/409) and nothing changes.
 * Throws the SDK error.
 */
export async function decideHalted(
  deps: FanOutDeps,
  request: { rolloutId: string; action: 'resume' | 'abandon'; environment?: string },
  principal: string,
): Promise<DecisionAnswer> {
  const rollout = await deps.store.getRollout(request.rolloutId);
  if (
    rollout === undefined ||
    (request.environment !== undefined && rollout.environment !== request.environment)
  ) {
    return refuse(
      404,
      `rollout ${request.rolloutId} not found${request.environment === undefined ? '' : ` in environment ${request.environment}`}`,
    );
  }
  const stages = rollout.stages;
  if (stages === undefined) {
    return refuse(
      409,
      `rollout ${rollout.rolloutId} is not staged: there is nothing to ${request.action}`,
    );
  }
  if (stages.phase !== 'Halted') {
    return refuse(
      409,
      `rollout ${rollout.rolloutId} is not halted (it is ${stages.phase.toLowerCase()} at ${stageName(stages, stages.current)}); only a halted rollout can be resumed or abandoned`,
    );
  }
  return request.action === 'resume'
    ? resume(deps, rollout, stages, principal)
    : abandon(deps, rollout, stages, principal);
}

async function resume(
  deps: FanOutDeps,
  rollout: Rollout,
  stages: StageProgress,
  principal: string,
): Promise<DecisionAnswer> {
  const k = stages.current;
  const now = deps.ledger.now();
  const decision = { action: 'resume' as const, by: principal, at: now.toISOString(), stage: k };
  const last = k === stages.instances.length - 1;
  const moved = last
    ? await deps.store.resumeToDone(rollout.rolloutId, k, decision)
    : await deps.store.startStage(rollout.rolloutId, { stage: k, phase: 'Halted' }, decision);
  if (!moved)
    return refuse(409, `rollout ${rollout.rolloutId} was decided by someone else just now`);
  logger.info('halted rollout resumed', { rolloutId: rollout.rolloutId, principal, stage: k + 1 });
  for (const parameter of rollout.parameters) {
    await deps.store.changeHold(rollout.environment, parameter, rollout.rolloutId, 'lifted');
  }
  // The instances a rollback took back get the version again, tracked on their own.
  let resumeRolloutId: string | undefined;
  if (stages.halt?.rollbackRolloutId !== undefined && rollout.version !== undefined) {
    resumeRolloutId = newRolloutId(now, `resume:${rollout.rolloutId}:${k}`);
    const version = rollout.version;
    await fanOut(deps, {
      rolloutId: resumeRolloutId,
      trigger: { type: 'resume', of: rollout.rolloutId, principal },
      environment: rollout.environment,
      files: filesOfRollout(deps, rollout),
      instanceIds: await reachedInstances(deps, rollout),
      pins: Object.fromEntries(rollout.parameters.map((p) => [p, version])),
      tolerateMissing: true,
      skipIfEmpty: true,
    }).catch((error: unknown) => {
      if (!(error instanceof RolloutBusyError)) throw error;
    });
  }
  if (last) {
    await deps.ledger.finish(rollout.rolloutId);
  } else {
    // The sweep stopped once the halt's alert was out: the rollout needs one again.
    await deps.ledger.scheduleSweep(rollout.rolloutId);
    const started = await deps.store.getRollout(rollout.rolloutId);
    if (started !== undefined) await queueStage(deps, started);
  }
  return {
    status: 202,
    body: {
      rolloutId: rollout.rolloutId,
      resumed: true,
      ...(last ? { stage: 'every stage is done' } : { stage: stageName(stages, k + 1) }),
      ...(resumeRolloutId === undefined ? {} : { resumeRolloutId }),
      follow: { rolloutId: rollout.rolloutId },
    },
  };
}

async function abandon(
  deps: FanOutDeps,
  rollout: Rollout,
  stages: StageProgress,
  principal: string,
): Promise<DecisionAnswer> {
  const untouched = await abandonRest(deps, rollout, principal, `abandoned by ${principal}`);
  if (untouched === undefined) {
    return refuse(409, `rollout ${rollout.rolloutId} was decided by someone else just now`);
  }
  return {
    status: 200,
    body: {
      rolloutId: rollout.rolloutId,
      abandoned: true,
      haltedAt: stageName(stages, stages.current),
      untouched,
      pinnedTo: stages.previousVersion ?? null,
    },
  };
}

/**
 * Ends a staged rollout where it stands: the stages not started are never sent (their targets
 * end Superseded with `reason`), and it settles. A halt's pin stays (abandoned: new instances
 * keep the last complete version until a newer one is put) unless a newer change ended it.
 * Returns how many instances were never sent, or undefined if it had already been decided.
 * Throws the SDK error.
 */
export async function abandonRest(
  deps: FanOutDeps,
  rollout: Rollout,
  by: string,
  reason: string,
): Promise<number | undefined> {
  const stages = rollout.stages;
  if (stages === undefined) return undefined;
  const k = stages.current;
  const at = deps.ledger.now().toISOString();
  if (
    !(await deps.store.abandonStages(rollout.rolloutId, { action: 'abandon', by, at, stage: k }))
  ) {
    return undefined;
  }
  if (stages.phase === 'Halted') {
    for (const parameter of rollout.parameters) {
      await deps.store.changeHold(rollout.environment, parameter, rollout.rolloutId, 'Abandoned');
    }
  }
  const later = (await deps.store.plannedChunks(rollout.rolloutId)).filter(
    (c) => (c.stage ?? 0) > k,
  );
  const transitions: Transition[] = later.flatMap((c) =>
    c.instanceIds.map((instanceId) => ({
      instanceId,
      parameter: c.parameter,
      path: c.path,
      fromAttempt: 1,
      unsent: true as const,
      to: 'Superseded' as const,
      reason,
    })),
  );
  logger.info('staged rollout ended where it stood', {
    rolloutId: rollout.rolloutId,
    reason,
    untouched: transitions.length,
  });
  await deps.ledger.record(rollout.rolloutId, transitions);
  return new Set(transitions.map((t) => t.instanceId)).size;
}

/**
 * The id of a change of the rollout's parameter recorded after it, at no lower version, if
 * any: such a change stages itself from its own canary, so this one goes no further.
 * Throws the SDK error.
 */
export async function newerChange(deps: FanOutDeps, rollout: Rollout): Promise<string | undefined> {
  const [parameter] = rollout.parameters;
  if (parameter === undefined) return undefined;
  const recent = await deps.store.recentRollouts({ parameter }, 10);
  const newer = recent.find(
    (entry) =>
      entry.triggerType === 'event' &&
      entry.rolloutId !== rollout.rolloutId &&
      entry.createdAt > rollout.createdAt &&
      (entry.version === undefined ||
        rollout.version === undefined ||
        entry.version >= rollout.version),
  );
  return newer?.rolloutId;
}

/**
 * Before a change of `parameter` at `version` goes out: a halted (or abandoned) rollout of an
 * older version that pins the parameter is ended, and its pin lifted: the newer version is
 * what people want now, and it stages itself. Throws the SDK error.
 */
export async function supersedeHeld(
  deps: FanOutDeps,
  environment: string,
  parameter: string,
  version: number,
  by: string,
): Promise<void> {
  const { hold } = await deps.store.getRelease(environment, parameter);
  if (hold === undefined || hold.version >= version) return;
  const held = await deps.store.getRollout(hold.rolloutId);
  if (held?.stages !== undefined && held.state === 'InProgress') {
    await abandonRest(deps, held, 'secrets-fanout', `superseded by ${by}`);
  }
  await deps.store.changeHold(environment, parameter, hold.rolloutId, 'lifted');
  logger.info('a newer version lifts the pin of a halted rollout', {
    parameter,
    environment,
    halted: hold.rolloutId,
    version,
  });
}
