import type { StageConfig } from '../config.ts';
import { logger } from '../platform/powertools.ts';
import type { FanOutDeps } from '../send/fanout.ts';
import { supersedeHeld } from './decisions.ts';

/**
 * How a change of `parameter` to `version` goes out in `environment`: stage by stage, at exactly
 * that version, rolling back to the last complete one, where custom.fanout.rollout.stages
 * configures the environment; as before ({}) elsewhere. A halted rollout of an older version is
 * ended first (the newer version stages itself). A change whose version is not known yet
 * (Parameter Store's metadata can lag a Create) cannot be pinned, so it goes out unstaged, and
 * says so. Throws the SDK error.
 */
export async function stagedPlan(
  deps: FanOutDeps,
  change: {
    environment: string;
    parameter: string;
    version: number | undefined;
    rolloutId: string;
  },
): Promise<{ stages?: StageConfig; pins?: Record<string, number>; previousVersion?: number }> {
  const stages = deps.config.rollout.stages[change.environment];
  if (stages === undefined) return {};
  const { version } = change;
  if (version === undefined) {
    logger.warn('version unknown: this change goes out unstaged', { parameter: change.parameter });
    return {};
  }
  await supersedeHeld(deps, change.environment, change.parameter, version, change.rolloutId);
  const { completeVersion } = await deps.store.getRelease(change.environment, change.parameter);
  // Never a version at or above the new one (a replayed older event); else the one before.
  const previous =
    completeVersion !== undefined && completeVersion < version
      ? completeVersion
      : version > 1
        ? version - 1
        : undefined;
  return {
    stages,
    pins: { [change.parameter]: version },
    ...(previous === undefined ? {} : { previousVersion: previous }),
  };
}
