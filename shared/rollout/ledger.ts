import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { SendMessageBatchCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { FanoutConfig } from '../config.ts';
import type { ResumeMessage, RetryMessage, StageMessage } from '../messages/retry.ts';
import type { SweepMessage } from '../messages/sweep.ts';
import { chunk, mapSettled } from '../platform/chunk.ts';
import { logger, metrics } from '../platform/powertools.ts';
import {
  countsSinceHalt,
  driftRepaired,
  hasProblems,
  isProblem,
  type Rollout,
  type Target,
  type TargetRef,
  type Transition,
  targetId,
  targetsAfter,
} from './model.ts';
import {
  delayUntil,
  firstSweepDue,
  MAX_SWEEP_RESENDS,
  MIN_SWEEP_INTERVAL_SECONDS,
} from './policy.ts';
import type { RolloutStore } from './store.ts';

/** Publishes the one alert of a settled rollout; throws if it could not, so it is tried again. */
export type RolloutNotifier = (rollout: Rollout, targets: Target[]) => Promise<void>;

export interface LedgerDeps {
  store: RolloutStore;
  sqs: SQSClient;
  retryQueueUrl: string;
  /** Where sweeps wait (the status queue). */
  statusQueueUrl: string;
  config: Pick<FanoutConfig, 'retry' | 'rollout'>;
  notify: RolloutNotifier;
}

// SendMessageBatch takes at most 10 entries
// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html).
const SQS_BATCH = 10;
const SQS_CALLS_IN_FLIGHT = 4;
// SendCommand takes at most 50 instance ids
// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html).
const MAX_INSTANCES_PER_RETRY = 50;

/**
 * The one owner of the rollout state machine. Callers (tracker, retrier, sweeper, fan-out,
 * bootstrap) report what they observed as transitions; only the ledger commits them and carries
 * out what they imply, always in this order, so a crash between any two steps is finished by
 * whoever comes next (a redelivered message, the sweep):
 *
 *   1. commit the transitions (idempotent: a commit found already applied still counts);
 *   2. queue the retries the commit implies, each delayed until its attempt is due;
 *   3. settle the rollout when nothing is pending (exactly one caller settles it);
 *   4. claim the alert (Pending → Sending, with an expiry: one publisher at a time);
 *   5. publish it;
 *   6. mark it sent.
 *
 * Steps 3-6 run on every call, so any caller that finds a rollout settled with its alert
 * unsent (a publish that failed, a publisher that died) sends it.
 */
export class Ledger {
  private readonly deps: LedgerDeps;

  constructor(deps: LedgerDeps) {
    this.deps = deps;
  }

  /** The current time, as every rule of the ledger and its callers reads it. */
  now(): Date {
    return this.deps.store.clock();
  }

  /**
   * Records observed transitions of one rollout and carries out their consequences.
   * Returns what was applied (now or by an earlier call) and what was stale.
   * Throws the SDK error (or the notifier's), so the caller's message is retried.
   */
  async record(
    rolloutId: string,
    transitions: Transition[],
  ): Promise<{ applied: Transition[]; stale: Transition[] }> {
    if (transitions.length === 0) {
      await this.finish(rolloutId);
      return { applied: [], stale: [] };
    }
    const { applied, alreadyApplied, stale } = await this.deps.store.commit(rolloutId, transitions);
    if (alreadyApplied.length > 0) {
      logger.info('transitions found already committed; finishing their consequences', {
        rolloutId,
        count: alreadyApplied.length,
      });
    }
    await this.queueRetries(rolloutId, [...applied, ...alreadyApplied]);
    await this.finish(rolloutId);
    return { applied: [...applied, ...alreadyApplied], stale };
  }

  /**
   * Settles the rollout if nothing is pending and sends its alert if one is owed and unclaimed.
   * Safe to call any number of times, by anyone. Returns the rollout as it now stands.
   * Throws the SDK error or the notifier's.
   */
  async finish(rolloutId: string): Promise<Rollout | undefined> {
    const { store } = this.deps;
    const { rollout, settledNow } = await store.settle(rolloutId, (r) => this.stillNews(r));
    if (rollout === undefined) return undefined;
    if (settledNow) {
      const seconds = (Date.parse(rollout.settledAt ?? '') - Date.parse(rollout.createdAt)) / 1000;
      logger.info('rollout settled', { rolloutId, counts: rollout.counts, seconds });
      metrics.addMetric('RolloutDuration', MetricUnit.Seconds, Math.max(0, seconds));
      metrics.addMetric('RolloutsSettled', MetricUnit.Count, 1);
      // Failed means problems: a drift repair's alert is news, not a failure (its own metric).
      metrics.addMetric('RolloutsFailed', MetricUnit.Count, hasProblems(rollout.counts) ? 1 : 0);
      if (rollout.trigger.type === 'drift') {
        metrics.addMetric(
          'DriftRepaired',
          MetricUnit.Count,
          driftRepaired(rollout.counts, rollout.trigger),
        );
      }
    }
    if (settledNow && completedEverywhere(rollout)) {
      // The version every instance now has: what a later halt rolls back to.
      for (const parameter of rollout.parameters) {
        await store.markComplete(rollout.environment, parameter, rollout.version ?? 0);
      }
    }
    if (stageMayBeOver(rollout)) await this.checkStage(rollout);
    if (!alertOwed(rollout, this.now())) return rollout;
    if (!(await store.claimAlert(rolloutId))) return rollout;
    const loaded = await store.load(rolloutId);
    if (loaded === undefined) return rollout;
    await this.deps.notify(loaded.rollout, loaded.targets);
    await store.markAlertSent(rolloutId);
    logger.info('rollout alert sent', { rolloutId });
    return { ...loaded.rollout, alert: 'Sent' };
  }

  /**
   * Whether a settling rollout's problems are news. A scheduled drift repair that repaired
   * nothing and whose failed or unreachable files were all failed or unreachable in the
   * environment's previous drift repair already paged for them: "alert once when something
   * stays broken", not every run. Anything else is news. Throws the SDK error.
   */
  private async stillNews(rollout: Rollout): Promise<boolean> {
    if (rollout.trigger.type !== 'drift' || driftRepaired(rollout.counts, rollout.trigger) > 0) {
      return true;
    }
    const { store } = this.deps;
    const entries = await store.recentRollouts({ environment: rollout.environment }, 50);
    const previous = entries.find(
      (e) =>
        e.triggerType === 'drift' &&
        e.rolloutId !== rollout.rolloutId &&
        e.createdAt < rollout.createdAt,
    );
    if (previous === undefined) return true;
    const [before, now] = await Promise.all([
      store.load(previous.rolloutId),
      store.load(rollout.rolloutId),
    ]);
    if (before === undefined || now === undefined) return true;
    const known = new Set(before.targets.filter(isProblem).map(targetId));
    const news = now.targets.filter(isProblem).some((t) => !known.has(targetId(t)));
    if (!news) {
      logger.info('drift repair: the same problems as the last run; not paged again', {
        rolloutId: rollout.rolloutId,
        previous: previous.rolloutId,
      });
    }
    return news;
  }

  /**
   * Asks the send workers to look at a staged rollout's current stage (now, or after `delay`
   * seconds): halt, bake, or start the next. Throws the SDK error.
   */
  async checkStage(rollout: Pick<Rollout, 'rolloutId' | 'stages'>, delay = 0): Promise<void> {
    if (rollout.stages === undefined) return;
    const message: StageMessage = {
      kind: 'stage',
      rolloutId: rollout.rolloutId,
      stage: rollout.stages.current,
    };
    await this.queueMessages([{ body: message, delay }]);
  }

  /**
   * Queues a sweep of the rollout, due `due` (default: once its first attempts must be over).
   * Called before a rollout is created and again on every takeover, so no rollout exists
   * without one. Throws the SDK error.
   */
  async scheduleSweep(rolloutId: string, due?: Date, round = 0): Promise<void> {
    const now = this.now();
    const at = due ?? firstSweepDue(now, this.deps.config);
    const sweep: SweepMessage = { kind: 'sweep', rolloutId, due: at.toISOString(), round };
    await this.deps.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.deps.statusQueueUrl,
        MessageBody: JSON.stringify(sweep),
        DelaySeconds: delayUntil(at, now),
      }),
    );
  }

  /** Queues the sweep's next look: at `due`, but not sooner than the minimum interval. */
  async sweepAgain(sweep: SweepMessage, due: number): Promise<void> {
    const soonest = this.now().getTime() + MIN_SWEEP_INTERVAL_SECONDS * 1000;
    await this.scheduleSweep(sweep.rolloutId, new Date(Math.max(due, soonest)), sweep.round + 1);
  }

  /**
   * Queues the retries, delayed until their attempt is due. Throws if any message could not be
   * queued: the commit stands, and the caller's redelivery (or the sweep) queues it again.
   */
  private async queueRetries(rolloutId: string, transitions: Transition[]): Promise<void> {
    await this.queueChunks(
      rolloutId,
      transitions.flatMap((t) =>
        t.to === 'Retry' ? [{ target: t, attempt: t.fromAttempt + 1, due: t.retryAt }] : [],
      ),
    );
  }

  /**
   * Queues retry messages: targets of one file whose attempt is due at the same moment (the
   * retries of one observation batch share a backoff) go as one message per 50 instances, so a
   * retry is one SendCommand for the chunk, not one per instance; ten messages a call.
   * Throws if any message could not be queued.
   */
  private async queueChunks(
    rolloutId: string,
    retries: Array<{ target: TargetRef; attempt: number; due: string }>,
  ): Promise<void> {
    const now = this.now();
    const groups = new Map<string, { first: (typeof retries)[number]; ids: string[] }>();
    for (const retry of retries) {
      const key = `${retry.target.path}\0${retry.attempt}\0${retry.due}`;
      const group = groups.get(key) ?? { first: retry, ids: [] };
      group.ids.push(retry.target.instanceId);
      groups.set(key, group);
    }
    const messages = [...groups.values()].flatMap(({ first, ids }) =>
      chunk(ids, MAX_INSTANCES_PER_RETRY).map((instanceIds) => ({
        body: {
          rolloutId,
          instanceIds,
          parameter: first.target.parameter,
          path: first.target.path,
          attempt: first.attempt,
        } satisfies RetryMessage,
        delay: delayUntil(first.due, now),
      })),
    );
    await this.queueMessages(messages);
  }

  /**
   * Queues messages on the retry queue (the send workers' queue: retries, planned first sends,
   * plans and resumes), each delayed by its own `delay` (≤900 s), ten a call, a few calls in
   * flight. Throws if any message could not be queued.
   */
  async queueMessages(messages: Array<{ body: object; delay: number }>): Promise<void> {
    const results = await mapSettled(
      chunk(messages, SQS_BATCH),
      SQS_CALLS_IN_FLIGHT,
      async (part) => {
        const { Failed } = await this.deps.sqs.send(
          new SendMessageBatchCommand({
            QueueUrl: this.deps.retryQueueUrl,
            Entries: part.map(({ body, delay }, index) => ({
              Id: String(index),
              MessageBody: JSON.stringify(body),
              DelaySeconds: delay,
            })),
          }),
        );
        if (Failed !== undefined && Failed.length > 0) {
          throw new Error(
            `could not queue ${Failed.length} messages: ${Failed[0]?.Code} ${Failed[0]?.Message}`,
          );
        }
      },
    );
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /**
   * Asks the fan-out to resume a rollout left half-created (its creator stopped and nobody is
   * redelivering it): a message on the retry queue, whose function sends. Throws the SDK error.
   */
  async requestResume(rolloutId: string): Promise<void> {
    await this.deps.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.deps.retryQueueUrl,
        MessageBody: JSON.stringify({ kind: 'resume', rolloutId } satisfies ResumeMessage),
      }),
    );
  }

  /**
   * Re-sends attempts nobody sent (their retry message lost to a crash or the dead-letter
   * queue, or a fan-out that died): each target is marked resent (conditionally: still unsent,
   * no live claim, resent fewer than MAX_SWEEP_RESENDS times), then queued at once, in chunks.
   * Returns the targets it could not mark: the caller counts their attempt as used.
   * Throws the SDK error.
   */
  async resend(rolloutId: string, targets: Target[]): Promise<Target[]> {
    const marked: Target[] = [];
    const refused: Target[] = [];
    for (const target of targets) {
      if (await this.deps.store.markResent(rolloutId, target, MAX_SWEEP_RESENDS)) {
        marked.push(target);
      } else {
        refused.push(target);
      }
    }
    const due = this.now().toISOString();
    await this.queueChunks(
      rolloutId,
      marked.map((target) => ({ target, attempt: target.attempt, due })),
    );
    return refused;
  }

  /**
   * Puts a retry message back for the part of a chunk another run holds or that is not
   * committed yet, due in `seconds`. Throws the SDK error.
   */
  async requeueRetry(message: RetryMessage, seconds: number): Promise<void> {
    await this.deps.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.deps.retryQueueUrl,
        MessageBody: JSON.stringify(message),
        DelaySeconds: seconds,
      }),
    );
  }
}

