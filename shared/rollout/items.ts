import type {
  CommandRecord,
  Counts,
  NewTarget,
  Rollout,
  SendChunk,
  StageProgress,
  Target,
  TerminalStatus,
} from './model.ts';

/**
 * The rollouts table's item layout: keys and the mapping between items and the model.
 *
 *   pk = R#<rolloutId>   sk = #ROLLOUT                 the rollout and its counters
 *                        sk = T#<instanceId>#<path>    one target: an instance and one file
 *                        sk = C#<commandId>            one SendCommand (≤50 instances, one file)
 *                        sk = S#<path>#<index>         a planned first send: ≤50 instances, one file
 *                        sk = Q#<part>                 a large rollout's part still to record (parts.ts)
 *   pk = PACE            sk = fetches                  when the next instance may fetch (all rollouts)
 *   pk = P#<parameter>   sk = <createdAt>#<rolloutId>  rollouts of a parameter, in start order
 *   pk = E#<environment> sk = <createdAt>#<rolloutId>  rollouts of an environment
 *   pk = B#<instanceId>  sk = <launch>                 the alert about a new instance, once
 *   pk = V#<environment> sk = <parameter>              its versions: the last complete, and the
 *                                                      halted rollout that pins it, if any
 */

// biome-ignore lint/suspicious/noExplicitAny: items are untyped until toRollout/toTarget/toCommand map them
export type Item = Record<string, any>;
export type Key = { pk: string; sk: string };

export const rolloutKey = (rolloutId: string) => ({ pk: `R#${rolloutId}`, sk: '#ROLLOUT' });
export const targetKey = (rolloutId: string, t: { instanceId: string; path: string }) => ({
  pk: `R#${rolloutId}`,
  sk: `T#${t.instanceId}#${t.path}`,
});
export const commandKey = (rolloutId: string, commandId: string) => ({
  pk: `R#${rolloutId}`,
  sk: `C#${commandId}`,
});
export const chunkKey = (rolloutId: string, c: { path: string; index: number }) => ({
  pk: `R#${rolloutId}`,
  sk: `S#${c.path}#${String(c.index).padStart(5, '0')}`,
});
export const partKey = (rolloutId: string, part: number) => ({
  pk: `R#${rolloutId}`,
  sk: `Q#${String(part).padStart(5, '0')}`,
});
/** One page of a large instance restriction (creating.ts `beginRollout`), in id order. */
export const instanceIdsKey = (rolloutId: string, page: number) => ({
  pk: `R#${rolloutId}`,
  sk: `I#${String(page).padStart(5, '0')}`,
});
export const PACE_KEY = { pk: 'PACE', sk: 'fetches' };
export const releaseKey = (environment: string, parameter: string) => ({
  pk: `V#${environment}`,
  sk: parameter,
});
export const launchAlertKey = (instanceId: string, launch: string) => ({
  pk: `B#${instanceId}`,
  sk: launch,
});

export const COUNTER_OF: Record<TerminalStatus, keyof Counts> = {
  Success: 'success',
  Unchanged: 'unchanged',
  Failed: 'failed',
  Unreachable: 'unreachable',
  Superseded: 'superseded',
};
export const COUNTER_ATTRIBUTE: Record<keyof Counts, string> = {
  total: 'nTotal',
  pending: 'nPending',
  success: 'nSuccess',
  unchanged: 'nUnchanged',
  failed: 'nFailed',
  unreachable: 'nUnreachable',
  superseded: 'nSuperseded',
  terminated: 'nTerminated',
  retries: 'nRetries',
};

/** An entry of a parameter's or environment's rollout index. */
export interface IndexEntry {
  rolloutId: string;
  createdAt: string;
  triggerType: Rollout['trigger']['type'];
  version?: number;
}

export function indexPk(by: { parameter: string } | { environment: string }): string {
  return 'parameter' in by ? `P#${by.parameter}` : `E#${by.environment}`;
}

export function counterAttributes(counts: Counts): Record<string, number> {
  return Object.fromEntries(
    (Object.keys(COUNTER_ATTRIBUTE) as Array<keyof Counts>).map((c) => [
      COUNTER_ATTRIBUTE[c],
      counts[c],
    ]),
  );
}

export function toIndexEntry(item: Item): IndexEntry {
  return {
    rolloutId: item.rolloutId,
    createdAt: item.createdAt,
    triggerType: item.triggerType,
    ...(item.version === undefined ? {} : { version: Number(item.version) }),
  };
}

export function toRollout(item: Item): Rollout {
  const counts = Object.fromEntries(
    (Object.keys(COUNTER_ATTRIBUTE) as Array<keyof Counts>).map((c) => [
      c,
      Number(item[COUNTER_ATTRIBUTE[c]] ?? 0),
    ]),
  ) as unknown as Counts;
  return {
    rolloutId: item.rolloutId,
    trigger: item.trigger,
    environment: item.environment,
    parameters: item.parameters ?? [],
    files: item.files ?? [],
    ...(item.version === undefined ? {} : { version: Number(item.version) }),
    ...(item.instanceIds === undefined ? {} : { instanceIds: item.instanceIds }),
    ...(item.instanceIdPages === undefined
      ? {}
      : { instanceIdPages: Number(item.instanceIdPages) }),
    ...(item.sources === undefined ? {} : { sources: item.sources }),
    createdAt: item.createdAt,
    ...(item.settledAt === undefined ? {} : { settledAt: item.settledAt }),
    state: item.state,
    alert: item.alert,
    ...(item.alertClaimUntil === undefined ? {} : { alertClaimUntil: item.alertClaimUntil }),
    counts,
    ...(item.sendingUntil === undefined ? {} : { sendingUntil: item.sendingUntil }),
    ...(item.queuedChunks === undefined ? {} : { queuedChunks: Number(item.queuedChunks) }),
    ...(item.inParts === true ? { inParts: true } : {}),
    ...(item.parts === undefined ? {} : { parts: toParts(item.parts) }),
    ...(item.partsQueued === undefined ? {} : { partsQueued: Number(item.partsQueued) }),
    ...(item.pins === undefined ? {} : { pins: numbers(item.pins) }),
    ...(item.stages === undefined ? {} : { stages: toStages(item.stages) }),
  };
}

