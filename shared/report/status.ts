import { InvalidInputError } from '../errors.ts';
import { MAX_INSTANCES_PER_PAGE, type RolloutListRequest } from '../messages/status-requests.ts';
import {
  type Counts,
  driftRepaired,
  firstAttemptCommands,
  type LastError,
  type Rollout,
  type StageProgress,
  type Target,
  type TargetStatus,
  targetId,
} from '../rollout/model.ts';
import type { RolloutReader } from '../rollout/reader.ts';
import { describeTrigger } from '../rollout/trigger.ts';
import { stageName } from '../stages/stage-info.ts';

export interface InstanceView {
  instanceId: string;
  parameter: string;
  path: string;
  status: TargetStatus;
  attempts: number;
  versionWritten?: number;
  /** A secret's VersionId on disk (Secrets Manager sources). */
  revisionWritten?: string;
  /** Entries of a file composed from a parameter path. */
  entriesWritten?: number;
  reason?: string;
  lastError?: LastError;
  /** The command of the latest attempt; its output is in the command output log group. */
  commandId?: string;
}

export interface StagesView {
  /** "stage 2 of 3", "the canary (stage 1 of 3)". */
  current: string;
  phase: StageProgress['phase'];
  /** Instances per stage. */
  instances: number[];
  bakeUntil?: string;
  alarms: string[];
  rollbackTo?: number;
  halt?: StageProgress['halt'];
  decisions?: StageProgress['decisions'];
  /** A sentence for the on-call: where it stands and what can be done. */
  summary: string;
}

export interface RolloutView {
  rolloutId: string;
  trigger: Rollout['trigger'];
  environment: string;
  parameters: string[];
  version?: number;
  /** The source versions it covers (secrets, parameters under a path). */
  sources?: Rollout['sources'];
  state: Rollout['state'];
  createdAt: string;
  settledAt?: string;
  counts: Counts;
  /** A drift repair: files it rewrote because they had drifted (its `Success` targets). */
  driftRepaired?: number;
  /** A staged rollout: its stages and where it stands. */
  stages?: StagesView;
  /** The versions it writes, when pinned (a stage, a rollback, a halted parameter). */
  pins?: Record<string, number>;
  /** A page of the instances; `nextToken` asks for the next one. */
  instances: InstanceView[];
  nextToken?: string;
}

/**
 * One rollout with a page of its instances (counts always cover all of them), or undefined if
 * there is no such rollout; `nextToken` is there while more instances follow. Throws
 * InvalidInputError for a token that is not one this view handed out, and the SDK error.
 */
export async function rolloutView(
  store: RolloutReader,
  rolloutId: string,
  page: { limit: number; nextToken?: string } = { limit: MAX_INSTANCES_PER_PAGE },
): Promise<RolloutView | undefined> {
  const after = page.nextToken === undefined ? undefined : decodeToken(page.nextToken, rolloutId);
  const loaded = await store.loadPage(rolloutId, page.limit, after);
  if (loaded === undefined) return undefined;
  const { rollout, targets, commands, lastKey } = loaded;
  const firstCommand = firstAttemptCommands(commands);
  return {
    rolloutId: rollout.rolloutId,
    trigger: rollout.trigger,
    environment: rollout.environment,
    parameters: rollout.parameters,
    ...(rollout.version === undefined ? {} : { version: rollout.version }),
    ...(rollout.sources === undefined ? {} : { sources: rollout.sources }),
    state: rollout.state,
    createdAt: rollout.createdAt,
    ...(rollout.settledAt === undefined ? {} : { settledAt: rollout.settledAt }),
    counts: rollout.counts,
    ...(rollout.trigger.type === 'drift'
      ? { driftRepaired: driftRepaired(rollout.counts, rollout.trigger) }
      : {}),
    ...(rollout.stages === undefined ? {} : { stages: stagesView(rollout.stages) }),
    ...(rollout.pins === undefined ? {} : { pins: rollout.pins }),
    instances: targets.map((t) => instanceView(t, firstCommand.get(targetId(t)))),
    ...(lastKey === undefined ? {} : { nextToken: encodeToken(lastKey) }),
  };
}

