import type { Trigger } from '../rollout/trigger.ts';
import type { RolloutSummary } from '../send/fanout.ts';

/** A rollout as logged and returned: counts and ids, compact enough for any fleet size. */
export interface RolloutReport {
  rolloutId: string;
  trigger: Trigger;
  environment: string;
  parameters: string[];
  version?: number;
  targeted: number;
  unreachable: Array<{ instanceId: string; reason: string }>;
  /** Commands the planner sent itself; `queued` chunks go out from the send queue. */
  commandIds: string[];
  queued: number;
  failedChunks: Array<{ parameter: string; instanceIds: string[]; error: string }>;
  resumed: boolean;
  dryRun: boolean;
}

/** The report of a fan-out. Never throws. */
export function summarise(summary: RolloutSummary): RolloutReport {
  return {
    rolloutId: summary.rolloutId,
    trigger: summary.trigger,
    environment: summary.environment,
    parameters: summary.parameters,
    ...(summary.version === undefined ? {} : { version: summary.version }),
    targeted: summary.targeted.length,
    unreachable: summary.unreachable,
    commandIds: summary.commands.map((command) => command.commandId),
    queued: summary.queued,
    failedChunks: summary.failedChunks.map((failed) => ({
      parameter: failed.parameter,
      instanceIds: failed.instanceIds,
      error: `${failed.error.name}: ${failed.error.message}`,
    })),
    resumed: summary.resumed,
    dryRun: summary.dryRun,
  };
}
