import { RolloutBusyError } from '../errors.ts';
import { type Answer, refuse } from '../platform/http.ts';
import { logger } from '../platform/powertools.ts';
import {
  abandonReason,
  type Rollout,
  type StageProgress,
  type Transition,
} from '../rollout/model.ts';
import { newRolloutId } from '../rollout/rollout-id.ts';
import { type FanOutDeps, fanOut, filesOfRollout, queueStage } from '../send/fanout.ts';
import { rolledBackInstances, stageName } from './stage-info.ts';

/** Who decides for a newer change that ends an older staged rollout. */
const SERVICE = 'secrets-fanout';

/**
 * A person's decision on a halted staged rollout, from the resync endpoint:
 * - resume: the value was fine after all (the alarm was something else, the database now
 *   accepts the password). The instances that were rolled back get the rollout's version again
 *   (a rollout of their own), the pin is lifted, and the next stage starts as planned.
 * - abandon: the version is not to go out. The stages not reached are never sent (their
 *   targets end Superseded), the rollout settles, and the parameter stays pinned to its last
 *   complete version for new instances, drift repair and re-syncs until a newer version is put.
 * Asking again after a decision whose consequences were cut short (a function that died)
 * finishes them. Anything but a halted staged rollout of `environment` is refused (404/409)
 * and nothing changes. Throws the SDK error.
 */