/** A staged rollout's stages as the on-call reads them. Never throws. */
export function stagesView(stages: StageProgress): StagesView {
  const current = stageName(stages, stages.current);
  const summary = {
    Sending: `sending ${current}`,
    Baking: `${current} passed; baking until ${stages.bakeUntil ?? '?'}, then the next stage`,
    Halted: `HALTED at ${stageName(stages, stages.halt?.stage ?? stages.current)}: ${stages.halt?.reason ?? '?'}; resume or abandon it with the resync endpoint`,
    Done: `every stage passed (${stages.instances.length} stages)`,
    Abandoned: `abandoned at ${current}: later stages were never sent`,
  }[stages.phase];
  return {
    current,
    phase: stages.phase,
    instances: stages.instances,
    ...(stages.bakeUntil === undefined ? {} : { bakeUntil: stages.bakeUntil }),
    alarms: stages.alarms,
    ...(stages.previousVersion === undefined ? {} : { rollbackTo: stages.previousVersion }),
    ...(stages.halt === undefined ? {} : { halt: stages.halt }),
    ...(stages.decisions === undefined ? {} : { decisions: stages.decisions }),
    summary,
  };
}

// The token is the last target key of the page, base64url: opaque to callers, checked on return.
function encodeToken(lastKey: string): string {
  return Buffer.from(lastKey, 'utf8').toString('base64url');
}

function decodeToken(token: string, rolloutId: string): string {
  const key = Buffer.from(token, 'base64url').toString('utf8');
  if (!/^T#i-[0-9a-f]{8,17}#\/[A-Za-z0-9_./-]+$/.test(key) || encodeToken(key) !== token) {
    throw new InvalidInputError(`nextToken is not one a page of rollout ${rolloutId} returned`);
  }
  return key;
}

function instanceView(target: Target, firstCommandId: string | undefined): InstanceView {
  const commandId = target.commandIds.at(-1) ?? firstCommandId;
  return {
    instanceId: target.instanceId,
    parameter: target.parameter,
    path: target.path,
    status: target.status,
    attempts: target.attempt,
    ...(target.versionWritten === undefined ? {} : { versionWritten: target.versionWritten }),
    ...(target.revisionWritten === undefined ? {} : { revisionWritten: target.revisionWritten }),
    ...(target.entriesWritten === undefined ? {} : { entriesWritten: target.entriesWritten }),
    ...(target.reason === undefined ? {} : { reason: target.reason }),
    ...(target.lastError === undefined ? {} : { lastError: target.lastError }),
    ...(commandId === undefined ? {} : { commandId }),
  };
}

/** The newest rollouts of a parameter or environment, newest first, without their instances. */
export async function recentRollouts(
  store: RolloutReader,
  request: RolloutListRequest,
): Promise<Rollout[]> {
  const by =
    request.parameter !== undefined
      ? { parameter: request.parameter }
      : { environment: request.environment ?? '' };
  const entries = await store.recentRollouts(by, request.limit);
  return store.getRollouts(entries.map((entry) => entry.rolloutId));
}

/**
 * What an instance's file now holds, as a table cell: a parameter's `v7`, a secret's VersionId
 * (first 8 characters), a composed file's `20 entries`; `-` when it did not say.
 */
export function writtenText(
  i: Pick<InstanceView, 'versionWritten' | 'revisionWritten' | 'entriesWritten'>,
): string {
  if (i.versionWritten !== undefined) return `v${i.versionWritten}`;
  if (i.revisionWritten !== undefined) return `rev ${i.revisionWritten.slice(0, 8)}`;
  if (i.entriesWritten !== undefined) return `${i.entriesWritten} entries`;
  return '-';
}

