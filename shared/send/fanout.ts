import type { EC2Client } from '@aws-sdk/client-ec2';
import type { SSMClient } from '@aws-sdk/client-ssm';
import {
  type FanoutConfig,
  type FileTarget,
  filesForEnvironment,
  type StageConfig,
  sourceOf,
} from '../config.ts';
import { InstancesNotInEnvironmentError, RolloutBusyError } from '../errors.ts';
import { logger } from '../platform/powertools.ts';
import type { Ledger } from '../rollout/ledger.ts';
import {
  assignStages,
  type NewTarget,
  planChunks,
  type Rollout,
  type SendChunk,
  type SourceVersion,
  type StageProgress,
} from '../rollout/model.ts';
import type { RolloutStore } from '../rollout/store.ts';
import type { Trigger } from '../rollout/trigger.ts';
import type { FailedChunk, SentChunk } from './commands.ts';
import { resolveTargets, type UnreachableInstance } from './fleet.ts';
import { holdsOf } from './holds.ts';
import { planInParts, requeueParts } from './parts.ts';
import { turnsFrom } from './plan.ts';
import { leaseAfter, type QueuedTurns, queueTurns, reserveTurns } from './turns.ts';

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
  /** Requested instances that are gone are left out rather than refused (a rollback). */
  tolerateMissing?: boolean;
  /**
   * The version to write of each parameter; absent: the latest, or for a new instance, a drift
   * repair or a re-sync, the last complete version of a parameter a halted rollout holds.
   */
  pins?: Record<string, number>;
  /** Stage the rollout (a parameter change in an environment with custom.fanout.rollout.stages). */
  stages?: StageConfig;
  /** What a halted stage is rolled back to (staged rollouts). */
  previousVersion?: number;
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
  /** Commands this run sent itself (the first chunks due); the rest are `queued`. */
  commands: SentChunk[];
  failedChunks: FailedChunk[];
  /** Chunks queued for the send workers, each delayed until its turn. */
  queued: number;
  /** True when an earlier, interrupted run of the same rollout had already sent some commands. */
  resumed: boolean;
  dryRun: boolean;
  /** No running instance carries the environment's tag: nothing was recorded or sent. */
  empty: boolean;
}

/**
 * The one fan-out path shared by propagate, resync and bootstrap. It plans; send workers send:
 * 1. resolve the environment's instances (DescribeInstanceInformation calls in parallel);
 * 2. record the rollout, its targets and its planned chunks (≤50 instances of one file each;
 *    BatchWriteItem calls in parallel), so no run ever has to resolve them again;
 * 3. reserve the chunks' turns in the pace every rollout shares (`fetchesPerSecond`,
 *    `commandsPerSecond`) and queue each chunk on the send queue, delayed until its turn; the
 *    first few whose turn is now are sent here at once (a bootstrap or a small rollout never
 *    waits for a queue, and new instances never wait behind a big rollout's pace);
 * 4. mark the rollout queued.
 * A rollout of more than `planPartTargets` targets records only its first part here and
 * leaves the rest to the send workers (parts.ts), so no invocation's work grows with the fleet
 * but for the resolution, done with independent calls in flight. Run again with the same rollout id (a
 * redelivered event, a resume), it continues where the first run stopped: a Creating rollout
 * gets its missing targets, an InProgress one its unqueued chunks, a queued one nothing (the
 * workers' chunk claims keep a chunk queued twice from being sent twice). While another run
 * holds the rollout's lease it throws RolloutBusyError, so the event is retried instead of
 * dropped. Throws InstancesNotInEnvironmentError (before anything is recorded or sent) when a
 * requested instance is not in the environment, and the SDK error if the instances cannot be
 * resolved or the store or queue cannot be written.
 */
