import type { StageConfig } from '../config.ts';
import type { Trigger } from './trigger.ts';

/**
 * The rollout model: a rollout pushes some files of one environment to a resolved set of
 * instances; each (instance, file) pair is a *target* that ends in exactly one terminal state.
 * Plain data and pure rules only; the store persists it and the ledger moves it.
 */

/** The states a target can be in; all but Pending are terminal. */
export type TargetStatus =
  | 'Pending'
  | 'Success'
  | 'Unchanged'
  | 'Failed'
  | 'Unreachable'
  | 'Superseded';
export type TerminalStatus = Exclude<TargetStatus, 'Pending'>;

/** Why an attempt did not succeed, as the on-call reads it. Never holds a secret value. */
export interface LastError {
  /** Run Command status and details ("Failed", "Delivery Timed Out"), or our own code. */
  status: string;
  exitCode?: number;
  /** What the exit code means (shared/document-contract.ts). */
  meaning?: string;
  /** The last line of the command's stderr. */
  stderr?: string;
}

/** One file of a rollout: a parameter written to a path. A parameter may go to several paths. */
export interface RolloutFile {
  parameter: string;
  path: string;
}

/**
 * One version of a source a rollout covers: a parameter's version (as text), a secret's
 * AWSCURRENT VersionId, or each parameter under a path at the moment the rollout started.
 */
export interface SourceVersion {
  name: string;
  version: string;
}

/** What names a target within its rollout: the instance and the file's path. */
export interface TargetRef {
  instanceId: string;
  /** The file's path; unique per instance within an environment (the config refuses two writers). */
  path: string;
  parameter: string;
}

export interface Target extends TargetRef {
  status: TargetStatus;
  /** 1 for the first send; each retry adds one. */
  attempt: number;
  commandId?: string;
  commandIds: string[];
  versionWritten?: number;
  /** A secret's VersionId now on disk (Secrets Manager sources). */
  revisionWritten?: string;
  /** How many parameters the composed file holds (parametersByPath sources). */
  entriesWritten?: number;
  reason?: string;
  lastError?: LastError;
  /** When the current attempt (≥ 2) is due: its retry message waits in SQS until then. */
  retryAt?: string;
  /** While in the future, a retrier holds the claim to send the current attempt. */
  claimedUntil?: string;
  /** How often the sweep re-queued the current attempt because nobody had sent it. */
  resends?: number;
  /** Its stage in a staged rollout (0 is the canary); absent in other rollouts. */
  stage?: number;
  updatedAt: string;
}

export interface Counts {
  total: number;
  pending: number;
  success: number;
  unchanged: number;
  failed: number;
  unreachable: number;
  superseded: number;
  /** Unreachable because the instance was terminated (scale-in): counted, never alerted. */
  terminated: number;
  retries: number;
}

export type RolloutState = 'Creating' | 'InProgress' | 'Settled';
/**
 * None: nothing to say. Pending: settled with problems, alert not yet claimed. Sending: one
 * caller claimed it until `alertClaimUntil` (a caller that dies leaves it to the next). Sent.
 */
export type AlertState = 'None' | 'Pending' | 'Sending' | 'Sent';

export interface Rollout {
  rolloutId: string;
  trigger: Trigger;
  environment: string;
  parameters: string[];
  files: RolloutFile[];
  /** The parameter's version when the rollout started (single-parameter rollouts). */
  version?: number;
  /** The instances it was restricted to (a resync of some, a bootstrap, a rollback), if any. */
  instanceIds?: string[];
  /**
   * Set when the restriction is too long for the rollout item (a rollback of thousands of
   * instances): it is kept in this many items of its own, which `restrictionOf` and `load` read
   * (`load` into `instanceIds`). Any other read of the rollout item, `getRollout` included, has
   * this and no `instanceIds`.
   */
  instanceIdPages?: number;
  /** Every source version it covers (a secret's VersionId, each parameter under a path). */
  sources?: SourceVersion[];
  /** When the store recorded it, to the millisecond: the order rollouts really started in. */
  createdAt: string;
  settledAt?: string;
  state: RolloutState;
  alert: AlertState;
  alertClaimUntil?: string;
  counts: Counts;
  /** While set and in the future, a run is sending this rollout's first attempts. */
  sendingUntil?: string;
  /** Set once every planned first send is queued: the plan is done, the workers send. */
  queuedChunks?: number;
  /** Its creator planned it in parts (a takeover does the same, whatever the fleet is now). */
  inParts?: boolean;
  /**
   * A large rollout planned in parts (parts.ts): how many, their chunks in all, and the last
   * chunk's planned turn. Its targets are recorded part by part by the send workers, and it
   * settles only once every part is queued (`queuedChunks`).
   */
  parts?: { count: number; chunks: number; lastTurn: string };
  /** Parts whose sends are queued so far (all of them: `queuedChunks` is set). */
  partsQueued?: number;
  /** The version each parameter is written at, when pinned (else instances fetch the latest). */
  pins?: Record<string, number>;
  /** A staged rollout's stages and where it stands (absent: not staged). */
  stages?: StageProgress;
}