export async function decideHalted(
  deps: FanOutDeps,
  request: { rolloutId: string; action: 'resume' | 'abandon'; environment?: string },
  principal: string,
): Promise<Answer> {
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
  const last = stages.decisions?.at(-1);
  if (request.action === 'resume' && stages.resumeOwed === true && last?.action === 'resume') {
    await finishResume(deps, rollout);
    return resumed(rollout, stages, last.stage);
  }
  if (
    request.action === 'abandon' &&
    stages.phase === 'Abandoned' &&
    rollout.state === 'InProgress'
  ) {
    const untouched = await finishAbandon(deps, rollout);
    return abandoned(rollout, stages, untouched);
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
): Promise<Answer> {
  // The rollback must be over first, or a late rollback command could undo the resume.
  const rollbackId = stages.halt?.rollbackRolloutId;
  if (rollbackId !== undefined) {
    const rollback = await deps.store.getRollout(rollbackId);
    if (rollback?.state !== 'Settled') {
      return refuse(
        409,
        `rollout ${rollout.rolloutId}'s rollback (rollout ${rollbackId}) is not over yet; resume once it has settled`,
      );
    }
  }
  const k = stages.current;
  const now = deps.ledger.now();
  const decision = { action: 'resume' as const, by: principal, at: now.toISOString(), stage: k };
  const last = k === stages.instances.length - 1;
  // A sweep first: whatever happens from here on, someone finishes what the resume implies.
  await deps.ledger.scheduleSweep(rollout.rolloutId);
  const moved = last
    ? await deps.store.resumeToDone(rollout.rolloutId, k, decision)
    : await deps.store.startStage(rollout.rolloutId, { stage: k, phase: 'Halted' }, decision);
  if (!moved) {
    return refuse(409, `rollout ${rollout.rolloutId} was decided by someone else just now`);
  }
  logger.info('halted rollout resumed', { rolloutId: rollout.rolloutId, principal, stage: k + 1 });
  const decided = await deps.store.getRollout(rollout.rolloutId);
  if (decided === undefined) return resumed(rollout, stages, k);
  await finishResume(deps, decided);
  // The next stage's chunks, under the sending lease the resume took.
  if (!last && decided.queuedChunks === undefined) await queueStage(deps, decided);
  return resumed(decided, stages, k);
}

function resumed(rollout: Rollout, stages: StageProgress, k: number): Answer {
  const last = k === stages.instances.length - 1;
  const resumeRolloutId = resumeRolloutIdOf(rollout);
  return {
    status: 202,
    body: {
      rolloutId: rollout.rolloutId,
      resumed: true,
      stage: last ? 'every stage is done' : stageName(stages, k + 1),
      ...(resumeRolloutId === undefined ? {} : { resumeRolloutId }),
      follow: { rolloutId: rollout.rolloutId },
    },
  };
}

/** The id of the rollout that gives the rolled-back instances the version again, if any. */
function resumeRolloutIdOf(rollout: Rollout): string | undefined {
  const stages = rollout.stages;
  const decision = stages?.decisions?.filter((d) => d.action === 'resume').at(-1);
  if (stages?.halt?.rollbackRolloutId === undefined || decision === undefined) return undefined;
  return newRolloutId(new Date(decision.at), `resume:${rollout.rolloutId}:${decision.stage}`);
}

/**
 * What a resume implies, each step safe to repeat (the resume itself, or the sweep after a
 * function died): the pin lifted, and the instances a rollback took back given the version
 * again under a rollout id derived from the decision. Throws the SDK error.
 */
export async function finishResume(deps: FanOutDeps, rollout: Rollout): Promise<void> {
  const stages = rollout.stages;
  if (stages?.resumeOwed !== true) return;
  for (const parameter of rollout.parameters) {
    await deps.store.changeHold(rollout.environment, parameter, rollout.rolloutId, 'lifted');
  }
  const resumeRolloutId = resumeRolloutIdOf(rollout);
  const decision = stages.decisions?.filter((d) => d.action === 'resume').at(-1);
  if (resumeRolloutId !== undefined && rollout.version !== undefined && decision !== undefined) {
    const version = rollout.version;
    await fanOut(deps, {
      rolloutId: resumeRolloutId,
      trigger: { type: 'resume', of: rollout.rolloutId, principal: decision.by },
      environment: rollout.environment,
      files: filesOfRollout(deps, rollout),
      instanceIds: await rolledBackInstances(deps, rollout),
      pins: Object.fromEntries(rollout.parameters.map((p) => [p, version])),
      tolerateMissing: true,
      skipIfEmpty: true,
    }).catch((error: unknown) => {
      if (!(error instanceof RolloutBusyError)) throw error;
    });
  }
  await deps.store.clearResumeOwed(rollout.rolloutId);
  if (stages.phase === 'Done') await deps.ledger.finish(rollout.rolloutId);
}

async function abandon(
  deps: FanOutDeps,
  rollout: Rollout,
  stages: StageProgress,
  principal: string,
): Promise<Answer> {
  // A sweep first: a function that dies after the decision leaves its consequences to it.
  await deps.ledger.scheduleSweep(rollout.rolloutId);
  const untouched = await abandonRest(deps, rollout, principal, `abandoned by ${principal}`);
  if (untouched === undefined) {
    return refuse(409, `rollout ${rollout.rolloutId} was decided by someone else just now`);
  }
  return abandoned(rollout, stages, untouched);
}

function abandoned(rollout: Rollout, stages: StageProgress, untouched: number): Answer {
  return {
    status: 200,
    body: {
      rolloutId: rollout.rolloutId,
      abandoned: true,
      haltedAt: stageName(stages, stages.current),
      untouched,
      pinnedTo: stages.halt === undefined ? null : (stages.previousVersion ?? null),
    },
  };
}

/**
 * Ends a staged rollout where it stands: the stages not started are never sent (their targets
 * end Superseded with `reason`), and it settles. Returns how many instances were never sent,
 * or undefined if someone else decided first. Throws the SDK error.
 */
export async function abandonRest(
  deps: FanOutDeps,
  rollout: Rollout,
  by: string,
  reason: string,
): Promise<number | undefined> {
  const stages = rollout.stages;
  if (stages === undefined) return undefined;
  const at = deps.ledger.now().toISOString();
  const decision = { action: 'abandon' as const, by, at, stage: stages.current, reason };
  if (!(await deps.store.abandonStages(rollout.rolloutId, decision))) return undefined;
  const now = await deps.store.getRollout(rollout.rolloutId);
  return now === undefined ? 0 : finishAbandon(deps, now);
}

/**
 * What an abandon implies, each step safe to repeat (the decision itself, its retry, or the
 * sweep after a function died): a halt's pin stays, marked abandoned (new instances keep the
 * last complete version until a newer change); a rollout that never halted holds nothing; the
 * targets of the stages not started end Superseded, and the rollout settles. Returns how many
 * instances were never sent. Throws the SDK error.
 */
export async function finishAbandon(deps: FanOutDeps, rollout: Rollout): Promise<number> {
  const stages = rollout.stages;
  if (stages?.phase !== 'Abandoned') return 0;
  const decision = stages.decisions?.filter((d) => d.action === 'abandon').at(-1);
  const reason = abandonReason(stages);
  for (const parameter of rollout.parameters) {
    await deps.store.changeHold(
      rollout.environment,
      parameter,
      rollout.rolloutId,
      stages.halt === undefined || decision?.by === SERVICE ? 'lifted' : 'Abandoned',
    );
  }
  const chunks = await deps.store.plannedChunks(rollout.rolloutId);
  // The stages not started, and any chunk of the current one nobody has sent (or is sending):
  // taken (claimed and marked sent with no command), so no worker sends it after this.
  const later = chunks.filter((c) => (c.stage ?? 0) > stages.current);
  for (const c of chunks.filter(
    (c) => (c.stage ?? 0) <= stages.current && c.sentAt === undefined,
  )) {
    if ((await deps.store.claimChunk(rollout.rolloutId, c)) !== 'claimed') continue;
    await deps.store.markChunkSent(rollout.rolloutId, c, []);
    later.push(c);
  }
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

/** Ends a staged rollout a newer change took over. Throws the SDK error. */
export async function supersede(deps: FanOutDeps, rollout: Rollout, version: number) {
  return abandonRest(deps, rollout, SERVICE, `superseded by the change to v${version}`);
}

/**
 * Before a change of `parameter` at `version` goes out: a halted rollout of an older version
 * that pins the parameter is ended, and its pin lifted: the newer version is what people want
 * now, and it stages itself. Throws the SDK error.
 */
export async function supersedeHeld(
  deps: FanOutDeps,
  environment: string,
  parameter: string,
  version: number,
): Promise<void> {
  const { hold } = await deps.store.getRelease(environment, parameter);
  if (hold === undefined || hold.version >= version) return;
  const held = await deps.store.getRollout(hold.rolloutId);
  if (held?.stages !== undefined && held.state === 'InProgress') {
    if (held.stages.phase === 'Abandoned') await finishAbandon(deps, held);
    else await supersede(deps, held, version);
  }
  await deps.store.changeHold(environment, parameter, hold.rolloutId, 'lifted');
  logger.info('a newer version lifts the hold of an older staged rollout', {
    parameter,
    environment,
    holder: hold.rolloutId,
    version,
  });
}
