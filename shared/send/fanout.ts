import type { EC2Client } from '@aws-sdk/client-ec2';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { FanoutConfig, FileTarget } from '../config.ts';
import { InstancesNotInEnvironmentError, RolloutBusyError } from '../errors.ts';
import type { Ledger } from '../rollout/ledger.ts';
import {
  firstAttemptCommands,
  type NewTarget,
  type SourceVersion,
  type Transition,
  targetId,
} from '../rollout/model.ts';
import { retryOrFail } from '../rollout/policy.ts';
import type { RolloutStore } from '../rollout/store.ts';
import type { Trigger } from '../rollout/trigger.ts';
import { type FailedChunk, type SentChunk, sendInChunks } from './commands.ts';
import { resolveTargets, type UnreachableInstance } from './fleet.ts';

export type { Trigger };

export interface FanOutRequest {
  rolloutId: string;
  trigger: Trigger;
  environment: string;
  /** The files to write, all of `environment`; one SendCommand series per file. */
  files: FileTarget[];
  /** The parameter version when the rollout started (instances always fetch the latest). */
  version?: number;
  /** Every source version the rollout covers (a secret's VersionId, a path's parameters). */
  sources?: SourceVersion[];
  /** Restrict to these instances of the environment; each must be a running member of it. */
  instanceIds?: string[];
  /** Resolve and report, but record nothing and send nothing. */
  dryRun?: boolean;
  /** Record nothing when the environment has no running instance at all (`empty` says so). */
  skipIfEmpty?: boolean;
  /**
   * Finishing a rollout someone else created and left half-done: requested instances that
   * are gone since are no longer an error (they simply get no target).
   */
  resume?: boolean;
}

export interface FanOutDeps {
  ec2: EC2Client;
  ssm: SSMClient;
  store: RolloutStore;
  ledger: Ledger;
  config: FanoutConfig;
  /** How the on-call re-syncs from the CLI, e.g. `--stage prod`. */
  stage?: string;
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
  /** No running instance carries the environment's tag: nothing was recorded or sent. */
  empty: boolean;
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
  if (request.instanceIds !== undefined && request.resume !== true) {
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
    empty: targets.reachable.length === 0 && targets.unreachable.length === 0,
  };
  if (request.dryRun === true || (summary.empty && request.skipIfEmpty === true)) return summary;

  // The sweep first: whatever happens to this run from here on, the rollout has a safety net.
  // A resume was asked for by the rollout's sweep, which goes on: no second chain.
  if (request.resume !== true) await deps.ledger.scheduleSweep(request.rolloutId);
  const created = await deps.store.create(
    {
      rolloutId: request.rolloutId,
      trigger: request.trigger,
      environment: request.environment,
      parameters: summary.parameters,
      files: request.files.map(({ parameter, path }) => ({ parameter, path })),
      ...(request.version === undefined ? {} : { version: request.version }),
      ...(request.sources === undefined ? {} : { sources: request.sources }),
      ...(request.instanceIds === undefined ? {} : { instanceIds: request.instanceIds }),
    },
    newTargets(request.files, targets.reachable, targets.unreachable),
  );
  let toSend: Map<string, string[]>;
  if (created) {
    toSend = new Map(request.files.map((file) => [file.path, targets.reachable]));
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
    const instanceIds = toSend.get(file.path) ?? [];
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
          path: chunk.path,
          attempt: 1,
          instanceIds: chunk.instanceIds,
        }),
    });
    summary.commands.push(...sent);
    summary.failedChunks.push(...failed);
  }
  const refused = sendFailures(summary.failedChunks, deps);
  await deps.store.releaseSending(request.rolloutId);
  await deps.ledger.record(request.rolloutId, refused);
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

/** After an interrupted run: per file path, the pending first-attempt targets no command covers. */
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
    toSend.set(target.path, [...(toSend.get(target.path) ?? []), target.instanceId]);
  }
  summary.targeted = loaded.targets
    .filter((t) => t.status !== 'Unreachable')
    .map((t) => t.instanceId);
  summary.targeted = [...new Set(summary.targeted)];
  return toSend;
}

/** A refused first attempt is retried like any other failed attempt, while attempts remain. */
function sendFailures(failed: FailedChunk[], deps: FanOutDeps): Transition[] {
  const now = deps.ledger.now();
  // One backoff for all: a refused chunk is retried as one chunk, not as 50 single retries.
  const jitter = Math.random();
  return failed.flatMap((chunk) => {
    const lastError = {
      status: 'SendCommandFailed',
      stderr: `${chunk.error.name}: ${chunk.error.message}`,
    };
    return chunk.instanceIds.map((instanceId) =>
      retryOrFail(
        { instanceId, parameter: chunk.parameter, path: chunk.path, fromAttempt: 1 },
        lastError,
        deps.config.retry,
        now,
        () => jitter,
      ),
    );
  });
}
