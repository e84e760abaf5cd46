import type { StageConfig } from '../config.ts';
import { logger } from '../platform/powertools.ts';
import type { FanOutDeps } from '../send/fanout.ts';
import { supersedeHeld } from './decisions.ts';

export type StagedPlan =
  | { skip: string }
  | { stages?: StageConfig; pins?: Record<string, number>; previousVersion?: number };

/**
 * How a change of `parameter` to `version` goes out in `environment`: stage by stage, at exactly
 * that version, rolling back to the last complete one, where custom.fanout.rollout.stages
 * configures the environment; as before ({}) elsewhere. The change is recorded as the newest
 * (an older staged rollout goes no further), a halted rollout of an older version is ended, and
 * the new one holds the parameter (drift repair and re-syncs leave it alone while it stages).
 * A change older than one already staged is skipped: the newer one carries the newer value.
 * A change whose version is not known yet (Parameter Store's metadata can lag a Create) cannot
 * be pinned, so it goes out unstaged, and says so. Throws the SDK error.
 */
export async function stagedPlan(
  deps: FanOutDeps,
  change: {
    environment: string;
    parameter: string;
    version: number | undefined;
    rolloutId: string;
  },
): Promise<StagedPlan> {
  const stages = deps.config.rollout.stages[change.environment];
  if (stages === undefined) return {};
  const { environment, parameter, version } = change;
  if (version === undefined) {
    logger.warn('version unknown: this change goes out unstaged', { parameter });
    return {};
  }
  if (!(await deps.store.markLatestChange(environment, parameter, version))) {
    const { latestChange } = await deps.store.getRelease(environment, parameter);
    if (latestChange !== undefined && latestChange > version) {
      return { skip: `a change to v${latestChange} is already staged; it carries the newer value` };
    }
    // The same change again (a redelivered event): its rollout continues.
  }
  await supersedeHeld(deps, environment, parameter, version);
  const { completeVersion } = await deps.store.getRelease(environment, parameter);
  // Never a version at or above the new one (a replayed older event); else the one before.
  const previous =
    completeVersion !== undefined && completeVersion < version
      ? completeVersion
      : version > 1
        ? version - 1
        : undefined;
  await deps.store.hold(environment, parameter, {
    rolloutId: change.rolloutId,
    version,
    state: 'Staging',
    ...(previous === undefined ? {} : { pinned: previous }),
  });
  return {
    stages,
    pins: { [parameter]: version },
    ...(previous === undefined ? {} : { previousVersion: previous }),
  };
}
