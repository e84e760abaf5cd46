import {
  BatchGetCommand,
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateQuery,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { chunk } from './chunk.ts';
import type { Trigger } from './trigger.ts';

/**
 * The rollouts table: one partition per rollout holding the rollout item, one item per
 * (instance, file) target and one item per command sent; plus small index partitions per
 * parameter and per environment for listing and supersession.
 *
 *   pk = R#<rolloutId>   sk = #ROLLOUT                   the rollout and its counters
 *                        sk = T#<instanceId>#<parameter> one target
 *                        sk = C#<commandId>              one SendCommand (≤50 instances)
 *   pk = P#<parameter>   sk = <rolloutId>                rollouts of a parameter
 *   pk = E#<environment> sk = <rolloutId>                rollouts of an environment
 *   pk = B#<instanceId>  sk = <launch>#<path>            the alert about a new instance, once
 *
 * Writes per target in the happy path: the target's creation and its terminal update. Target
 * updates are conditional on the attempt they answer, so duplicate or late status events can
 * never move a target backwards or count it twice; each batch of target updates and the
 * rollout's counter update commit together in one transaction, so counters never drift.
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

export interface Target {
  instanceId: string;
  parameter: string;
  path: string;
  status: TargetStatus;
  /** 1 for the first send; each retry adds one. */
  attempt: number;
  commandId?: string;
  commandIds: string[];
  versionWritten?: number;
  reason?: string;
  lastError?: LastError;
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
export type AlertState = 'None' | 'Pending' | 'Sent';

export interface Rollout {
  rolloutId: string;
  trigger: Trigger;
  environment: string;
  parameters: string[];
  files: Array<{ parameter: string; path: string }>;
  version?: number;
  createdAt: string;
  settledAt?: string;
  state: RolloutState;
  alert: AlertState;
  counts: Counts;
  /** While set and in the future, a run is sending this rollout's first attempts. */
  sendingUntil?: string;
}

export interface CommandRecord {
  commandId: string;
  parameter: string;
  attempt: number;
  instanceIds: string[];
  sentAt: string;
}

export interface NewTarget {
  instanceId: string;
  parameter: string;
  path: string;
  status: 'Pending' | 'Unreachable';
  reason?: string;
}

/** A target's move out of `attempt`: to a terminal state, or to the next attempt. */
export type Transition = {
  instanceId: string;
  parameter: string;
  fromAttempt: number;
  /** The command this answers; the update applies only while it is the target's command. */
  commandId?: string;
  lastError?: LastError;
} & ({ to: TerminalStatus; versionWritten?: number; reason?: string } | { to: 'Retry' });

// biome-ignore lint/suspicious/noExplicitAny: items are untyped until toRollout/toTarget/toCommand map them
type Item = Record<string, any>;

// Items expire 90 days after the rollout (the table's TTL attribute).
const RETENTION_SECONDS = 90 * 24 * 60 * 60;
// A transaction holds at most 100 items: 99 targets and the rollout's counters.
const TARGETS_PER_TRANSACTION = 99;
const BATCH_WRITE_SIZE = 25;
const BATCH_GET_SIZE = 100;
const MAX_CONFLICT_RETRIES = 5;
// Longer than any function that sends may run (60 s timeout), so a live sender is never raced.
const SENDING_LEASE_SECONDS = 120;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const rolloutKey = (rolloutId: string) => ({ pk: `R#${rolloutId}`, sk: '#ROLLOUT' });
const targetKey = (rolloutId: string, instanceId: string, parameter: string) => ({
  pk: `R#${rolloutId}`,
  sk: `T#${instanceId}#${parameter}`,
});
const commandKey = (rolloutId: string, commandId: string) => ({
  pk: `R#${rolloutId}`,
  sk: `C#${commandId}`,
});

const COUNTER_OF: Record<TerminalStatus, keyof Counts> = {
  Success: 'success',
  Unchanged: 'unchanged',
  Failed: 'failed',
  Unreachable: 'unreachable',
  Superseded: 'superseded',
};
const COUNTER_ATTRIBUTE: Record<keyof Counts, string> = {
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

export class RolloutStore {
  private readonly db: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly now: () => Date;

  constructor(db: DynamoDBDocumentClient, tableName: string, now: () => Date = () => new Date()) {
    this.db = db;
    this.tableName = tableName;
    this.now = now;
  }

  /**
   * Records a new rollout and its targets. The rollout item is written first, conditionally
   * and in state Creating: it is the lock, so `false` (the rollout already exists: a
   * redelivered event, or a second event for one new instance) means nothing was written, and
   * no second run can overwrite targets the first one has already sent. Targets follow, then
   * the rollout becomes InProgress with its counts. Throws the SDK error.
   */
  async create(
    rollout: Omit<Rollout, 'createdAt' | 'state' | 'alert' | 'counts'>,
    targets: NewTarget[],
  ): Promise<boolean> {
    const createdAt = this.now().toISOString();
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...rolloutKey(rollout.rolloutId),
            type: 'rollout',
            ...rollout,
            createdAt,
            state: 'Creating',
            alert: 'None',
            ...counterAttributes(countTargets([])),
            sendingUntil: this.leaseEnd(),
            expiresAt: this.expiry(),
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false;
      throw error;
    }
    await this.finishCreating(rollout.rolloutId, targets, true);
    return true;
  }

  /**
   * Writes a Creating rollout's targets and makes it InProgress, with counts taken from every
   * target it now holds (`onlyThese`: the creator's own call, which knows them). Also what a run that took over from a creator that stopped half-way
   * calls: nothing has been sent while a rollout is Creating, so rewriting targets is safe.
   * Throws the SDK error.
   */
  async finishCreating(rolloutId: string, targets: NewTarget[], onlyThese = false): Promise<void> {
    const rollout = await this.getRollout(rolloutId);
    if (rollout === undefined || rollout.state !== 'Creating') return;
    const at = this.now().toISOString();
    const expiresAt = this.expiry();
    const targetItems = targets.map((target) => ({
      ...targetKey(rolloutId, target.instanceId, target.parameter),
      type: 'target',
      ...target,
      attempt: 1,
      commandIds: [],
      updatedAt: at,
      expiresAt,
    }));
    const indexItems = [
      ...rollout.parameters.map((parameter) => ({ pk: `P#${parameter}`, sk: rolloutId })),
      { pk: `E#${rollout.environment}`, sk: rolloutId },
    ].map((key) => ({ ...key, type: 'index', rolloutId, createdAt: rollout.createdAt, expiresAt }));
    await this.batchPut([...targetItems, ...indexItems]);
    // A fresh rollout holds exactly these targets; after a takeover, count what is there.
    const counts = countTargets(
      onlyThese ? targets : ((await this.load(rolloutId))?.targets ?? []),
    );
    await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: rolloutKey(rolloutId),
        UpdateExpression: `SET #state = :inProgress, ${Object.entries(counterAttributes(counts))
          .map(([name]) => `${name} = :${name}`)
          .join(', ')}`,
        ConditionExpression: '#state = :creating',
        ExpressionAttributeNames: { '#state': 'state' },
        ExpressionAttributeValues: {
          ':inProgress': 'InProgress',
          ':creating': 'Creating',
          ...Object.fromEntries(
            Object.entries(counterAttributes(counts)).map(([n, v]) => [`:${n}`, v]),
          ),
        },
      }),
    );
  }

  /**
   * The creator of a rollout holds a lease on sending its first attempts. Another run of the
   * same rollout (a redelivered event, or a second event for one new instance) may take over
   * only once that lease has run out, so two runs never send the same targets at once.
   * True if the caller now holds the lease. Throws the SDK error.
   */
  async takeOverSending(rolloutId: string): Promise<boolean> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: rolloutKey(rolloutId),
          UpdateExpression: 'SET sendingUntil = :until',
          ConditionExpression:
            'attribute_exists(pk) AND (attribute_not_exists(sendingUntil) OR sendingUntil < :now)',
          ExpressionAttributeValues: {
            ':until': this.leaseEnd(),
            ':now': this.now().toISOString(),
          },
        }),
      );
      return true;
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }

  /** Gives up the sending lease once every first attempt is sent and recorded. */
  async releaseSending(rolloutId: string): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: rolloutKey(rolloutId),
        UpdateExpression: 'REMOVE sendingUntil',
        ConditionExpression: 'attribute_exists(pk)',
      }),
    );
  }

  /** Records a command sent to some targets of one file. Throws the SDK error. */
  async recordCommand(rolloutId: string, command: Omit<CommandRecord, 'sentAt'>): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: {
          ...commandKey(rolloutId, command.commandId),
          type: 'command',
          ...command,
          sentAt: this.now().toISOString(),
          expiresAt: this.expiry(),
        },
      }),
    );
  }

  /** The rollout (strongly consistent), or undefined. Throws the SDK error. */
  async getRollout(rolloutId: string): Promise<Rollout | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: rolloutKey(rolloutId),
        ConsistentRead: true,
      }),
    );
    return Item === undefined ? undefined : toRollout(Item);
  }

  /** One target, or undefined. Throws the SDK error. */
  async getTarget(
    rolloutId: string,
    instanceId: string,
    parameter: string,
  ): Promise<Target | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: targetKey(rolloutId, instanceId, parameter),
        ConsistentRead: true,
      }),
    );
    return Item === undefined ? undefined : toTarget(Item);
  }

  /** The rollout with all its targets and commands; undefined if there is no such rollout. */
  async load(
    rolloutId: string,
  ): Promise<{ rollout: Rollout; targets: Target[]; commands: CommandRecord[] } | undefined> {
    const items: Item[] = [];
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': `R#${rolloutId}` },
        ConsistentRead: true,
      },
    );
    for await (const page of pages) items.push(...(page.Items ?? []));
    const rolloutItem = items.find((item) => item.type === 'rollout');
    if (rolloutItem === undefined) return undefined;
    return {
      rollout: toRollout(rolloutItem),
      targets: items.filter((item) => item.type === 'target').map(toTarget),
      commands: items.filter((item) => item.type === 'command').map(toCommand),
    };
  }

  /** Command records by (rollout, command) pair; missing ones are absent from the map. */
  async getCommands(
    keys: Array<{ rolloutId: string; commandId: string }>,
  ): Promise<Map<string, CommandRecord>> {
    const found = new Map<string, CommandRecord>();
    for (const part of chunk(keys, BATCH_GET_SIZE)) {
      let request: Item | undefined = {
        [this.tableName]: { Keys: part.map((k) => commandKey(k.rolloutId, k.commandId)) },
      };
      while (request !== undefined && Object.keys(request).length > 0) {
        const reply: { Responses?: Record<string, Item[]>; UnprocessedKeys?: Item } =
          await this.db.send(new BatchGetCommand({ RequestItems: request }));
        for (const item of reply.Responses?.[this.tableName] ?? []) {
          found.set(item.commandId, toCommand(item));
        }
        request = reply.UnprocessedKeys;
      }
    }
    return found;
  }

  /**
   * Applies target transitions of one rollout: each batch of ≤99 target updates commits
   * together with one update of the rollout's counters. A transition whose target has already
   * moved on (a duplicate or late event) is skipped and reported in `stale`.
   * Throws the SDK error for anything else.
   */
  async apply(
    rolloutId: string,
    transitions: Transition[],
  ): Promise<{ applied: Transition[]; stale: Transition[] }> {
    const applied: Transition[] = [];
    const stale: Transition[] = [];
    // One transaction may not touch an item twice: a batch holding the same event twice keeps
    // the first, and the copies are stale by definition.
    const seen = new Set<string>();
    const unique: Transition[] = [];
    for (const t of transitions) {
      const key = targetId(t);
      if (seen.has(key)) stale.push(t);
      else unique.push(t);
      seen.add(key);
    }
    for (const part of chunk(unique, TARGETS_PER_TRANSACTION)) {
      let remaining = part;
      for (let conflicts = 0; remaining.length > 0; ) {
        try {
          await this.db.send(
            new TransactWriteCommand({
              TransactItems: [
                ...remaining.map((t) => ({ Update: this.transitionUpdate(rolloutId, t) })),
                { Update: this.counterUpdate(rolloutId, remaining) },
              ],
            }),
          );
          applied.push(...remaining);
          remaining = [];
        } catch (error) {
          const reasons = (error as { CancellationReasons?: Array<{ Code?: string }> })
            .CancellationReasons;
          if ((error as Error).name !== 'TransactionCanceledException' || reasons === undefined) {
            throw error;
          }
          if (reasons[remaining.length]?.Code === 'ConditionalCheckFailed') {
            throw new Error(`rollout ${rolloutId} does not exist`, { cause: error });
          }
          const failed = new Set(
            reasons.flatMap((reason, index) =>
              reason.Code === 'ConditionalCheckFailed' ? [index] : [],
            ),
          );
          if (failed.size === 0) {
            // Another batch of the same rollout committed at the same moment (TransactionConflict):
            // back off briefly and try again, a few times, before leaving it to the caller.
            if (++conflicts > MAX_CONFLICT_RETRIES) throw error;
            await sleep(Math.random() * 100 * 2 ** conflicts);
            continue;
          }
          stale.push(...remaining.filter((_, index) => failed.has(index)));
          remaining = remaining.filter((_, index) => !failed.has(index));
        }
      }
    }
    return { applied, stale };
  }

  /**
   * Marks the rollout settled if no target is pending. Exactly one caller gets
   * `settledNow: true`; `alertDue` is true while its alert has not been recorded as sent.
   * Throws the SDK error.
   */
  async settle(
    rolloutId: string,
  ): Promise<{ rollout: Rollout | undefined; settledNow: boolean; alertDue: boolean }> {
    const rollout = await this.getRollout(rolloutId);
    if (rollout === undefined) return { rollout, settledNow: false, alertDue: false };
    if (rollout.state === 'Settled') {
      return { rollout, settledNow: false, alertDue: rollout.alert === 'Pending' };
    }
    if (rollout.state !== 'InProgress' || rollout.counts.pending > 0) {
      return { rollout, settledNow: false, alertDue: false };
    }
    const alert: AlertState = needsAlert(rollout.counts) ? 'Pending' : 'None';
    const settledAt = this.now().toISOString();
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: rolloutKey(rolloutId),
          UpdateExpression: 'SET #state = :settled, settledAt = :at, alert = :alert',
          ConditionExpression: '#state = :inProgress AND nPending = :zero',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: {
            ':settled': 'Settled',
            ':inProgress': 'InProgress',
            ':at': settledAt,
            ':alert': alert,
            ':zero': 0,
          },
        }),
      );
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') {
        return { rollout, settledNow: false, alertDue: false };
      }
      throw error;
    }
    const settled: Rollout = { ...rollout, state: 'Settled', settledAt, alert };
    return { rollout: settled, settledNow: true, alertDue: alert === 'Pending' };
  }

  /** Records that the rollout's alert went out, so no later caller sends it again. */
  async markAlertSent(rolloutId: string): Promise<void> {
    await this.db
      .send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: rolloutKey(rolloutId),
          UpdateExpression: 'SET alert = :sent',
          ConditionExpression: 'alert = :pending',
          ExpressionAttributeValues: { ':sent': 'Sent', ':pending': 'Pending' },
        }),
      )
      .catch((error: Error) => {
        if (error.name !== 'ConditionalCheckFailedException') throw error;
      });
  }

  /**
   * Claims the right to send `attempt` to a target: true for exactly one caller at a time, and
   * only while the target is pending at that attempt with no command yet. A claim runs out
   * after the sending lease, so a sender that stopped before recording its command does not
   * leave the target pending forever. Throws the SDK error.
   */
  async claimAttempt(rolloutId: string, instanceId: string, parameter: string, attempt: number) {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: targetKey(rolloutId, instanceId, parameter),
          UpdateExpression: 'SET claimedAttempt = :attempt, claimedUntil = :until',
          ConditionExpression:
            '#status = :pending AND attempt = :attempt AND attribute_not_exists(commandId) AND (attribute_not_exists(claimedAttempt) OR claimedAttempt < :attempt OR claimedUntil < :now)',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':pending': 'Pending',
            ':attempt': attempt,
            ':until': this.leaseEnd(),
            ':now': this.now().toISOString(),
          },
        }),
      );
      return true;
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }

  /** Records the command sent for a target's current attempt (and its command record). */
  async recordAttemptCommand(
    rolloutId: string,
    instanceId: string,
    parameter: string,
    attempt: number,
    commandId: string,
  ): Promise<void> {
    await this.recordCommand(rolloutId, {
      commandId,
      parameter,
      attempt,
      instanceIds: [instanceId],
    });
    await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: targetKey(rolloutId, instanceId, parameter),
        UpdateExpression:
          'SET commandId = :command, commandIds = list_append(commandIds, :commands), updatedAt = :at',
        ConditionExpression: 'attempt = :attempt',
        ExpressionAttributeValues: {
          ':command': commandId,
          ':commands': [commandId],
          ':attempt': attempt,
          ':at': this.now().toISOString(),
        },
      }),
    );
  }

  /** The newest rollouts of a parameter or environment, newest first (ids only). */
  async recentRolloutIds(
    by: { parameter: string } | { environment: string },
    limit: number,
    newerThan?: string,
  ): Promise<string[]> {
    const pk = 'parameter' in by ? `P#${by.parameter}` : `E#${by.environment}`;
    const { Items } = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: newerThan === undefined ? 'pk = :pk' : 'pk = :pk AND sk > :after',
        ExpressionAttributeValues: {
          ':pk': pk,
          ...(newerThan === undefined ? {} : { ':after': newerThan }),
        },
        ScanIndexForward: false,
        Limit: limit,
      }),
    );
    return (Items ?? []).map((item) => item.rolloutId as string);
  }

  /** Rollout items by id, in the order asked; missing ids are left out. */
  async getRollouts(rolloutIds: string[]): Promise<Rollout[]> {
    const found = new Map<string, Rollout>();
    for (const part of chunk(rolloutIds, BATCH_GET_SIZE)) {
      let request: Item | undefined = {
        [this.tableName]: { Keys: part.map(rolloutKey) },
      };
      while (request !== undefined && Object.keys(request).length > 0) {
        const reply: { Responses?: Record<string, Item[]>; UnprocessedKeys?: Item } =
          await this.db.send(new BatchGetCommand({ RequestItems: request }));
        for (const item of reply.Responses?.[this.tableName] ?? []) {
          found.set(item.rolloutId, toRollout(item));
        }
        request = reply.UnprocessedKeys;
      }
    }
    return rolloutIds.flatMap((id) => found.get(id) ?? []);
  }

  /**
   * The id of a rollout of `parameter` newer than `rolloutId` that also targets `instanceId`,
   * or undefined: the instance then gets the newest value from that rollout instead.
   */
  async newerRolloutTargeting(
    parameter: string,
    rolloutId: string,
    instanceId: string,
  ): Promise<string | undefined> {
    for (const newer of await this.recentRolloutIds({ parameter }, 25, rolloutId)) {
      if ((await this.getTarget(newer, instanceId, parameter)) !== undefined) return newer;
    }
    return undefined;
  }

  /**
   * The newest rollout since `floor` (a rollout id or a rolloutIdFloor) that targets this
   * instance with this parameter, and its target; undefined if none does.
   */
  async latestTargetSince(
    parameter: string,
    instanceId: string,
    floor: string,
  ): Promise<{ rolloutId: string; target: Target } | undefined> {
    for (const rolloutId of await this.recentRolloutIds({ parameter }, 25, floor)) {
      const target = await this.getTarget(rolloutId, instanceId, parameter);
      if (target !== undefined) return { rolloutId, target };
    }
    return undefined;
  }

  /**
   * Claims the one alert about a new instance's launch (`key`: its launch and path). True for
   * the caller that should send it: the first, or any later one while the alert is not yet
   * recorded as sent (the first one's publish failed). Throws the SDK error.
   */
  async claimBootstrapAlert(instanceId: string, key: string): Promise<boolean> {
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            pk: `B#${instanceId}`,
            sk: key,
            type: 'bootstrap-alert',
            alert: 'Pending',
            at: this.now().toISOString(),
            expiresAt: this.expiry(),
          },
          ConditionExpression: 'attribute_not_exists(pk) OR alert = :pending',
          ExpressionAttributeValues: { ':pending': 'Pending' },
        }),
      );
      return true;
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }

  /** Records that the alert about a launch went out. Throws the SDK error. */
  async markBootstrapAlertSent(instanceId: string, key: string): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: `B#${instanceId}`, sk: key },
        UpdateExpression: 'SET alert = :sent',
        ExpressionAttributeValues: { ':sent': 'Sent' },
      }),
    );
  }

  private transitionUpdate(rolloutId: string, t: Transition) {
    const names: Record<string, string> = { '#status': 'status' };
    const values: Record<string, unknown> = {
      ':pending': 'Pending',
      ':from': t.fromAttempt,
      ':at': this.now().toISOString(),
    };
    const sets = ['updatedAt = :at'];
    const removes: string[] = [];
    if (t.lastError !== undefined) {
      sets.push('lastError = :error');
      values[':error'] = t.lastError;
    }
    if (t.to === 'Retry') {
      sets.push('attempt = :next');
      values[':next'] = t.fromAttempt + 1;
      removes.push('commandId');
    } else {
      sets.push('#status = :to');
      values[':to'] = t.to;
      if ('versionWritten' in t && t.versionWritten !== undefined) {
        sets.push('versionWritten = :version');
        values[':version'] = t.versionWritten;
      }
      if ('reason' in t && t.reason !== undefined) {
        sets.push('reason = :reason');
        values[':reason'] = t.reason;
      }
    }
    let condition = '#status = :pending AND attempt = :from';
    if (t.commandId !== undefined) {
      // A late event from an older attempt's command must not settle the current attempt.
      condition += ' AND (attribute_not_exists(commandId) OR commandId = :command)';
      values[':command'] = t.commandId;
    }
    return {
      TableName: this.tableName,
      Key: targetKey(rolloutId, t.instanceId, t.parameter),
      UpdateExpression: `SET ${sets.join(', ')}${removes.length > 0 ? ` REMOVE ${removes.join(', ')}` : ''}`,
      ConditionExpression: condition,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    };
  }

  private counterUpdate(rolloutId: string, transitions: Transition[]) {
    const delta: Partial<Counts> = {};
    for (const t of transitions) {
      if (t.to === 'Retry') {
        delta.retries = (delta.retries ?? 0) + 1;
      } else {
        delta.pending = (delta.pending ?? 0) - 1;
        const counter = COUNTER_OF[t.to];
        delta[counter] = (delta[counter] ?? 0) + 1;
        if (t.to === 'Unreachable' && t.reason === 'InstanceTerminated') {
          delta.terminated = (delta.terminated ?? 0) + 1;
        }
      }
    }
    const entries = Object.entries(delta) as Array<[keyof Counts, number]>;
    return {
      TableName: this.tableName,
      Key: rolloutKey(rolloutId),
      UpdateExpression: `ADD ${entries.map(([counter]) => `${COUNTER_ATTRIBUTE[counter]} :${counter}`).join(', ')}`,
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeValues: Object.fromEntries(
        entries.map(([counter, n]) => [`:${counter}`, n]),
      ),
    };
  }

  private async batchPut(items: Record<string, unknown>[]): Promise<void> {
    for (const part of chunk(items, BATCH_WRITE_SIZE)) {
      let request: Item | undefined = {
        [this.tableName]: part.map((Item) => ({ PutRequest: { Item } })),
      };
      for (let round = 0; request !== undefined && Object.keys(request).length > 0; round++) {
        if (round > 0)
          await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 50 * 2 ** round)));
        const reply: { UnprocessedItems?: Item } = await this.db.send(
          new BatchWriteCommand({ RequestItems: request }),
        );
        request = reply.UnprocessedItems;
        if (round > 8 && request !== undefined && Object.keys(request).length > 0) {
          throw new Error('DynamoDB left items unprocessed after 8 retries');
        }
      }
    }
  }

  private leaseEnd(): string {
    return new Date(this.now().getTime() + SENDING_LEASE_SECONDS * 1000).toISOString();
  }

  private expiry(): number {
    return Math.floor(this.now().getTime() / 1000) + RETENTION_SECONDS;
  }
}

