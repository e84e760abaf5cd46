import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { mapSettled } from '../platform/chunk.ts';
import {
  claimAlertItem,
  claimAttempt,
  markAlertItemSent,
  markResent,
  releaseClaims,
} from './claims.ts';
import { type CommitResult, commitTransitions } from './commit.ts';
import {
  beginRollout,
  finishCreating,
  finishCreatingInParts,
  type NewRollout,
} from './creating.ts';
import {
  commandKey,
  type IndexEntry,
  indexPk,
  launchAlertKey,
  type Release,
  rolloutKey,
  targetKey,
  toCommand,
  toRollout,
  toTarget,
} from './items.ts';
import {
  type AlertState,
  type CommandRecord,
  type NewTarget,
  type PlanPart,
  type Rollout,
  type SendChunk,
  type StageHalt,
  type StageProgress,
  settleAlertOwed,
  type Target,
  type TargetRef,
  type Transition,
} from './model.ts';
import {
  claimPart,
  completePart,
  type PartClaim,
  type PartRecord,
  recordPart,
  releasePart,
  unqueuedParts,
} from './parts.ts';
import { RolloutReader } from './reader.ts';
import { restrictionFrom, rolloutsOfParameterSince } from './reads.ts';
import {
  type ChunkClaim,
  claimChunk,
  extendSending,
  markChunkSent,
  markQueued,
  plannedChunks,
  releaseChunk,
  reservePace,
} from './sending.ts';
import {
  abandonStages,
  bakeStage,
  changeHold,
  clearResumeOwed,
  completeStages,
  getRelease,
  haltStage,
  hold,
  raiseRelease,
  resumeToDone,
  startStage,
} from './staging.ts';

export { LEASE_SECONDS } from './table.ts';
export type { ChunkClaim, CommitResult, IndexEntry, PartClaim, PartRecord, Release };

type Decision = NonNullable<StageProgress['decisions']>[number];

/**
 * The rollouts table, as the rest of the service sees it: persistence only — the rollout's
 * lifecycle writes, its reads, target commits, and claims (sending leases, attempts, alerts).
 * What a transition implies (retries, settling, the alert) is the ledger's business.
 * Item layout: ./items.ts; the transaction behind `commit`: ./commit.ts.
 *
 * Writes per target in the happy path: its creation and its terminal update. Target updates are
 * conditional on the attempt they answer, so duplicate or late events never move a target
 * backwards or count it twice; each batch of target updates commits with the rollout's counter
 * update in one transaction, so counters never drift. A ConditionalCheckFailed is turned into a
 * domain answer here (and in commit.ts) and nowhere else.
 */
export class RolloutStore extends RolloutReader {
  /** The time every rule of the rollouts reads: the store's clock (a test's, or the real one). */
  clock(): Date {
    return this.table.clock();
  }

  /**
   * Records a new rollout, its targets and its planned first sends (model.ts `planChunks`).
   * The rollout item is written first, conditionally and in state Creating: it is the lock, so
   * `false` (the rollout already exists: a redelivered event, or a second event for one new
   * instance) means nothing was written, and no second run can overwrite targets the first one
   * has already sent. Targets and chunks follow, then the rollout becomes InProgress with its
   * counts. Throws the SDK error.
   */
  async create(rollout: NewRollout, targets: NewTarget[]): Promise<boolean> {
    if (!(await this.begin(rollout))) return false;
    await this.finishCreating(rollout.rolloutId, targets, true);
    return true;
  }

  /**
   * Writes the rollout item alone, conditionally and in state Creating (the lock): `false` when
   * it exists already. `create` and a plan in parts start here. Throws the SDK error.
   */
  begin(rollout: NewRollout): Promise<boolean> {
    return beginRollout(this.table, rollout);
  }