/**
 * Where a staged rollout stands. Sending: the current stage's commands are out. Baking: the
 * stage is done and must stay healthy until `bakeUntil`. Halted: a stage failed or an alarm
 * fired; its instances were rolled back and nothing more is sent until a person resumes or
 * abandons it. Done: every stage passed. Abandoned: a person (or a newer change) ended it.
 */
export type StagePhase = 'Sending' | 'Baking' | 'Halted' | 'Done' | 'Abandoned';

export interface StageProgress {
  /** Instances in each stage, in order (stage 0 is the canary). */
  instances: number[];
  /** Targets in each stage (instances × files). */
  targets: number[];
  bakeSeconds: number;
  alarms: string[];
  current: number;
  phase: StagePhase;
  /** When the current stage was started. */
  startedAt: string;
  bakeUntil?: string;
  /** The version a rollback writes: the last version that reached the whole environment. */
  previousVersion?: number;
  /** Why and where it halted (the last halt, if resumed since). */
  halt?: StageHalt;
  /** Who resumed or abandoned it (a person, or secrets-fanout for a newer change), and when. */
  decisions?: Array<{
    action: 'resume' | 'abandon';
    by: string;
    at: string;
    stage: number;
    /** Why it was abandoned: what its untouched targets say. */
    reason?: string;
  }>;
  /**
   * A resume whose consequences (the pin lifted, the rolled-back instances given the version
   * again) are not all done: whoever looks next (the resume's retry, the sweep) finishes them.
   */
  resumeOwed?: boolean;
}

export interface StageHalt {
  stage: number;
  reason: string;
  at: string;
  /** The rollout that rolls the reached instances back (absent: no earlier version to write). */
  rollbackRolloutId?: string;
  /** Failed targets counted when it halted: the halt's alert named them, the settle's does not. */
  failedAtHalt: number;
}

/**
 * Each stage's cumulative end (how many instances have the change once it is done) for `n`
 * reachable instances: the canary, then the waves, then everyone. A percentage is of `n`,
 * rounded up; each stage adds at least one instance; stages past `n` are dropped. [] for none.
 * Never throws.
 */
export function stageEnds(n: number, config: Pick<StageConfig, 'canary' | 'waves'>): number[] {
  const ends: number[] = [];
  for (const size of [config.canary, ...config.waves]) {
    const wanted =
      typeof size === 'number' ? size : Math.ceil((n * Number(size.slice(0, -1))) / 100);
    const end = Math.min(n, Math.max((ends.at(-1) ?? 0) + 1, wanted));
    if (end > (ends.at(-1) ?? 0)) ends.push(end);
  }
  if (n > (ends.at(-1) ?? 0)) ends.push(n);
  return ends;
}

/**
 * Puts each pending target in its stage: instances in id order (the canary is the first), all
 * files of one instance in the same stage. Returns the targets and the count of instances and
 * targets per stage. Unreachable targets get no stage. Never throws.
 */
export function assignStages(
  targets: readonly NewTarget[],
  config: Pick<StageConfig, 'canary' | 'waves'>,
): { targets: NewTarget[]; instances: number[]; perStage: number[] } {
  const ids = [...new Set(targets.filter((t) => t.status === 'Pending').map((t) => t.instanceId))];
  ids.sort();
  const ends = stageEnds(ids.length, config);
  const stageOf = new Map<string, number>();
  ids.forEach((id, position) => {
    stageOf.set(
      id,
      ends.findIndex((end) => position < end),
    );
  });
  const staged = targets.map((t) => {
    const stage = stageOf.get(t.instanceId);
    return t.status === 'Pending' && stage !== undefined ? { ...t, stage } : t;
  });
  const perStage = ends.map((_, k) => staged.filter((t) => t.stage === k).length);
  const instances = ends.map((end, k) => end - (ends[k - 1] ?? 0));
  return { targets: staged, instances, perStage };
}

