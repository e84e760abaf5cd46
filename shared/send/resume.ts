import { filesForEnvironment } from '../config.ts';
import { RolloutBusyError } from '../errors.ts';
import { logger } from '../platform/powertools.ts';
import { type FanOutDeps, fanOut } from './fanout.ts';

export type ResumeResult = 'resumed' | 'not-creating' | 'busy';

/**
 * Finishes a rollout its creator left half-created or half-queued (a function that died): the
 * fan-out runs again under the rollout's own id, takes the lease, writes the targets that are
 * missing (resolving the same environment and instances again, only while Creating) and queues
 * the chunks not yet sent. `busy` while another run holds the lease (the sweep looks again).
 * Throws the SDK error.
 */
export async function resumeRollout(deps: FanOutDeps, rolloutId: string): Promise<ResumeResult> {
  const rollout = await deps.store.getRollout(rolloutId);
  if (rollout === undefined || rollout.queuedChunks !== undefined) return 'not-creating';
  const files = filesForEnvironment(deps.config, rollout.environment).filter((file) =>
    rollout.files.some((f) => f.parameter === file.parameter && f.path === file.path),
  );
  const instanceIds = await deps.store.restrictionOf(rollout);
  try {
    const summary = await fanOut(deps, {
      rolloutId,
      trigger: rollout.trigger,
      environment: rollout.environment,
      files,
      ...(rollout.version === undefined ? {} : { version: rollout.version }),
      ...(instanceIds === undefined ? {} : { instanceIds }),
      ...(rollout.pins === undefined ? {} : { pins: rollout.pins }),
      // A staged rollout's missing targets get their stages as its creator would have.
      ...(rollout.stages === undefined
        ? {}
        : {
            stages: deps.config.rollout.stages[rollout.environment] ?? {
              canary: 1,
              waves: [],
              bakeSeconds: rollout.stages.bakeSeconds,
              alarms: rollout.stages.alarms,
            },
          }),
      resume: true,
    });
    logger.info('half-created rollout resumed', {
      rolloutId,
      targeted: summary.targeted.length,
      commands: summary.commands.length,
    });
    return 'resumed';
  } catch (error) {
    if (error instanceof RolloutBusyError) return 'busy';
    throw error;
  }
}