function toParts(item: Item): NonNullable<Rollout['parts']> {
  return { count: Number(item.count), chunks: Number(item.chunks), lastTurn: item.lastTurn };
}

export function toTarget(item: Item): Target {
  return {
    instanceId: item.instanceId,
    parameter: item.parameter,
    path: item.path,
    status: item.status,
    attempt: Number(item.attempt),
    ...(item.commandId === undefined ? {} : { commandId: item.commandId }),
    commandIds: item.commandIds ?? [],
    ...(item.versionWritten === undefined ? {} : { versionWritten: Number(item.versionWritten) }),
    ...(item.revisionWritten === undefined ? {} : { revisionWritten: item.revisionWritten }),
    ...(item.entriesWritten === undefined ? {} : { entriesWritten: Number(item.entriesWritten) }),
    ...(item.reason === undefined ? {} : { reason: item.reason }),
    ...(item.lastError === undefined ? {} : { lastError: item.lastError }),
    ...(item.retryAt === undefined ? {} : { retryAt: item.retryAt }),
    ...(item.claimedUntil === undefined ? {} : { claimedUntil: item.claimedUntil }),
    ...(item.resends === undefined ? {} : { resends: Number(item.resends) }),
    ...(item.stage === undefined ? {} : { stage: Number(item.stage) }),
    updatedAt: item.updatedAt,
  };
}

export function toChunk(item: Item): SendChunk {
  return {
    parameter: item.parameter,
    path: item.path,
    index: Number(item.index),
    instanceIds: item.instanceIds ?? [],
    ...(item.sentAt === undefined ? {} : { sentAt: item.sentAt }),
    ...(item.stage === undefined ? {} : { stage: Number(item.stage) }),
  };
}

/** A map of numbers as DynamoDB returns it (numbers may come back as strings). */
function numbers(item: Item): Record<string, number> {
  return Object.fromEntries(Object.entries(item).map(([k, v]) => [k, Number(v)]));
}

function toStages(item: Item): StageProgress {
  return {
    ...item,
    instances: (item.instances ?? []).map(Number),
    targets: (item.targets ?? []).map(Number),
    bakeSeconds: Number(item.bakeSeconds),
    alarms: item.alarms ?? [],
    current: Number(item.current),
    ...(item.decisions === undefined
      ? {}
      : {
          decisions: item.decisions.map((d: Item) => ({ ...d, stage: Number(d.stage) })),
        }),
    ...(item.previousVersion === undefined
      ? {}
      : { previousVersion: Number(item.previousVersion) }),
    ...(item.halt === undefined
      ? {}
      : {
          halt: {
            ...item.halt,
            stage: Number(item.halt.stage),
            failedAtHalt: Number(item.halt.failedAtHalt),
          },
        }),
  } as StageProgress;
}

/** A parameter's versions in one environment, as the release item holds them. */
export interface Release {
  /** The last version a change rollout delivered to the whole environment without a problem. */
  completeVersion?: number;
  /** The newest version a staged change started for: an older staged rollout goes no further. */
  latestChange?: number;
  /**
   * The staged rollout that holds the parameter: while it stages, drift repair and re-syncs
   * leave the parameter to it; once halted or abandoned, new instances, drift repair and
   * re-syncs write `pinned`. The state here is what it was when written: the holder rollout's
   * own stage says what it is now (a stale hold is ignored).
   */
  hold?: {
    rolloutId: string;
    version: number;
    state: 'Staging' | 'Halted' | 'Abandoned';
    /** What new instances, drift repair and re-syncs write meanwhile (absent: nothing earlier). */
    pinned?: number;
  };
}

export function toRelease(item: Item | undefined): Release {
  if (item === undefined) return {};
  return {
    ...(item.completeVersion === undefined
      ? {}
      : { completeVersion: Number(item.completeVersion) }),
    ...(item.latestChange === undefined ? {} : { latestChange: Number(item.latestChange) }),
    ...(item.hold === undefined
      ? {}
      : {
          hold: {
            rolloutId: item.hold.rolloutId,
            version: Number(item.hold.version),
            state: item.hold.state,
            ...(item.hold.pinned === undefined ? {} : { pinned: Number(item.hold.pinned) }),
          },
        }),
  };
}

export function toCommand(item: Item): CommandRecord {
  return {
    commandId: item.commandId,
    parameter: item.parameter,
    path: item.path,
    attempt: Number(item.attempt),
    instanceIds: item.instanceIds ?? [],
    sentAt: item.sentAt,
  };
}

/** A new target's item: attempt 1, nothing sent yet. */
export function newTargetItem(
  rolloutId: string,
  target: NewTarget,
  at: string,
  expiresAt: number,
): Item {
  return {
    ...targetKey(rolloutId, target),
    type: 'target',
    ...target,
    attempt: 1,
    commandIds: [],
    updatedAt: at,
    expiresAt,
  };
}
