import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { SNSClient } from '@aws-sdk/client-sns';
import { rolloutAlert, sendAlert } from './alerts.ts';
import { logger, metrics } from './powertools.ts';
import type { Rollout, RolloutStore } from './rollouts.ts';

export interface SettlementDeps {
  store: RolloutStore;
  sns: SNSClient;
  alertsTopicArn?: string;
  /** How the on-call re-syncs from the CLI, e.g. `--stage prod`. */
  stage?: string;
}

/**
 * Settles the rollout if nothing is pending and, for the one caller that settles it (or a
 * caller that finds its alert still unsent), sends the single alert it deserves and records
 * that it went out. Throws if the alert cannot be published, so the caller retries.
 */
export async function settleAndAlert(
  deps: SettlementDeps,
  rolloutId: string,
): Promise<Rollout | undefined> {
  const { rollout, settledNow, alertDue } = await deps.store.settle(rolloutId);
  if (rollout === undefined) return undefined;
  if (settledNow) {
    const seconds = (Date.parse(rollout.settledAt ?? '') - Date.parse(rollout.createdAt)) / 1000;
    logger.info('rollout settled', { rolloutId, counts: rollout.counts, seconds });
    metrics.addMetric('RolloutDuration', MetricUnit.Seconds, Math.max(0, seconds));
    metrics.addMetric('RolloutsSettled', MetricUnit.Count, 1);
    metrics.addMetric('RolloutsFailed', MetricUnit.Count, alertDue ? 1 : 0);
  }
  if (alertDue) {
    const loaded = await deps.store.load(rolloutId);
    if (loaded !== undefined) {
      await sendAlert(
        deps.sns,
        deps.alertsTopicArn,
        rolloutAlert(loaded.rollout, loaded.targets, deps.stage),
      );
      await deps.store.markAlertSent(rolloutId);
    }
  }
  return rollout;
}