  /**
   * Writes a Creating rollout's targets and planned chunks and makes it InProgress, with counts
   * taken from every target it now holds (`fresh`: the creator's own call, which knows them).
   * Also what a run that took over from a creator that stopped half-way calls: it writes only
   * the targets that are missing, then plans the chunks over all of them. Nothing has been sent
   * or queued while a rollout is Creating, so replanning is safe. Throws the SDK error.
   */
  async finishCreating(rolloutId: string, targets: NewTarget[], fresh = false): Promise<void> {
    const rollout = await this.getRollout(rolloutId);
    if (rollout === undefined || rollout.state !== 'Creating') return;
    const written = fresh ? [] : ((await this.load(rolloutId))?.targets ?? []);
    await finishCreating(this.table, rollout, targets, written, fresh);
  }

  /**
   * Makes a Creating rollout InProgress planned in parts (creating.ts), or false when it is not
   * Creating any more (another run made it). A takeover of a creator that stopped writes the
   * parts again (nothing of a Creating rollout is queued). Throws the SDK error.
   */
  async finishCreatingInParts(
    rolloutId: string,
    targets: NewTarget[],
    parts: PlanPart[],
  ): Promise<boolean> {
    const rollout = await this.getRollout(rolloutId);
    if (rollout === undefined || rollout.state !== 'Creating') return false;
    return finishCreatingInParts(this.table, rollout, targets, parts);
  }

  /** Claims one part of a plan in parts (parts.ts `claimPart`). Throws the SDK error. */
  claimPart(rolloutId: string, part: number): Promise<PartClaim> {
    return claimPart(this.table, rolloutId, part);
  }

  releasePart(rolloutId: string, part: number): Promise<void> {
    return releasePart(this.table, rolloutId, part);
  }

  /** Writes a claimed part's targets and chunks once (parts.ts). Throws the SDK error. */
  recordPart(rolloutId: string, part: PartRecord): Promise<void> {
    return recordPart(this.table, rolloutId, part);
  }

  /** Marks a part queued: the parts queued so far, or undefined if it was already. */
  completePart(rolloutId: string, part: number): Promise<number | undefined> {
    return completePart(this.table, rolloutId, part);
  }

  /** The parts of the plan (below `count`: a takeover may have planned fewer) not queued yet. */
  async unqueuedParts(rolloutId: string, count: number): Promise<number[]> {
    return (await unqueuedParts(this.table, rolloutId)).filter((part) => part < count);
  }

  /** The rollout's planned first sends, in key order. Throws the SDK error. */
  plannedChunks(rolloutId: string): Promise<SendChunk[]> {
    return plannedChunks(this.table, rolloutId);
  }

  /**
   * The targets of one stage of a staged rollout (from its planned chunks, then by key).
   * Throws the SDK error.
   */
  async stageTargets(rolloutId: string, stage: number): Promise<Target[]> {
    const chunks = (await this.plannedChunks(rolloutId)).filter((c) => c.stage === stage);
    const keys = chunks.flatMap((c) =>
      c.instanceIds.map((instanceId) => targetKey(rolloutId, { instanceId, path: c.path })),
    );
    return (await this.table.batchGet(keys)).map(toTarget);
  }

  /** Takes the right to send one planned chunk (see sending.ts). Throws the SDK error. */
  claimChunk(rolloutId: string, chunk: Pick<SendChunk, 'path' | 'index'>): Promise<ChunkClaim> {
    return claimChunk(this.table, rolloutId, chunk);
  }

  /** Marks a claimed chunk sent, with the commands that carried it. Throws the SDK error. */
  markChunkSent(
    rolloutId: string,
    chunk: Pick<SendChunk, 'path' | 'index'>,
    commandIds: string[],
  ): Promise<void> {
    return markChunkSent(this.table, rolloutId, chunk, commandIds);
  }

  /** Lets go of a chunk that sent nothing. Throws the SDK error. */
  releaseChunk(rolloutId: string, chunk: Pick<SendChunk, 'path' | 'index'>): Promise<void> {
    return releaseChunk(this.table, rolloutId, chunk);
  }