/** A target's identity within its rollout: `instanceId#parameter`. Never throws. */
export function targetId(target: { instanceId: string; parameter: string }): string {
  return `${target.instanceId}#${target.parameter}`;
}

/** The command that carried each target's first attempt, by targetId. Never throws. */
export function firstAttemptCommands(commands: CommandRecord[]): Map<string, string> {
  const first = new Map<string, string>();
  for (const command of commands.filter((c) => c.attempt === 1)) {
    for (const instanceId of command.instanceIds) {
      first.set(targetId({ instanceId, parameter: command.parameter }), command.commandId);
    }
  }
  return first;
}

/**
 * Whether a rollout's result should page the on-call: anything failed, or unreachable for a
 * reason other than the instance being terminated (a scale-in during a rollout is normal).
 */
export function needsAlert(counts: Counts): boolean {
  return counts.failed > 0 || counts.unreachable - counts.terminated > 0;
}

/** The counts of a set of just-created targets (all Pending or Unreachable). */
function countTargets(targets: Array<{ status: TargetStatus }>): Counts {
  const pending = targets.filter((t) => t.status === 'Pending').length;
  return {
    total: targets.length,
    pending,
    success: 0,
    unchanged: 0,
    failed: 0,
    unreachable: targets.length - pending,
    superseded: 0,
    terminated: 0,
    retries: 0,
  };
}

