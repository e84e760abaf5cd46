import { type Release, releaseKey, rolloutKey, toRelease } from './items.ts';
import type { StageHalt, StageProgress } from './model.ts';
import type { RolloutTable } from './table.ts';

/**
 * A staged rollout's moves between stages, and each parameter's release record (RolloutStore
 * delegates here). Every move is one conditional write on the stage it starts from, so two
 * callers that saw the same stage end (a redelivered check, the sweep) make it once; a failed
 * condition is the answer "someone else did", never an error.
 */

const NAMES = { '#stages': 'stages', '#phase': 'phase', '#current': 'current' };
type Decision = NonNullable<StageProgress['decisions']>[number];

/** The current stage is done and healthy: bake it until `until`. */
export function bakeStage(table: RolloutTable, rolloutId: string, stage: number, until: Date) {
  return table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression: 'SET #stages.#phase = :baking, #stages.bakeUntil = :until',
    ConditionExpression: '#stages.#phase = :sending AND #stages.#current = :stage',
    ExpressionAttributeNames: NAMES,
    ExpressionAttributeValues: {
      ':baking': 'Baking',
      ':sending': 'Sending',
      ':stage': stage,
      ':until': until.toISOString(),
    },
  });
}

/** The last stage is done and healthy: the rollout may settle. */
export function completeStages(table: RolloutTable, rolloutId: string, stage: number) {
  return table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression: 'SET #stages.#phase = :done',
    ConditionExpression: '#stages.#phase = :sending AND #stages.#current = :stage',
    ExpressionAttributeNames: NAMES,
    ExpressionAttributeValues: { ':done': 'Done', ':sending': 'Sending', ':stage': stage },
  });
}

/**
 * The next stage starts (from a bake, or from a halt a person resumed): its chunks are not
 * queued yet, so `queuedChunks` goes and the sending lease is the caller's until `leaseEnd`;
 * a caller that stops before queuing them is taken over like any planner.
 */
export function startStage(
  table: RolloutTable,
  rolloutId: string,
  from: { stage: number; phase: 'Baking' | 'Halted' },
  leaseEnd: string,
  decision?: Decision,
) {
  return table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression: `SET #stages.#phase = :sending, #stages.#current = :next, #stages.startedAt = :now, sendingUntil = :lease${
      decision === undefined
        ? ''
        : ', #stages.decisions = list_append(if_not_exists(#stages.decisions, :none), :decision), #stages.resumeOwed = :owed'
    } REMOVE queuedChunks, #stages.bakeUntil`,
    ConditionExpression: '#stages.#phase = :from AND #stages.#current = :stage',
    ExpressionAttributeNames: NAMES,
    ExpressionAttributeValues: {
      ':sending': 'Sending',
      ':from': from.phase,
      ':stage': from.stage,
      ':next': from.stage + 1,
      ':now': table.isoNow(),
      ':lease': leaseEnd,
      ...(decision === undefined ? {} : { ':decision': [decision], ':none': [], ':owed': true }),
    },
  });
}

/** The resume's consequences are all done. */
export function clearResumeOwed(table: RolloutTable, rolloutId: string) {
  return table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression: 'REMOVE #stages.resumeOwed',
    ConditionExpression: 'attribute_exists(#stages.resumeOwed)',
    ExpressionAttributeNames: { '#stages': 'stages' },
  });
}

/** A halt resumed at the last stage: nothing is left to send, the rollout may settle. */
export function resumeToDone(
  table: RolloutTable,
  rolloutId: string,
  stage: number,
  decision: Decision,
) {
  return table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression:
      'SET #stages.#phase = :done, #stages.decisions = list_append(if_not_exists(#stages.decisions, :none), :decision), #stages.resumeOwed = :owed',
    ConditionExpression: '#stages.#phase = :halted AND #stages.#current = :stage',
    ExpressionAttributeNames: NAMES,
    ExpressionAttributeValues: {
      ':done': 'Done',
      ':halted': 'Halted',
      ':stage': stage,
      ':decision': [decision],
      ':none': [],
      ':owed': true,
    },
  });
}

/**
 * Halts the rollout at `halt.stage` (while it is sending or baking that stage): nothing more is
 * sent, and its alert becomes owed (the on-call hears of each halt once).
 */