  /** Records that every unsent chunk is queued, and how long the sends may go on. */
  markQueued(rolloutId: string, chunks: number, sendingUntil: Date): Promise<void> {
    return markQueued(this.table, rolloutId, chunks, sendingUntil);
  }

  /**
   * Whether a first-attempt command of the rollout was sent to this instance for this file
   * (one paged query of the rollout's command records). Throws the SDK error.
   */
  async hasFirstCommand(rolloutId: string, ref: { instanceId: string; path: string }) {
    const items = await this.table.queryAll({
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :c)',
      FilterExpression: 'attempt = :one AND #path = :path AND contains(instanceIds, :id)',
      ExpressionAttributeNames: { '#path': 'path' },
      ExpressionAttributeValues: {
        ':pk': `R#${rolloutId}`,
        ':c': 'C#',
        ':one': 1,
        ':path': ref.path,
        ':id': ref.instanceId,
      },
      ConsistentRead: true,
    });
    return items.length > 0;
  }

  /** Moves the first-send lease out to at least `until`. Throws the SDK error. */
  extendSending(rolloutId: string, until: Date): Promise<void> {
    return extendSending(this.table, rolloutId, until);
  }

  /** Reserves `seconds` of the send pace all rollouts share; returns when it starts. */
  reservePace(seconds: number): Promise<Date> {
    return reservePace(this.table, seconds);
  }

  /**
   * The creator of a rollout holds a lease on sending its first attempts. Another run of the
   * same rollout (a redelivered event, or a second event for one new instance) may take over
   * only once that lease has run out, so two runs never send the same targets at once.
   * True if the caller now holds the lease. Throws the SDK error.
   */
  async takeOverSending(rolloutId: string): Promise<boolean> {
    return this.table.conditional({
      Key: rolloutKey(rolloutId),
      UpdateExpression: 'SET sendingUntil = :until',
      ConditionExpression:
        'attribute_exists(pk) AND (attribute_not_exists(sendingUntil) OR sendingUntil < :now)',
      ExpressionAttributeValues: { ':until': this.table.leaseEnd(), ':now': this.table.isoNow() },
    });
  }

  /** Records a command sent to some targets of one file. Throws the SDK error. */
  async recordCommand(rolloutId: string, command: Omit<CommandRecord, 'sentAt'>): Promise<void> {
    await this.table.db.send(
      new PutCommand({
        TableName: this.table.name,
        Item: {
          ...commandKey(rolloutId, command.commandId),
          type: 'command',
          ...command,
          sentAt: this.table.isoNow(),
          expiresAt: this.table.expiry(),
        },
      }),
    );
  }

  /** One target, or undefined. Throws the SDK error. */
  async getTarget(rolloutId: string, ref: { instanceId: string; path: string }) {
    const Item = await this.table.get(targetKey(rolloutId, ref));
    return Item === undefined ? undefined : toTarget(Item);
  }

  /** Targets of one file by instance id (absent ones are left out). Throws the SDK error. */
  async getTargets(rolloutId: string, refs: Array<{ instanceId: string; path: string }>) {
    const items = await this.table.batchGet(refs.map((ref) => targetKey(rolloutId, ref)));
    return new Map(items.map((item) => [item.instanceId as string, toTarget(item)]));
  }

  /** The rollout with all its targets and commands; undefined if there is no such rollout. */
  async load(
    rolloutId: string,
  ): Promise<{ rollout: Rollout; targets: Target[]; commands: CommandRecord[] } | undefined> {
    const items = await this.table.queryAll({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': `R#${rolloutId}` },
      ConsistentRead: true,
    });
    const rolloutItem = items.find((item) => item.type === 'rollout');
    if (rolloutItem === undefined) return undefined;
    const rollout = toRollout(rolloutItem);
    if (rollout.instanceIdPages !== undefined) {
      // The pages come in key order (I#00000, I#00001, …), as they were written.
      rollout.instanceIds = restrictionFrom(rolloutId, rollout.instanceIdPages, items);
    }
    return {
      rollout,
      targets: items.filter((item) => item.type === 'target').map(toTarget),
      commands: items.filter((item) => item.type === 'command').map(toCommand),
    };
  }

  /** Command records by (rollout, command) pair; missing ones are absent from the map. */
  async getCommands(
    keys: Array<{ rolloutId: string; commandId: string }>,
  ): Promise<Map<string, CommandRecord>> {
    const items = await this.table.batchGet(keys.map((k) => commandKey(k.rolloutId, k.commandId)));
    return new Map(items.map((item) => [item.commandId as string, toCommand(item)]));
  }

  /**
   * Commits target transitions of one rollout: each batch of ≤99 target updates commits with
   * one update of the rollout's counters, under a ClientRequestToken, so the SDK's retry of a
   * commit whose reply was lost is answered as the first call was.
   * A transition whose condition fails is re-read: if the target is already where it asks to
   * go it is `alreadyApplied` (its consequences are still owed), otherwise `stale`.
   * Throws RolloutNotFoundError, or the SDK error for anything else.
   */
  commit(rolloutId: string, transitions: Transition[]): Promise<CommitResult> {
    return commitTransitions(this.table, rolloutId, transitions);
  }

  /**
   * Marks the rollout settled if no target is pending; `settledNow` is true for exactly one
   * caller. The alert becomes Pending when the result needs one and `stillNews` agrees.
   * Throws the SDK error.
   */
  async settle(
    rolloutId: string,
    /** Asked only when the result would page: false keeps it from paging (a known problem). */
    stillNews: (rollout: Rollout) => Promise<boolean> = async () => true,
  ): Promise<{ rollout: Rollout | undefined; settledNow: boolean }> {
    const rollout = await this.getRollout(rolloutId);
    if (rollout === undefined || rollout.state !== 'InProgress' || rollout.counts.pending > 0) {
      return { rollout, settledNow: false };
    }
    // A plan in parts settles once every part is queued: a part not recorded yet may hold
    // unreachable targets, final already in the counts but not yet in the table.
    if (rollout.parts !== undefined && rollout.queuedChunks === undefined) {
      return { rollout, settledNow: false };
    }
    // A staged rollout settles once its stages are over: done, or abandoned (a halted one waits
    // for a person with nothing pending in the stages it reached).
    if (rollout.stages !== undefined && !['Done', 'Abandoned'].includes(rollout.stages.phase)) {
      return { rollout, settledNow: false };
    }
    // A halt's alert that went out stays sent: the settling owes a new one only for new news;
    // one still owed (its publish failed) stays owed.
    const owed =
      (settleAlertOwed(rollout) && (await stillNews(rollout))) ||
      rollout.alert === 'Pending' ||
      rollout.alert === 'Sending';
    const alert: AlertState = owed ? 'Pending' : rollout.alert === 'Sent' ? 'Sent' : 'None';
    const settledAt = this.table.isoNow();
    const settledNow = await this.table.conditional({
      Key: rolloutKey(rolloutId),
      UpdateExpression: 'SET #state = :settled, settledAt = :at, alert = :alert',
      ConditionExpression: `#state = :inProgress AND nPending = :zero AND (attribute_not_exists(parts) OR attribute_exists(queuedChunks))${
        rollout.stages === undefined
          ? ''
          : ' AND (#stages.#phase = :done OR #stages.#phase = :abandoned)'
      }`,
      ExpressionAttributeNames: {
        '#state': 'state',
        ...(rollout.stages === undefined ? {} : { '#stages': 'stages', '#phase': 'phase' }),
      },
      ExpressionAttributeValues: {
        ':settled': 'Settled',
        ':inProgress': 'InProgress',
        ':at': settledAt,
        ':alert': alert,
        ':zero': 0,
        ...(rollout.stages === undefined ? {} : { ':done': 'Done', ':abandoned': 'Abandoned' }),
      },
    });
    if (!settledNow) return { rollout: await this.getRollout(rolloutId), settledNow };
    return { rollout: { ...rollout, state: 'Settled', settledAt, alert }, settledNow };
  }

  /**
   * Claims the rollout's alert (Pending → Sending until the claim runs out): true for exactly
   * one caller at a time; a claim whose holder died (its publish failed, its function timed
   * out) can be taken again once it has run out. Throws the SDK error.
   */
  async claimAlert(rolloutId: string): Promise<boolean> {
    return claimAlertItem(this.table, rolloutKey(rolloutId), false);
  }

  /** Records that the rollout's alert went out. Throws the SDK error. */
  async markAlertSent(rolloutId: string): Promise<void> {
    await markAlertItemSent(this.table, rolloutKey(rolloutId));
  }

  /**
   * Claims the one alert about a new instance's launch, the same way as a rollout's: the first
   * caller, or a later one once an earlier claim has run out unsent. Throws the SDK error.
   */
  async claimLaunchAlert(instanceId: string, launch: string): Promise<boolean> {
    return claimAlertItem(this.table, launchAlertKey(instanceId, launch), true, {
      type: 'launch-alert',
      expiresAt: this.table.expiry(),
    });
  }

  /** Records that the alert about a launch went out. Throws the SDK error. */
  async markLaunchAlertSent(instanceId: string, launch: string): Promise<void> {
    await markAlertItemSent(this.table, launchAlertKey(instanceId, launch));
  }

  /**
   * Claims the right to send `attempt` to a target: true for exactly one caller at a time, and
   * only while the target is pending at that attempt with no command yet. A claim runs out
   * after the lease, so a sender that stopped before recording its command does not leave the
   * target pending forever. Throws the SDK error.
   */
  claimAttempt(rolloutId: string, ref: TargetRef, attempt: number): Promise<boolean> {
    return claimAttempt(this.table, rolloutId, ref, attempt);
  }

  /**
   * Marks a target's current attempt as re-queued by the sweep (due now, one more resend),
   * only while it is still pending at that attempt with no command and no live claim, and has
   * been re-queued fewer than `max` times. False if any of that no longer holds.
   * Throws the SDK error.
   */
  markResent(rolloutId: string, target: Target, max: number): Promise<boolean> {
    return markResent(this.table, rolloutId, target, max);
  }

  /** Lets go of claims on targets' attempt that sent nothing (SSM was throttling). */
  releaseClaims(rolloutId: string, refs: TargetRef[], attempt: number): Promise<void> {
    return releaseClaims(this.table, rolloutId, refs, attempt);
  }

  /**
   * Records the command sent for some targets' current attempt: its command record, then each
   * target's command (conditional on the attempt, so a target that moved on is left alone).
   * Throws the SDK error.
   */
  async recordAttemptCommands(
    rolloutId: string,
    refs: TargetRef[],
    attempt: number,
    commandId: string,
  ): Promise<void> {
    const [first] = refs;
    if (first === undefined) return;
    await this.recordCommand(rolloutId, {
      commandId,
      parameter: first.parameter,
      path: first.path,
      attempt,
      instanceIds: refs.map((ref) => ref.instanceId),
    });
    const results = await mapSettled(refs, 10, (ref) =>
      this.table.conditional({
        Key: targetKey(rolloutId, ref),
        UpdateExpression:
          'SET commandId = :command, commandIds = list_append(commandIds, :commands), updatedAt = :at',
        ConditionExpression: 'attempt = :attempt',
        ExpressionAttributeValues: {
          ':command': commandId,
          ':commands': [commandId],
          ':attempt': attempt,
          ':at': this.table.isoNow(),
        },
      }),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /**
   * Every rollout of a parameter recorded after `after` (an ISO instant), oldest first, all
   * pages, that may target any of `instanceIds` (≤ 99): other instances' bootstrap rollouts are
   * filtered out by DynamoDB, so a scale-out of hundreds does not make this grow.
   * Throws the SDK error.
   */
  rolloutsOfParameterSince(
    parameter: string,
    after: string,
    instanceIds: string[],
  ): Promise<IndexEntry[]> {
    return rolloutsOfParameterSince(this.table, parameter, after, instanceIds);
  }

  // A staged rollout's moves (staging.ts): each true for the one caller that made it.

  /** Sending → Baking until `until`, for the current stage `stage`. Throws the SDK error. */
  bakeStage(rolloutId: string, stage: number, until: Date): Promise<boolean> {
    return bakeStage(this.table, rolloutId, stage, until);
  }

  /** Sending → Done for the last stage. Throws the SDK error. */
  completeStages(rolloutId: string, stage: number): Promise<boolean> {
    return completeStages(this.table, rolloutId, stage);
  }

  /** Baking (or a resumed halt) → Sending of the next stage, under a fresh sending lease. */
  startStage(
    rolloutId: string,
    from: { stage: number; phase: 'Baking' | 'Halted' },
    decision?: Decision,
  ): Promise<boolean> {
    return startStage(this.table, rolloutId, from, this.table.leaseEnd(), decision);
  }

  /** A resume's consequences are done. Throws the SDK error. */
  clearResumeOwed(rolloutId: string): Promise<boolean> {
    return clearResumeOwed(this.table, rolloutId);
  }

  /** Halted at the last stage → Done: a person resumed it. Throws the SDK error. */
  resumeToDone(rolloutId: string, stage: number, decision: Decision): Promise<boolean> {
    return resumeToDone(this.table, rolloutId, stage, decision);
  }

  /** Sending or Baking → Halted; its alert becomes owed. Throws the SDK error. */
  haltStage(rolloutId: string, halt: StageHalt): Promise<boolean> {
    return haltStage(this.table, rolloutId, halt);
  }

  /** Halted (or still going) → Abandoned. Throws the SDK error. */
  abandonStages(rolloutId: string, decision: Decision): Promise<boolean> {
    return abandonStages(this.table, rolloutId, decision);
  }

  /** A parameter's release record in an environment. Throws the SDK error. */
  getRelease(environment: string, parameter: string): Promise<Release> {
    return getRelease(this.table, environment, parameter);
  }

  /** Records a version delivered to the whole environment (never lowers it). */
  markComplete(environment: string, parameter: string, version: number): Promise<boolean> {
    return raiseRelease(this.table, environment, parameter, 'completeVersion', version);
  }

  /** Records a staged change's version as the newest (false if a later one is). */
  markLatestChange(environment: string, parameter: string, version: number): Promise<boolean> {
    return raiseRelease(this.table, environment, parameter, 'latestChange', version);
  }

  /**
   * The instances whose own bootstrap rollout of `parameter` started after `after` (new
   * instances while a staged rollout went out). Throws the SDK error.
   */
  async bootstrapsOfParameterSince(parameter: string, after: string): Promise<string[]> {
    const items = await this.table.queryAll({
      KeyConditionExpression: 'pk = :pk AND sk > :after',
      FilterExpression: 'attribute_exists(bootstrapOf)',
      ExpressionAttributeValues: { ':pk': indexPk({ parameter }), ':after': after },
    });
    return [...new Set(items.map((item) => String(item.bootstrapOf)))];
  }

  /** Pins a parameter for a halted rollout (unless a later version's holds it). */
  hold(
    environment: string,
    parameter: string,
    held: NonNullable<Release['hold']>,
  ): Promise<boolean> {
    return hold(this.table, environment, parameter, held);
  }

  /** Lifts a rollout's hold, or marks it abandoned (the pin stays). */
  changeHold(
    environment: string,
    parameter: string,
    rolloutId: string,
    to: 'lifted' | 'Abandoned',
  ): Promise<boolean> {
    return changeHold(this.table, environment, parameter, rolloutId, to);
  }
}