export async function fanOut(deps: FanOutDeps, request: FanOutRequest): Promise<RolloutSummary> {
  if (request.resume === true) {
    // Recorded already: only what was not queued is left, and no need to resolve again.
    const rollout = await deps.store.getRollout(request.rolloutId);
    if (rollout !== undefined && rollout.state !== 'Creating') {
      return requeue(deps, request, rollout);
    }
  }
  const targets = await resolveTargets(deps, {
    tagKey: deps.config.tagKey,
    environment: request.environment,
    ...(request.instanceIds === undefined ? {} : { instanceIds: request.instanceIds }),
  });
  if (
    request.instanceIds !== undefined &&
    request.resume !== true &&
    request.tolerateMissing !== true
  ) {
    const found = new Set([...targets.reachable, ...targets.unreachable.map((u) => u.instanceId)]);
    const missing = request.instanceIds.filter((id) => !found.has(id));
    if (missing.length > 0) throw new InstancesNotInEnvironmentError(request.environment, missing);
  }
  const summary: RolloutSummary = {
    ...newSummary(request),
    targeted: targets.reachable,
    unreachable: targets.unreachable,
    dryRun: request.dryRun === true,
    empty: targets.reachable.length === 0 && targets.unreachable.length === 0,
  };
  if (request.dryRun === true || (summary.empty && request.skipIfEmpty === true)) return summary;

  // The sweep first: whatever happens to this run from here on, the rollout has a safety net.
  // A resume was asked for by the rollout's sweep, which goes on: no second chain.
  if (request.resume !== true) await deps.ledger.scheduleSweep(request.rolloutId);
  const pins = request.pins ?? (await heldPins(deps, request));
  const all = newTargets(request.files, targets.reachable, targets.unreachable);
  const staged = request.stages === undefined ? undefined : assignStages(all, request.stages);
  const wanted = staged?.targets ?? all;
  // Too large for one invocation to record: in parts, the send workers record the rest (parts.ts).
  const inParts =
    staged === undefined &&
    request.trigger.type !== 'bootstrap' &&
    all.length > deps.config.rollout.planPartTargets;
  const record = {
    ...(inParts ? { inParts: true } : {}),
    rolloutId: request.rolloutId,
    trigger: request.trigger,
    environment: request.environment,
    parameters: summary.parameters,
    files: request.files.map(({ parameter, path }) => ({ parameter, path })),
    ...versionOf(request, pins),
    ...(request.sources === undefined ? {} : { sources: request.sources }),
    ...(request.instanceIds === undefined ? {} : { instanceIds: request.instanceIds }),
    ...(Object.keys(pins).length === 0 ? {} : { pins }),
    ...(staged === undefined || request.stages === undefined || staged.instances.length === 0
      ? {}
      : {
          stages: {
            instances: staged.instances,
            targets: staged.perStage,
            bakeSeconds: request.stages.bakeSeconds,
            alarms: request.stages.alarms,
            current: 0,
            phase: 'Sending' as const,
            startedAt: deps.ledger.now().toISOString(),
            ...(request.previousVersion === undefined
              ? {}
              : { previousVersion: request.previousVersion }),
          },
        }),
  };
  if (await deps.store.begin(record)) {
    if (inParts) return planned(summary, await planInParts(deps, request.rolloutId, all));
    await deps.store.finishCreating(request.rolloutId, wanted, true);
    // The chunks the store planned for exactly these targets: nothing to read back. A staged
    // rollout queues its first stage; the others wait for theirs.
    const chunks = planChunks(wanted).filter((c) => (c.stage ?? 0) === 0);
    await queueChunks(deps, request, chunks, summary, pins, request.stages);
    return summary;
  }
  const rollout = await deps.store.getRollout(request.rolloutId);
  if (rollout !== undefined && rollout.state !== 'Creating') {
    return requeue(deps, request, rollout);
  }
  // Another run of this rollout is creating it right now; try again once its lease runs out.
  await takeOver(deps, request.rolloutId);
  summary.resumed = true;
  // The creator's choice stands (the fleet may have changed size since): a creator in one piece
  // may have written targets already, one in parts has written none.
  if (rollout?.inParts === true) {
    return planned(summary, await planInParts(deps, request.rolloutId, all));
  }
  await deps.store.finishCreating(request.rolloutId, wanted);
  const recorded = await deps.store.getRollout(request.rolloutId);
  await queueChunks(
    deps,
    request,
    await unsentChunks(deps, request.rolloutId, summary, recorded),
    summary,
    recorded?.pins ?? pins,
    recorded?.stages,
  );
  return summary;
}

/** The summary of a plan in parts: what its first part sent and queued. */
function planned(summary: RolloutSummary, queued: QueuedTurns): RolloutSummary {
  summary.queued = queued.queued;
  summary.commands.push(...queued.commands);
  summary.failedChunks.push(...queued.failedChunks);
  return summary;
}

/**
 * The rollout's version: the version it pins when it writes one parameter at a pinned version
 * (a halted parameter's repair writes that, whatever Parameter Store holds), else the one it was
 * started for.
 */
function versionOf(request: FanOutRequest, pins: Record<string, number>): { version?: number } {
  const pinned = [...new Set(request.files.map((f) => pins[f.parameter]))];
  const [only] = pinned;
  if (pinned.length === 1 && only !== undefined) return { version: only };
  return request.version === undefined ? {} : { version: request.version };
}

// Rollouts that converge the fleet to what it should have rather than bring a new version: while
// a staged rollout of a parameter is halted (or was abandoned), they write its last complete
// version, never the halted one.
const REPAIRS = new Set(['bootstrap', 'drift', 'resync']);

/** The pinned versions of the request's held parameters (one read per parameter). */
async function heldPins(deps: FanOutDeps, request: FanOutRequest): Promise<Record<string, number>> {
  if (!REPAIRS.has(request.trigger.type)) return {};
  const names = request.files.filter((f) => sourceOf(f) === 'parameter').map((f) => f.parameter);
  const holds = await holdsOf(deps.store, request.environment, names);
  const pins = Object.fromEntries(
    [...holds].flatMap(([name, view]) => (view.state === 'pinned' ? [[name, view.version]] : [])),
  );
  if (Object.keys(pins).length > 0) {
    logger.info('halted parameters are written at their last complete version', {
      rolloutId: request.rolloutId,
      pins,
    });
  }
  return pins;
}

/**
 * Queues the chunks of a staged rollout's current stage (the stage was just started, under the
 * caller's sending lease). Throws the SDK error.
 */