function counterAttributes(counts: Counts): Record<string, number> {
  return Object.fromEntries(
    (Object.keys(COUNTER_ATTRIBUTE) as Array<keyof Counts>).map((c) => [
      COUNTER_ATTRIBUTE[c],
      counts[c],
    ]),
  );
}

function toRollout(item: Item): Rollout {
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
    createdAt: item.createdAt,
    ...(item.settledAt === undefined ? {} : { settledAt: item.settledAt }),
    state: item.state,
    alert: item.alert,
    counts,
    ...(item.sendingUntil === undefined ? {} : { sendingUntil: item.sendingUntil }),
  };
}

function toTarget(item: Item): Target {
  return {
    instanceId: item.instanceId,
    parameter: item.parameter,
    path: item.path,
    status: item.status,
    attempt: Number(item.attempt),
    ...(item.commandId === undefined ? {} : { commandId: item.commandId }),
    commandIds: item.commandIds ?? [],
    ...(item.versionWritten === undefined ? {} : { versionWritten: Number(item.versionWritten) }),
    ...(item.reason === undefined ? {} : { reason: item.reason }),
    ...(item.lastError === undefined ? {} : { lastError: item.lastError }),
    updatedAt: item.updatedAt,
  };
}

function toCommand(item: Item): CommandRecord {
  return {
    commandId: item.commandId,
    parameter: item.parameter,
    attempt: Number(item.attempt),
    instanceIds: item.instanceIds ?? [],
    sentAt: item.sentAt,
  };
}
