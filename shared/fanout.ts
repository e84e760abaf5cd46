import type { EC2Client } from '@aws-sdk/client-ec2';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { type FailedChunk, type SentChunk, sendInChunks } from './commands.ts';
import type { FanoutConfig, FileTarget } from './config.ts';
import { resolveTargets, type UnreachableInstance } from './fleet.ts';

/** What started a rollout: a Parameter Store change, a person's resync, or a new instance. */
export type Trigger =
  | { type: 'event'; eventId: string }
  | { type: 'resync'; principal: string }
  | { type: 'bootstrap'; instanceId: string };

export interface FanOutRequest {
  rolloutId: string;
  trigger: Trigger;
  environment: string;
  /** The files to write, all of `environment`; one SendCommand series per file. */
  files: FileTarget[];
  /** The parameter version when the rollout started (instances always fetch the latest). */
  version?: number;
  /** Restrict to these instances of the environment. */
  instanceIds?: string[];
}

export interface FanOutDeps {
  ec2: EC2Client;
  ssm: SSMClient;
  config: FanoutConfig;
  documentName: string;
  outputLogGroup?: string;
}

export interface RolloutSummary {
  rolloutId: string;
  trigger: Trigger;
  environment: string;
  parameters: string[];
  version?: number;
  targeted: string[];
  unreachable: UnreachableInstance[];
  commands: SentChunk[];
  failedChunks: FailedChunk[];
}

/**
 * The one fan-out path shared by propagate, resync and bootstrap: resolve the environment's
 * instances, then send every file to the reachable ones. API failures while sending are
 * reported in `failedChunks`; throws only if the instances cannot be resolved.
 */
export async function fanOut(deps: FanOutDeps, request: FanOutRequest): Promise<RolloutSummary> {
  const targets = await resolveTargets(deps, {
    tagKey: deps.config.tagKey,
    environment: request.environment,
    ...(request.instanceIds === undefined ? {} : { instanceIds: request.instanceIds }),
  });
  const summary: RolloutSummary = {
    rolloutId: request.rolloutId,
    trigger: request.trigger,
    environment: request.environment,
    parameters: [...new Set(request.files.map((file) => file.parameter))],
    ...(request.version === undefined ? {} : { version: request.version }),
    targeted: targets.reachable,
    unreachable: targets.unreachable,
    commands: [],
    failedChunks: [],
  };
  if (targets.reachable.length === 0) return summary;
  for (const file of request.files) {
    const { sent, failed } = await sendInChunks(deps.ssm, {
      documentName: deps.documentName,
      file,
      instanceIds: targets.reachable,
      rolloutId: request.rolloutId,
      rollout: deps.config.rollout,
      ...(deps.outputLogGroup === undefined ? {} : { outputLogGroup: deps.outputLogGroup }),
    });
    summary.commands.push(...sent);
    summary.failedChunks.push(...failed);
  }
  return summary;
}
