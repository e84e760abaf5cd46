import { randomUUID } from 'node:crypto';
import { TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { RolloutNotFoundError } from '../errors.ts';
import { chunk } from '../platform/chunk.ts';
import { COUNTER_ATTRIBUTE, COUNTER_OF, rolloutKey, targetKey, toTarget } from './items.ts';
import { type Counts, type Target, TERMINATED, type Transition, targetId } from './model.ts';
import { cancellationCodes, type RolloutTable, sleep } from './table.ts';

// A transaction holds at most 100 items: 99 targets and the rollout's counters
// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html).
const TARGETS_PER_TRANSACTION = 99;
const MAX_CONFLICT_RETRIES = 5;

/** What a commit did with each transition it was given. */
export interface CommitResult {
  /** Committed now, by this call. */
  applied: Transition[];
  /**
   * Found already in the state it asks for: committed by an earlier call whose reply was lost,
   * or whose caller stopped before the consequences. Their consequences are still owed.
   */
  alreadyApplied: Transition[];
  /** The target had moved on (a duplicate or late observation): nothing to do. */
  stale: Transition[];
}

/**
 * Commits target transitions of one rollout (see RolloutStore.commit). Throws
 * RolloutNotFoundError, or the SDK error for anything but a failed condition.
 */
export async function commitTransitions(
  table: RolloutTable,
  rolloutId: string,
  transitions: Transition[],
): Promise<CommitResult> {
  const result: CommitResult = { applied: [], alreadyApplied: [], stale: [] };
  // One transaction may not touch an item twice. Exact copies of one move are stale at once;
  // a different observation of the same target (a late event of an older attempt beside the
  // current one's) is tried in a round of its own, after the first, on its own conditions.
  const rounds: Transition[][] = [];
  const seen = new Set<string>();
  for (const t of transitions) {
    const copy = `${targetId(t)}\0${t.fromAttempt}\0${t.commandId ?? ''}\0${t.to}`;
    if (seen.has(copy)) {
      result.stale.push(t);
      continue;
    }
    seen.add(copy);
    const round = rounds.find((r) => !r.some((other) => targetId(other) === targetId(t)));
    if (round === undefined) rounds.push([t]);
    else round.push(t);
  }
  for (const round of rounds) {
    const part = await commitRound(table, rolloutId, round);
    result.applied.push(...part.applied);
    result.alreadyApplied.push(...part.alreadyApplied);
    result.stale.push(...part.stale);
  }
  return result;
}

/** Commits transitions of distinct targets, ≤99 a transaction with the rollout's counters. */
async function commitRound(
  table: RolloutTable,
  rolloutId: string,
  unique: Transition[],
): Promise<CommitResult> {
  const result: CommitResult = { applied: [], alreadyApplied: [], stale: [] };
  const failedChecks: Transition[] = [];
  for (const part of chunk(unique, TARGETS_PER_TRANSACTION)) {
    let remaining = part;
    for (let conflicts = 0; remaining.length > 0; ) {
      const at = table.isoNow();
      const TransactItems = [
        ...remaining.map((t) => ({ Update: transitionUpdate(table.name, rolloutId, t, at) })),
        { Update: counterUpdate(table.name, rolloutId, remaining) },
      ];
      try {
        await table.db.send(
          new TransactWriteCommand({
            TransactItems,
            // One token per commit, reused by the SDK's own retries of this request: DynamoDB
            // answers a retry whose first reply was lost as it answered the first call
            // (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html).
            // A redelivered observation is a new commit: the re-read below handles it.
            ClientRequestToken: randomUUID(),
          }),
        );
        result.applied.push(...remaining);
        remaining = [];
      } catch (error) {
        const codes = cancellationCodes(error);
        if (codes === undefined) throw error;
        if (codes[remaining.length] === 'ConditionalCheckFailed') {
          throw new RolloutNotFoundError(rolloutId, { cause: error });
        }
        const failed = new Set(
          codes.flatMap((code, index) => (code === 'ConditionalCheckFailed' ? [index] : [])),
        );
        if (failed.size === 0) {
          // Another batch of the same rollout committed at the same moment (TransactionConflict):
          // back off briefly and try again, a few times, before leaving it to the caller.
          if (++conflicts > MAX_CONFLICT_RETRIES) throw error;
          await sleep(Math.random() * 100 * 2 ** conflicts);
          continue;
        }
        failedChecks.push(...remaining.filter((_, index) => failed.has(index)));
        remaining = remaining.filter((_, index) => !failed.has(index));
      }
    }
  }
  if (failedChecks.length > 0) {
    const now = await table.batchGet(failedChecks.map((t) => targetKey(rolloutId, t)));
    const current = new Map(now.map((item) => [targetId(toTarget(item)), toTarget(item)]));
    for (const t of failedChecks) {
      const target = current.get(targetId(t));
      if (target !== undefined && isWhereItLeads(target, t)) result.alreadyApplied.push(t);
      else result.stale.push(t);
    }
  }
  return result;
}
function transitionUpdate(tableName: string, rolloutId: string, t: Transition, at: string) {
  const names: Record<string, string> = { '#status': 'status' };
  const values: Record<string, unknown> = { ':pending': 'Pending', ':from': t.fromAttempt };
  const sets = ['updatedAt = :at'];
  values[':at'] = at;
  const removes: string[] = [];
  if (t.lastError !== undefined) {
    sets.push('lastError = :error');
    values[':error'] = t.lastError;
  }
  if (t.to === 'Retry') {
    sets.push('attempt = :next', 'retryAt = :retryAt');
    values[':next'] = t.fromAttempt + 1;
    values[':retryAt'] = t.retryAt;
    removes.push('commandId', 'resends');
  } else {
    sets.push('#status = :to');
    values[':to'] = t.to;
    if (t.versionWritten !== undefined) {
      sets.push('versionWritten = :version');
      values[':version'] = t.versionWritten;
    }
    if (t.revisionWritten !== undefined) {
      sets.push('revisionWritten = :revision');
      values[':revision'] = t.revisionWritten;
    }
    if (t.entriesWritten !== undefined) {
      sets.push('entriesWritten = :entries');
      values[':entries'] = t.entriesWritten;
    }
    if (t.reason !== undefined) {
      sets.push('reason = :reason');
      values[':reason'] = t.reason;
    }
  }
  let condition = '#status = :pending AND attempt = :from';
  if (t.unsent === true) {
    // "Never sent" only while it still is: no command recorded, no live claim of a sender.
    condition +=
      ' AND attribute_not_exists(commandId) AND (attribute_not_exists(claimedUntil) OR claimedUntil < :at)';
  }
  if (t.commandId !== undefined) {
    // A late event from an older attempt's command must not settle the current attempt.
    condition += ' AND (attribute_not_exists(commandId) OR commandId = :command)';
    values[':command'] = t.commandId;
  }
  return {
    TableName: tableName,
    Key: targetKey(rolloutId, t),
    UpdateExpression: `SET ${sets.join(', ')}${removes.length > 0 ? ` REMOVE ${removes.join(', ')}` : ''}`,
    ConditionExpression: condition,
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
}
function counterUpdate(tableName: string, rolloutId: string, transitions: Transition[]) {
  const delta: Partial<Counts> = {};
  const add = (counter: keyof Counts, n: number) => {
    delta[counter] = (delta[counter] ?? 0) + n;
  };
  for (const t of transitions) {
    if (t.to === 'Retry') {
      add('retries', 1);
      continue;
    }
    add('pending', -1);
    add(COUNTER_OF[t.to], 1);
    if (t.to === 'Unreachable' && t.reason === TERMINATED) add('terminated', 1);
  }
  const entries = Object.entries(delta) as Array<[keyof Counts, number]>;
  return {
    TableName: tableName,
    Key: rolloutKey(rolloutId),
    UpdateExpression: `ADD ${entries.map(([counter]) => `${COUNTER_ATTRIBUTE[counter]} :${counter}`).join(', ')}`,
    ConditionExpression: 'attribute_exists(pk)',
    ExpressionAttributeValues: Object.fromEntries(
      entries.map(([counter, n]) => [`:${counter}`, n]),
    ),
  };
}
/** Whether the target already is where the transition leads (from the same attempt). */
function isWhereItLeads(target: Target, t: Transition): boolean {
  if (t.to === 'Retry') {
    return (
      target.status === 'Pending' &&
      target.attempt === t.fromAttempt + 1 &&
      target.commandId === undefined
    );
  }
  return target.status === t.to && target.attempt === t.fromAttempt;
}