/** A rollout as a compact table for a terminal, one string per line. Never throws. */
export function rolloutTable(view: RolloutView): string[] {
  const c = view.counts;
  const rows = view.instances.map((i) => [
    i.instanceId,
    i.status,
    String(i.attempts),
    writtenText(i),
    i.commandId ?? '-',
    i.reason ?? errorText(i.lastError),
    view.parameters.length > 1 ? i.parameter : '',
  ]);
  return [
    `rollout ${view.rolloutId}  ${view.state}  ${describeTrigger(view.trigger)}`,
    `${view.environment}  ${view.parameters.join(', ')}  version ${view.version ?? '?'}  started ${view.createdAt}${view.settledAt ? `  settled ${view.settledAt}` : ''}`,
    ...(view.driftRepaired === undefined
      ? []
      : [
          `drift repaired: ${view.driftRepaired} file(s) had drifted and were rewritten (state Success)`,
        ]),
    ...(view.stages === undefined
      ? []
      : [
          `stages: ${view.stages.instances.join(' → ')} instances; ${view.stages.summary}`,
          ...(view.stages.halt?.rollbackRolloutId === undefined
            ? []
            : [
                `rollback: rollout ${view.stages.halt.rollbackRolloutId} writes v${view.stages.rollbackTo ?? '?'} to the instances reached`,
              ]),
        ]),
    ...(view.pins === undefined || view.stages !== undefined
      ? []
      : [
          `pinned: ${Object.entries(view.pins)
            .map(([p, v]) => `${p} v${v}`)
            .join(', ')}`,
        ]),
    `${c.success} updated, ${c.unchanged} unchanged, ${c.failed} failed, ${c.unreachable} unreachable, ${c.superseded} superseded, ${c.pending} pending (of ${c.total}; ${c.retries} retries)`,
    ...columns([
      [
        'INSTANCE',
        'STATE',
        'TRIES',
        'WROTE',
        'COMMAND',
        'LAST ERROR',
        view.parameters.length > 1 ? 'PARAMETER' : '',
      ],
      ...rows,
    ]),
    ...(view.nextToken === undefined
      ? []
      : [
          `more instances on the next page: --data '${JSON.stringify({ rolloutId: view.rolloutId, nextToken: view.nextToken })}'`,
        ]),
  ];
}

/** Rollouts as one line each. Never throws. */
export function rolloutListTable(rollouts: Rollout[]): string[] {
  return columns([
    [
      'ROLLOUT',
      'STATE',
      'ENVIRONMENT',
      'VERSION',
      'OK',
      'FAILED',
      'UNREACHABLE',
      'PENDING',
      'TRIGGER',
    ],
    ...rollouts.map((r) => [
      r.rolloutId,
      r.state,
      r.environment,
      r.version === undefined ? '-' : `v${r.version}`,
      String(r.counts.success + r.counts.unchanged),
      String(r.counts.failed),
      String(r.counts.unreachable),
      String(r.counts.pending),
      triggerColumn(r),
    ]),
  ]);
}

function triggerColumn(rollout: Rollout): string {
  const text = describeTrigger(rollout.trigger);
  if (rollout.stages !== undefined && rollout.state !== 'Settled') {
    return `${text}: ${stagesView(rollout.stages).summary}`;
  }
  if (rollout.trigger.type !== 'drift' || rollout.state !== 'Settled') return text;
  return `${text}: ${driftRepaired(rollout.counts, rollout.trigger)} repaired`;
}

function errorText(error: LastError | undefined): string {
  if (error === undefined) return '';
  const exit =
    error.exitCode === undefined
      ? ''
      : ` exit ${error.exitCode}${error.meaning ? ` ${error.meaning}` : ''}`;
  return `${error.status}${exit}${error.stderr ? `: ${error.stderr}` : ''}`;
}

function columns(rows: string[][]): string[] {
  const widths =
    rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  return rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
}