/** Targets of the stages after `stage`: still pending, never sent, until theirs. Never throws. */
export function targetsAfter(stages: Pick<StageProgress, 'targets'>, stage: number): number {
  return stages.targets.slice(stage + 1).reduce((sum, n) => sum + n, 0);
}

/**
 * A planned first send: ≤50 instances of one file, one SendCommand. Planned when the rollout is
 * created and kept, so a run that takes over resends exactly the chunks not yet sent.
 */
export interface SendChunk {
  parameter: string;
  path: string;
  /** Its place among the file's chunks (the key). */
  index: number;
  instanceIds: string[];
  /** When its command was sent and recorded (absent: not yet). */
  sentAt?: string;
  /** Its stage in a staged rollout: it is queued only once that stage starts. */
  stage?: number;
}

export interface CommandRecord {
  commandId: string;
  parameter: string;
  path: string;
  attempt: number;
  instanceIds: string[];
  sentAt: string;
}

export interface NewTarget extends TargetRef {
  status: 'Pending' | 'Unreachable';
  reason?: string;
  stage?: number;
}

/** A target's move out of `fromAttempt`: to a terminal state, or to the next attempt. */
export type Transition = TargetRef & {
  fromAttempt: number;
  /** The command this answers; the update applies only while it is the target's command. */
  commandId?: string;
  /**
   * The attempt was not sent (the sweep found no command; the retrier could not send): the
   * update applies only while no command is recorded and no sender holds a live claim.
   */
  unsent?: true;
  lastError?: LastError;
} & (
    | {
        to: TerminalStatus;
        versionWritten?: number;
        revisionWritten?: string;
        entriesWritten?: number;
        reason?: string;
      }
    | { to: 'Retry' /** When the next attempt is due (ISO 8601). */; retryAt: string }
  );

/** A target's identity within its rollout: `instanceId#path`. Never throws. */
export function targetId(target: { instanceId: string; path: string }): string {
  return `${target.instanceId}#${target.path}`;
}

/** The command that carried each target's first attempt, by targetId. Never throws. */
export function firstAttemptCommands(commands: CommandRecord[]): Map<string, string> {
  const first = new Map<string, string>();
  for (const command of commands.filter((c) => c.attempt === 1)) {
    for (const instanceId of command.instanceIds) {
      first.set(targetId({ instanceId, path: command.path }), command.commandId);
    }
  }
  return first;
}

/**
 * Whether a rollout's result should page the on-call: anything failed, or unreachable for a
 * reason other than the instance being terminated (a scale-in during a rollout is normal), or a
 * drift repair that found instances drifted (they are named). Never throws.
 */
export function needsAlert(counts: Counts, trigger?: Trigger): boolean {
  return hasProblems(counts) || driftRepaired(counts, trigger) > 0;
}

/**
 * Whether a rollout's settling pages the on-call: as needsAlert, except that a staged rollout's
 * halt had its own alert, so the failures it named are not paged again, and an abandoned one
 * was a person's (or a newer change's) decision. Never throws.
 */
export function settleAlertOwed(rollout: Pick<Rollout, 'counts' | 'trigger' | 'stages'>): boolean {
  if (rollout.stages?.phase === 'Abandoned') return false;
  return needsAlert(countsSinceHalt(rollout), rollout.trigger);
}

/**
 * The counts without the failures a halt already reported (a person resumed past them: the
 * resume rollout brings those instances the version again). Never throws.
 */
export function countsSinceHalt(rollout: Pick<Rollout, 'counts' | 'stages'>): Counts {
  const failed = rollout.counts.failed - (rollout.stages?.halt?.failedAtHalt ?? 0);
  return { ...rollout.counts, failed: Math.max(0, failed) };
}

/** A target that pages: failed, or unreachable for another reason than termination. */
export function isProblem(target: Pick<Target, 'status' | 'reason'>): boolean {
  return (
    target.status === 'Failed' || (target.status === 'Unreachable' && target.reason !== TERMINATED)
  );
}

/** Why a staged rollout was abandoned, as its untouched targets say. Never throws. */
export function abandonReason(stages: Pick<StageProgress, 'decisions'>): string {
  const decision = stages.decisions?.filter((d) => d.action === 'abandon').at(-1);
  return decision?.reason ?? `abandoned by ${decision?.by ?? 'someone'}`;
}

/**
 * Whether a rollout's pinned version only moves forward on an instance (a staged rollout's, a
 * resume's: NeverOlder), unlike a rollback's or a halted parameter's repair. Never throws.
 */