export async function queueStage(deps: FanOutDeps, rollout: Rollout): Promise<RolloutSummary> {
  const summary: RolloutSummary = {
    ...newSummary({
      rolloutId: rollout.rolloutId,
      trigger: rollout.trigger,
      environment: rollout.environment,
      files: filesOfRollout(deps, rollout),
    }),
    resumed: true,
  };
  const chunks = await unsentChunks(deps, rollout.rolloutId, summary, rollout);
  await queueChunks(
    deps,
    {
      rolloutId: rollout.rolloutId,
      trigger: rollout.trigger,
      environment: rollout.environment,
      files: [],
    },
    chunks,
    summary,
    rollout.pins ?? {},
    rollout.stages,
  );
  return summary;
}

/** The configured files a recorded rollout writes (those still mapped). */
export function filesOfRollout(deps: Pick<FanOutDeps, 'config'>, rollout: Rollout): FileTarget[] {
  return filesForEnvironment(deps.config, rollout.environment).filter((file) =>
    rollout.files.some((f) => f.parameter === file.parameter && f.path === file.path),
  );
}

/** Takes the rollout's lease from a run that stopped; RolloutBusyError while it is live. */
async function takeOver(deps: FanOutDeps, rolloutId: string): Promise<void> {
  if (!(await deps.store.takeOverSending(rolloutId))) throw new RolloutBusyError(rolloutId);
}

/**
 * Resumes a recorded rollout whose planner stopped before it had queued every chunk (nothing
 * to do once all are queued: the workers are on it). Throws RolloutBusyError while another run
 * holds the lease.
 */
async function requeue(
  deps: FanOutDeps,
  request: FanOutRequest,
  rollout: Rollout,
): Promise<RolloutSummary> {
  const summary: RolloutSummary = { ...newSummary(request), resumed: true };
  if (rollout.queuedChunks !== undefined) return summary;
  // A staged rollout sends only while a stage is sending; halted or over, nothing is queued.
  if (rollout.stages !== undefined && rollout.stages.phase !== 'Sending') return summary;
  await takeOver(deps, request.rolloutId);
  if (rollout.parts !== undefined) {
    summary.queued = await requeueParts(deps, rollout);
    return summary;
  }
  await queueChunks(
    deps,
    request,
    await unsentChunks(deps, request.rolloutId, summary, rollout),
    summary,
    rollout.pins ?? {},
    rollout.stages,
  );
  return summary;
}

/**
 * The planned chunks not sent yet (of a staged rollout: of the stages started so far); a
 * resumed run reports their instances as targeted.
 */
async function unsentChunks(
  deps: FanOutDeps,
  rolloutId: string,
  summary: RolloutSummary,
  rollout: Rollout | undefined,
): Promise<SendChunk[]> {
  const started = rollout?.stages?.current ?? Number.POSITIVE_INFINITY;
  const chunks = (await deps.store.plannedChunks(rolloutId)).filter(
    (c) => c.sentAt === undefined && (c.stage ?? 0) <= started,
  );
  if (summary.resumed) summary.targeted = [...new Set(chunks.flatMap((c) => c.instanceIds))];
  return chunks;
}

/**
 * Gives every unsent chunk its turn in the shared pace and queues it (delayed until then); the
 * first few due now are sent at once. A bootstrap takes no turn: its one instance fetches
 * right away, whatever big rollout is going out. Then marks the rollout queued, with its
 * first-send lease running until the last turn plus a lease.
 */
async function queueChunks(
  deps: FanOutDeps,
  request: FanOutRequest,
  chunks: SendChunk[],
  summary: RolloutSummary,
  pins: Record<string, number>,
  stages?: Pick<StageProgress, 'alarms'>,
): Promise<void> {
  const now = deps.ledger.now();
  const turns =
    request.trigger.type === 'bootstrap' || chunks.length === 0
      ? turnsFrom(chunks, now, deps.config.rollout)
      : await reserveTurns(deps, chunks);
  planned(summary, await queueTurns(deps, { ...request, pins, stages }, turns));
  // Last: a run that stops before this is taken over, and queues what is still unsent.
  await deps.store.markQueued(
    request.rolloutId,
    turns.length,
    leaseAfter(turns.at(-1)?.notBefore ?? now.toISOString()),
  );
  // Nothing to send (every instance unreachable): settle and alert now, not at the first sweep.
  // A staged rollout looks at its stage now too: one whose commands all finished before it
  // was marked queued would otherwise wait for the sweep.
  if (turns.length === 0 || stages !== undefined) await deps.ledger.record(request.rolloutId, []);
}

/** A summary of nothing done yet for this request. */
function newSummary(request: FanOutRequest): RolloutSummary {
  return {
    rolloutId: request.rolloutId,
    trigger: request.trigger,
    environment: request.environment,
    parameters: [...new Set(request.files.map((file) => file.parameter))],
    ...(request.version === undefined ? {} : { version: request.version }),
    targeted: [],
    unreachable: [],
    commands: [],
    failedChunks: [],
    queued: 0,
    resumed: false,
    dryRun: false,
    empty: false,
  };
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
