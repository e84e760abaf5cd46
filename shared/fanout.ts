import type { EC2Client } from '@aws-sdk/client-ec2';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { type FailedChunk, type SentChunk, sendInChunks } from './commands.ts';
import type { FanoutConfig, FileTarget } from './config.ts';
import { resolveTargets, type UnreachableInstance } from './fleet.ts';
import { applyThenQueueRetries, retryOrFail } from './retries.ts';
import {
  firstAttemptCommands,
  type NewTarget,
  type RolloutStore,
  type Transition,
  targetId,
} from './rollouts.ts';
import { type SettlementDeps, settleAndAlert } from './settlement.ts';
import { firstSweep, queueSweep } from './sweeps.ts';
import type { Trigger } from './trigger.ts';

export type { Trigger };

export interface FanOutRequest {
  rolloutId: string;
  trigger: Trigger;
  environment: string;
  /** The files to write, all of `environment`; one SendCommand series per file. */
  files: FileTarget[];
  /** The parameter version when the rollout started (instances always fetch the latest). */
  version?: number;
  /** Restrict to these instances of the environment; each must be a running member of it. */
  instanceIds?: string[];
  /** Resolve and report, but record nothing and send nothing. */
  dryRun?: boolean;
}

/** Another run of the same rollout holds the sending lease; retry later (it resumes then). */
export class RolloutBusyError extends Error {
  override name = 'RolloutBusyError';
  constructor(rolloutId: string) {
    super(`rollout ${rolloutId} is being sent by another run; retry once it is done`);
  }
}

/** Some requested instances are not running instances of the environment; nothing was sent. */
export class InstancesNotInEnvironmentError extends Error {
  override name = 'InstancesNotInEnvironmentError';
  readonly instanceIds: string[];
  constructor(environment: string, instanceIds: string[]) {
    super(
      `not running instances of ${environment} (tag and state checked): ${instanceIds.join(', ')}`,
    );
    this.instanceIds = instanceIds;
  }
}

export interface FanOutDeps extends SettlementDeps {
  ec2: EC2Client;
  ssm: SSMClient;
  sqs: SQSClient;
  store: RolloutStore;
  retryQueueUrl: string;
  /** Where sweeps wait for a rollout's commands to be over (the status queue). */
  statusQueueUrl: string;
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
  /** True when an earlier, interrupted run of the same rollout had already sent some commands. */
  resumed: boolean;
  dryRun: boolean;
}

/**
 * The one fan-out path shared by propagate, resync and bootstrap: resolve the environment's
 * instances, record the rollout and its targets, send every file to the reachable instances
 * recording each command as it goes, and settle at once if nothing is left pending.
 * Run again with the same rollout id, it resumes once the first run has finished sending or its
 * lease has run out (a crash): only targets no command covers are sent. While another run holds
 * the lease it throws RolloutBusyError, so the event is retried instead of dropped.
 * Chunks SSM refused (after the SDK's retries) are reported in `failedChunks` and their targets
 * retried later like any failed attempt. Throws InstancesNotInEnvironmentError (before anything
 * is recorded or sent) when a requested instance is not in the environment, and the SDK error
 * if the instances cannot be resolved or the store cannot be written.
 */