export function haltStage(table: RolloutTable, rolloutId: string, halt: StageHalt) {
  return table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression:
      'SET #stages.#phase = :halted, #stages.halt = :halt, alert = :pending REMOVE alertClaimUntil, #stages.bakeUntil',
    ConditionExpression:
      '#stages.#current = :stage AND (#stages.#phase = :sending OR #stages.#phase = :baking)',
    ExpressionAttributeNames: NAMES,
    ExpressionAttributeValues: {
      ':halted': 'Halted',
      ':halt': halt,
      ':pending': 'Pending',
      ':stage': halt.stage,
      ':sending': 'Sending',
      ':baking': 'Baking',
    },
  });
}

/** Ends a staged rollout that has not settled: no stage after the current one is ever sent. */
export function abandonStages(table: RolloutTable, rolloutId: string, decision: Decision) {
  return table.conditional({
    Key: rolloutKey(rolloutId),
    UpdateExpression:
      'SET #stages.#phase = :abandoned, #stages.decisions = list_append(if_not_exists(#stages.decisions, :none), :decision) REMOVE #stages.bakeUntil',
    ConditionExpression:
      '#stages.#phase = :halted OR #stages.#phase = :baking OR #stages.#phase = :sending',
    ExpressionAttributeNames: { '#stages': 'stages', '#phase': 'phase' },
    ExpressionAttributeValues: {
      ':abandoned': 'Abandoned',
      ':halted': 'Halted',
      ':baking': 'Baking',
      ':sending': 'Sending',
      ':decision': [decision],
      ':none': [],
    },
  });
}

/** A parameter's release record in one environment ({} when it has none). */
export async function getRelease(
  table: RolloutTable,
  environment: string,
  parameter: string,
): Promise<Release> {
  return toRelease(await table.get(releaseKey(environment, parameter)));
}

/**
 * Raises one of a parameter's release versions to `version`, never lowering it: false if it is
 * already there or later. `completeVersion`: delivered everywhere. `latestChange`: a staged
 * change of that version started, so any staged rollout of an older one goes no further (it is
 * superseded at its next look, and cannot hold the parameter).
 */
export function raiseRelease(
  table: RolloutTable,
  environment: string,
  parameter: string,
  attribute: 'completeVersion' | 'latestChange',
  version: number,
) {
  return table.conditional({
    Key: releaseKey(environment, parameter),
    UpdateExpression: 'SET #version = :v, #type = :type',
    ConditionExpression: 'attribute_not_exists(#version) OR #version < :v',
    ExpressionAttributeNames: { '#type': 'type', '#version': attribute },
    ExpressionAttributeValues: { ':v': version, ':type': 'release' },
  });
}

/**
 * The staged rollout `held.rolloutId` of `held.version` holds the parameter (staging, halted),
 * unless a later change started since, or a rollout of a later version holds it already.
 */
export function hold(
  table: RolloutTable,
  environment: string,
  parameter: string,
  held: NonNullable<Release['hold']>,
) {
  return table.conditional({
    Key: releaseKey(environment, parameter),
    UpdateExpression: 'SET #hold = :hold, #type = :type',
    ConditionExpression:
      '(attribute_not_exists(latestChange) OR latestChange <= :v) AND (attribute_not_exists(#hold) OR #hold.version < :v OR #hold.rolloutId = :id)',
    ExpressionAttributeNames: { '#hold': 'hold', '#type': 'type' },
    ExpressionAttributeValues: {
      ':hold': held,
      ':v': held.version,
      ':id': held.rolloutId,
      ':type': 'release',
    },
  });
}

/**
 * Lifts the hold of `rolloutId` (resumed: its version goes on), or marks it abandoned (the pin
 * stays until a later version's change lifts it). Nothing if another rollout holds it now.
 */
export function changeHold(
  table: RolloutTable,
  environment: string,
  parameter: string,
  rolloutId: string,
  to: 'lifted' | 'Abandoned',
) {
  return table.conditional({
    Key: releaseKey(environment, parameter),
    UpdateExpression: to === 'lifted' ? 'REMOVE #hold' : 'SET #hold.#state = :abandoned',
    ConditionExpression: '#hold.rolloutId = :id',
    ExpressionAttributeNames: {
      '#hold': 'hold',
      ...(to === 'lifted' ? {} : { '#state': 'state' }),
    },
    ExpressionAttributeValues: {
      ':id': rolloutId,
      ...(to === 'lifted' ? {} : { ':abandoned': 'Abandoned' }),
    },
  });
}
