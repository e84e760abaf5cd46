import type { FanoutConfig } from '../config.ts';
import type { LastError, Rollout, Target, TargetRef, Transition } from './model.ts';
import { LEASE_SECONDS } from './store.ts';

/**
 * The retry policy and every time rule that follows from it, in one place: when a failed
 * attempt is retried and how long it waits, when an attempt must be over, and so when the
 * sweep may call a target lost. All derived from custom.fanout's `retry` and `rollout`.
 */

/** The document step's own timeoutSeconds (documents/replace-secrets-file.yml). */
export const EXECUTION_TIMEOUT_SECONDS = 600;
// Slack for clocks, EventBridge and SQS latency on top of every computed deadline.
const MARGIN_SECONDS = 120;
/** The sweep looks again at least this often while a rollout is not done. */
export const MIN_SWEEP_INTERVAL_SECONDS = 60;
// SQS DelaySeconds maximum (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html).
const MAX_DELAY_SECONDS = 900;

type Timing = Pick<FanoutConfig, 'retry' | 'rollout'>;

/**
 * Delay before attempt `attempt` (2 for the first retry): exponential from `baseSeconds`,
 * capped at SQS's 900 s maximum message delay, with "equal jitter" (between half and all of
 * it) so retries of a fleet do not arrive in lockstep. `random` is in [0, 1). Never throws.
 */
export function backoffSeconds(
  attempt: number,
  baseSeconds: number,
  random: () => number = Math.random,
) {
  const exponential = Math.min(MAX_DELAY_SECONDS, baseSeconds * 2 ** Math.max(0, attempt - 2));
  const half = exponential / 2;
  return Math.min(MAX_DELAY_SECONDS, Math.max(1, Math.round(half + random() * half)));
}

/**
 * The move a failed attempt makes: to the next attempt, due after its backoff, while any
 * remain; else to Failed, the status saying how many attempts were made. Never throws.
 */
export function retryOrFail(
  base: TargetRef & { fromAttempt: number; commandId?: string },
  lastError: LastError,
  retry: FanoutConfig['retry'],
  now: Date,
  random: () => number = Math.random,
): Transition {
  if (base.fromAttempt < retry.maxAttempts) {
    const delay = backoffSeconds(base.fromAttempt + 1, retry.baseDelaySeconds, random);
    return {
      ...base,
      to: 'Retry',
      lastError,
      retryAt: new Date(now.getTime() + delay * 1000).toISOString(),
    };
  }
  return {
    ...base,
    to: 'Failed',
    lastError: { ...lastError, status: `${lastError.status} (after ${base.fromAttempt} attempts)` },
  };
}

/** How long one attempt may take once sent: delivery timeout plus the step's own timeout. */
function attemptSeconds(timing: Timing): number {
  return timing.rollout.timeoutSeconds + EXECUTION_TIMEOUT_SECONDS;
}

/** When the current attempt of a target becomes due: its retry time, or the rollout's start. */
function attemptStart(target: Pick<Target, 'retryAt'>, rollout: Pick<Rollout, 'createdAt'>) {
  return Date.parse(target.retryAt ?? rollout.createdAt);
}

/**
 * The instant after which a pending target's current attempt is lost if Run Command has no
 * final status for it and no one holds it: due time, plus a sender's lease (it may be sending
 * right now), plus the longest the command may take, plus a margin. A slow but working
 * instance always reports before this: Run Command itself ends the command by then. Never throws.
 */
export function attemptDeadline(
  target: Pick<Target, 'retryAt'>,
  rollout: Pick<Rollout, 'createdAt'>,
  timing: Timing,
): number {
  return (
    attemptStart(target, rollout) + (LEASE_SECONDS + attemptSeconds(timing) + MARGIN_SECONDS) * 1000
  );
}

/**
 * The instant after which a command sent at `sentAt` is over by SSM's own rules: a delivery
 * timeout, then the step's execution timeout ("Delivery Timed Out" / "Execution Timed Out",
 * https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html), plus a
 * margin. An invocation Run Command still calls unfinished after this is lost. Never throws.
 */
export function commandDeadline(sentAt: string, timing: Timing): number {
  return Date.parse(sentAt) + (attemptSeconds(timing) + MARGIN_SECONDS) * 1000;
}

/**
 * Whether nobody can still be sending the target's current attempt: its retry message is
 * not waiting out its delay (or being handled), no retrier holds a live claim, and no run holds
 * the rollout's sending lease for a first attempt. A target for which this is false is never
 * "never sent" to a sweep. Never throws.
 */
export function mayBeSendingStill(
  target: Pick<Target, 'attempt' | 'retryAt' | 'claimedUntil'>,
  rollout: Pick<Rollout, 'sendingUntil'>,
  now: Date,
): boolean {
  const t = now.getTime();
  const until = (iso: string | undefined) => iso !== undefined && Date.parse(iso) > t;
  if (until(target.claimedUntil)) return true;
  if (target.attempt === 1 && until(rollout.sendingUntil)) return true;
  // A retry message becomes visible at retryAt, may be turned away busy a few times and holds
  // a claim while it sends: give it a lease and a margin beyond its due time.
  if (target.retryAt === undefined) return false;
  return t < Date.parse(target.retryAt) + (LEASE_SECONDS + MARGIN_SECONDS) * 1000;
}

/**
 * How many times the sweep re-queues an attempt nobody sent (a retry message lost to a crash
 * or the dead-letter queue, a fan-out that died) before it counts the attempt as used.
 */
export const MAX_SWEEP_RESENDS = 3;

/** When to sweep a new rollout first: once its first attempts must be over. Never throws. */
export function firstSweepDue(createdAt: Date, timing: Timing): Date {
  return new Date(attemptDeadline({}, { createdAt: createdAt.toISOString() }, timing));
}

/** SQS delay for a message due at `due`: 0 if due, at most SQS's 900 s (the message hops). */
export function delayUntil(due: Date | string, now: Date): number {
  const seconds = Math.ceil((new Date(due).getTime() - now.getTime()) / 1000);
  return Math.max(0, Math.min(MAX_DELAY_SECONDS, seconds));
}