export async function fanOut(deps: FanOutDeps, request: FanOutRequest): Promise<RolloutSummary> {
  const targets = await resolveTargets(deps, {
    tagKey: deps.config.tagKey,
    environment: request.environment,
    ...(request.instanceIds === undefined ? {} : { instanceIds: request.instanceIds }),
  });
  if (request.instanceIds !== undefined) {
    const found = new Set([...targets.reachable, ...targets.unreachable.map((u) => u.instanceId)]);
    const missing = request.instanceIds.filter((id) => !found.has(id));
    if (missing.length > 0) throw new InstancesNotInEnvironmentError(request.environment, missing);
  }
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
    resumed: false,
    dryRun: request.dryRun === true,
  };
  if (request.dryRun === true) return summary;

  const created = await deps.store.create(
    {
      rolloutId: request.rolloutId,
      trigger: request.trigger,
      environment: request.environment,
      parameters: summary.parameters,
      files: request.files.map(({ parameter, path }) => ({ parameter, path })),
      ...(request.version === undefined ? {} : { version: request.version }),
    },
    newTargets(request.files, targets.reachable, targets.unreachable),
  );
  let toSend: Map<string, string[]>;
  if (created) {
    toSend = new Map(request.files.map((file) => [file.parameter, targets.reachable]));
  } else if (await deps.store.takeOverSending(request.rolloutId)) {
    // The run before stopped: finish writing its targets if it had not, then send the rest.
    await deps.store.finishCreating(
      request.rolloutId,
      newTargets(request.files, targets.reachable, targets.unreachable),
    );
    toSend = await unsentTargets(deps.store, request.rolloutId, summary);
  } else {
    // Another run of this rollout is sending right now; try again once it is done.
    throw new RolloutBusyError(request.rolloutId);
  }

  for (const file of request.files) {
    const instanceIds = toSend.get(file.parameter) ?? [];
    if (instanceIds.length === 0) continue;
    const { sent, failed } = await sendInChunks(deps.ssm, {
      documentName: deps.documentName,
      file,
      instanceIds,
      rolloutId: request.rolloutId,
      rollout: deps.config.rollout,
      ...(deps.outputLogGroup === undefined ? {} : { outputLogGroup: deps.outputLogGroup }),
      onSent: (chunk) =>
        deps.store.recordCommand(request.rolloutId, {
          commandId: chunk.commandId,
          parameter: chunk.parameter,
          attempt: 1,
          instanceIds: chunk.instanceIds,
        }),
    });
    summary.commands.push(...sent);
    summary.failedChunks.push(...failed);
  }
  if (summary.failedChunks.length > 0) {
    await applyThenQueueRetries(
      deps,
      deps.config.retry,
      request.rolloutId,
      sendFailures(summary.failedChunks, deps.config.retry.maxAttempts),
    );
  }
  await deps.store.releaseSending(request.rolloutId);
  const settled = await settleAndAlert(deps, request.rolloutId);
  if (created && settled?.state !== 'Settled') {
    await queueSweep(
      deps.sqs,
      deps.statusQueueUrl,
      firstSweep(request.rolloutId, deps.config.rollout.timeoutSeconds),
    );
  }
  return summary;
}

function newTargets(
  files: FileTarget[],
  reachable: string[],
  unreachable: UnreachableInstance[],
): NewTarget[] {
  return files.flatMap(({ parameter, path }) => [
    ...reachable.map((instanceId) => ({ instanceId, parameter, path, status: 'Pending' as const })),
    ...unreachable.map(({ instanceId, reason }) => ({
      instanceId,
      parameter,
      path,
      status: 'Unreachable' as const,
      reason,
    })),
  ]);
}

/** After an interrupted run: per parameter, the pending first-attempt targets no command covers. */
async function unsentTargets(
  store: RolloutStore,
  rolloutId: string,
  summary: RolloutSummary,
): Promise<Map<string, string[]>> {
  const loaded = await store.load(rolloutId);
  summary.resumed = true;
  if (loaded === undefined) return new Map();
  const covered = firstAttemptCommands(loaded.commands);
  const toSend = new Map<string, string[]>();
  for (const target of loaded.targets) {
    if (target.status !== 'Pending' || target.attempt !== 1) continue;
    if (covered.has(targetId(target))) continue;
    toSend.set(target.parameter, [...(toSend.get(target.parameter) ?? []), target.instanceId]);
  }
  summary.targeted = loaded.targets
    .filter((t) => t.status !== 'Unreachable')
    .map((t) => t.instanceId);
  summary.targeted = [...new Set(summary.targeted)];
  return toSend;
}

/** A refused first attempt is retried like any other failed attempt, while attempts remain. */
function sendFailures(failed: FailedChunk[], maxAttempts: number): Transition[] {
  return failed.flatMap((chunk) => {
    const lastError = {
      status: 'SendCommandFailed',
      stderr: `${chunk.error.name}: ${chunk.error.message}`,
    };
    return chunk.instanceIds.map((instanceId) =>
      retryOrFail(
        { instanceId, parameter: chunk.parameter, fromAttempt: 1 },
        lastError,
        maxAttempts,
      ),
    );
  });
}