/**
 * Whether a staged rollout's current stage may be over: it is sending, and no more targets are
 * pending than the later stages hold (the stage check counts exactly). Never throws.
 */
function stageMayBeOver(rollout: Rollout): boolean {
  const { stages } = rollout;
  return (
    stages !== undefined &&
    rollout.state === 'InProgress' &&
    stages.phase === 'Sending' &&
    rollout.queuedChunks !== undefined &&
    rollout.counts.pending <= targetsAfter(stages, stages.current)
  );
}

/**
 * Whether a settled rollout brought one version of its parameter to every instance it could
 * reach without a failure: a parameter change (staged ones only when every stage passed).
 */
function completedEverywhere(rollout: Rollout): boolean {
  return (
    rollout.trigger.type === 'event' &&
    rollout.version !== undefined &&
    rollout.instanceIds === undefined &&
    rollout.instanceIdPages === undefined &&
    rollout.parameters.length === 1 &&
    // Unreachable instances got nothing (they are alerted on their own): only a failure
    // means the version did not go where it was sent.
    countsSinceHalt(rollout).failed === 0 &&
    (rollout.stages === undefined || rollout.stages.phase === 'Done')
  );
}

/**
 * Whether a rollout's alert is owed and nobody holds a live claim on it: a settled rollout's,
 * or a halted staged rollout's (the halt's).
 */
function alertOwed(rollout: Rollout, now: Date): boolean {
  if (rollout.state !== 'Settled' && rollout.stages?.phase !== 'Halted') return false;
  if (rollout.alert === 'Pending') return true;
  return (
    rollout.alert === 'Sending' &&
    rollout.alertClaimUntil !== undefined &&
    Date.parse(rollout.alertClaimUntil) < now.getTime()
  );
}
