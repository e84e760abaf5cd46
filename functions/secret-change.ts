import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { requireEnv } from '../shared/config.ts';
import { depsFromEnv } from '../shared/deps.ts';
import {
  type SecretChangeEvent,
  SecretChangeEventSchema,
} from '../shared/messages/secret-change.ts';
import { documents } from '../shared/platform/clients/dynamodb.ts';
import { secretsManager } from '../shared/platform/clients/secretsmanager.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseEvent } from '../shared/platform/parse.ts';
import { correlate, logger, metrics } from '../shared/platform/powertools.ts';
import { parameterNotPushedAlert, sendAlert } from '../shared/report/alerts.ts';
import { type RolloutReport, summarise } from '../shared/report/rollout-report.ts';
import { propagateSecret } from '../shared/sources/secret-rollouts.ts';
import { SourceEvents } from '../shared/sources/source-events.ts';

const deps = {
  ...depsFromEnv(),
  secretsManager,
  sourceEvents: new SourceEvents(documents, requireEnv('IDEMPOTENCY_TABLE')),
};

export type SecretChangeResult =
  | { status: 'sent'; secret: string; versionId: string; rollout: RolloutReport }
  | { status: 'skipped'; secret?: string; reason: string; rolloutId?: string };

/**
 * A Secrets Manager change (CloudTrail via EventBridge): push the version now staged AWSCURRENT
 * to every instance of the secret's environment, once per version.
 */
export const lambdaHandler = async (event: SecretChangeEvent): Promise<SecretChangeResult> => {
  metrics.addMetric('SecretChangeEvents', MetricUnit.Count, 1);
  const outcome = await propagateSecret(deps, event);
  if (outcome.status === 'deleted') {
    correlate({ parameter: outcome.secret, environment: outcome.environment });
    await sendAlert(
      deps.sns,
      deps.alertsTopicArn,
      parameterNotPushedAlert({
        operation: 'DeleteSecret',
        parameter: outcome.secret,
        environment: outcome.environment,
        eventId: event.id,
        service: 'Secrets Manager',
      }),
    );
    return { status: 'skipped', secret: outcome.secret, reason: 'secret-deleted' };
  }
  if (outcome.status === 'skipped') {
    logger.info('secret change sends nothing', {
      eventName: event.detail.eventName,
      ...outcome,
    });
    return outcome;
  }
  correlate({ parameter: outcome.secret, rolloutId: outcome.summary.rolloutId });
  metrics.addMetric('InstancesTargeted', MetricUnit.Count, outcome.summary.targeted.length);
  const rollout = summarise(outcome.summary);
  logger.info('rollout sent', {
    eventName: event.detail.eventName,
    versionId: outcome.versionId,
    rollout,
  });
  return { status: 'sent', secret: outcome.secret, versionId: outcome.versionId, rollout };
};

export const handler = observed<SecretChangeEvent, SecretChangeResult>()
  .use(parseEvent(SecretChangeEventSchema, 'Secrets Manager CloudTrail event'))
  .handler(lambdaHandler);
