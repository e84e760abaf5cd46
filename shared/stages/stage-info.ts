import type { Rollout, StageProgress } from '../rollout/model.ts';
import type { FanOutDeps } from '../send/fanout.ts';

/**
 * The instances that may have a staged rollout's version: those of the stages it started, and
 * new instances that got their files while it went out (a bootstrap writes the latest value, a
 * staged rollout's version, like any change). What a halt rolls back. Throws the SDK error.
 */
export async function reachedInstances(deps: FanOutDeps, rollout: Rollout): Promise<string[]> {
  const current = rollout.stages?.current ?? 0;
  const chunks = await deps.store.plannedChunks(rollout.rolloutId);
  const staged = chunks.filter((c) => (c.stage ?? 0) <= current).flatMap((c) => c.instanceIds);
  const launched = (
    await Promise.all(
      rollout.parameters.map((p) => deps.store.bootstrapsOfParameterSince(p, rollout.createdAt)),
    )
  ).flat();
  return [...new Set([...staged, ...launched])].sort();
}

/** The instances a halt's rollback took back (its rollout's instances). Throws the SDK error. */
export async function rolledBackInstances(deps: FanOutDeps, rollout: Rollout): Promise<string[]> {
  const rollbackId = rollout.stages?.halt?.rollbackRolloutId;
  if (rollbackId === undefined) return [];
  const rollback = await deps.store.getRollout(rollbackId);
  return rollback === undefined ? [] : ((await deps.store.restrictionOf(rollback)) ?? []);
}

/** "the canary (stage 1 of 3)", "stage 2 of 3". */
export function stageName(stages: Pick<StageProgress, 'instances'>, k: number): string {
  const of = stages.instances.length;
  return k === 0 ? `the canary (stage 1 of ${of})` : `stage ${k + 1} of ${of}`;
}