export function movesForwardOnly(rollout: {
  stages?: unknown;
  trigger: Pick<Trigger, 'type'>;
}): boolean {
  return rollout.stages !== undefined || rollout.trigger.type === 'resume';
}

/** Whether a settled rollout left failed or (not terminated) unreachable targets. Never throws. */
export function hasProblems(counts: Counts): boolean {
  return counts.failed > 0 || counts.unreachable - counts.terminated > 0;
}

/**
 * Files a drift repair rewrote: in a drift rollout a `Success` target is one whose content was
 * not what Parameter Store holds (the document rewrites nothing when it is), so the instance had
 * drifted. 0 for any other trigger. Never throws.
 */
export function driftRepaired(counts: Counts, trigger?: Trigger): number {
  return trigger?.type === 'drift' ? counts.success : 0;
}

/** The counts of a set of targets as they stand. Never throws. */
export function countTargets(targets: Array<{ status: TargetStatus; reason?: string }>): Counts {
  const count = (status: TargetStatus) => targets.filter((t) => t.status === status).length;
  return {
    total: targets.length,
    pending: count('Pending'),
    success: count('Success'),
    unchanged: count('Unchanged'),
    failed: count('Failed'),
    unreachable: count('Unreachable'),
    superseded: count('Superseded'),
    terminated: targets.filter((t) => t.status === 'Unreachable' && t.reason === TERMINATED).length,
    retries: 0,
  };
}

/** The reason of an Unreachable target whose instance was terminated (never alerted). */
export const TERMINATED = 'InstanceTerminated';

/**
 * Whether rollout `later` makes a pending retry of rollout `earlier` (same parameter, same
 * instance and file) unnecessary. Only a rollout that started after it, by the store's clock,
 * can: its commands fetch the parameter later, so they write at least what the retry would.
 * When both versions are known a lower version never supersedes a higher one, whatever the
 * order of the events that started them (two puts in one second can be delivered reversed), and
 * a higher one always supersedes a lower one.
 * Rollout ids are never compared: their time is the event's, to the second. Never throws.
 */
export function supersedes(
  later: Pick<Rollout, 'createdAt' | 'rolloutId' | 'version'>,
  earlier: Pick<Rollout, 'createdAt' | 'rolloutId' | 'version'>,
): boolean {
  if (later.rolloutId === earlier.rolloutId) return false;
  if (later.version !== undefined && earlier.version !== undefined) {
    if (later.version < earlier.version) return false;
    // A higher version is newer content whichever started first: a pinned rollout (a staged
    // one's stage) writes exactly its version, so its retry must never land after it.
    if (later.version > earlier.version) return true;
  }
  return later.createdAt > earlier.createdAt;
}

// SendCommand accepts at most 50 instance ids per call
// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html).
const MAX_INSTANCES_PER_CHUNK = 50;

/**
 * One part of a large rollout's plan: chunks in turn order with their turns, and the
 * unreachable targets recorded with them. One send worker records and queues a part.
 */
export interface PlanPart {
  part: number;
  chunks: Array<SendChunk & { notBefore: string }>;
  unreachable: NewTarget[];
}

/**
 * The first sends of a rollout: per file, its pending targets in instance order, ≤50 a chunk.
 * The same targets always give the same chunks. Never throws.
 */
export function planChunks(targets: readonly NewTarget[]): SendChunk[] {
  const byFile = new Map<string, { parameter: string; byStage: Map<number, string[]> }>();
  for (const target of targets) {
    if (target.status !== 'Pending') continue;
    const file = byFile.get(target.path) ?? { parameter: target.parameter, byStage: new Map() };
    const stage = target.stage ?? -1;
    file.byStage.set(stage, [...(file.byStage.get(stage) ?? []), target.instanceId]);
    byFile.set(target.path, file);
  }
  return [...byFile.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .flatMap(([path, { parameter, byStage }]) => {
      // A chunk never spans two stages; its index counts on across them (the key is per file).
      const chunks: SendChunk[] = [];
      for (const [stage, ids] of [...byStage].sort(([a], [b]) => a - b)) {
        const sorted = [...ids].sort();
        for (let start = 0; start < sorted.length; start += MAX_INSTANCES_PER_CHUNK) {
          chunks.push({
            parameter,
            path,
            index: chunks.length,
            instanceIds: sorted.slice(start, start + MAX_INSTANCES_PER_CHUNK),
            ...(stage < 0 ? {} : { stage }),
          });
        }
      }
      return chunks;
    });
}
