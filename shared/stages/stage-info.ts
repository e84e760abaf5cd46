import type { Rollout, StageProgress } from '../rollout/model.ts';
import type { FanOutDeps } from '../send/fanout.ts';

/** The instances of the stages a rollout has started: those that may have its version. */
export async function reachedInstances(deps: FanOutDeps, rollout: Rollout): Promise<string[]> {
  const current = rollout.stages?.current ?? 0;
  const chunks = await deps.store.plannedChunks(rollout.rolloutId);
  return [
    ...new Set(chunks.filter((c) => (c.stage ?? 0) <= current).flatMap((c) => c.instanceIds)),
  ].sort();
}

/** "the canary (stage 1 of 3)", "stage 2 of 3". */
export function stageName(stages: Pick<StageProgress, 'instances'>, k: number): string {
  const of = stages.instances.length;
  return k === 0 ? `the canary (stage 1 of ${of})` : `stage ${k + 1} of ${of}`;
}
