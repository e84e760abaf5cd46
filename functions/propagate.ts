import { makeHandlerIdempotent } from '@aws-lambda-powertools/idempotency/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { filesForParameter, requireEnv } from '../shared/config.ts';
import { depsFromEnv } from '../shared/deps.ts';
import {
  CONTENT_OPERATIONS,
  type ParameterChangeEvent,
  ParameterChangeEventSchema,
} from '../shared/messages/parameter-change.ts';
import { idempotentOn } from '../shared/platform/idempotency.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseEvent } from '../shared/platform/parse.ts';
import { correlate, logger, metrics } from '../shared/platform/powertools.ts';
import { parameterNotPushedAlert, sendAlert } from '../shared/report/alerts.ts';
import { type RolloutReport, summarise } from '../shared/report/rollout-report.ts';
import { newRolloutId } from '../shared/rollout/rollout-id.ts';
import { fanOut, type RolloutSummary } from '../shared/send/fanout.ts';
import { currentVersion } from '../shared/send/parameters.ts';
import { stagedPlan } from '../shared/stages/plan.ts';

// Read and checked once per container: a bad deployment fails at cold start, loudly.
const deps = depsFromEnv();
const { config } = deps;

export type PropagateResult =
  | { status: 'sent'; rollout: RolloutReport }
  | { status: 'skipped'; parameter: string; operation: string; reason: string };

/**
 * A Parameter Store change: push a created or updated parameter to every instance of its
 * environment (stage by stage where custom.fanout.rollout.stages says so); for any other
 * operation (Delete, LabelParameterVersion…) send nothing and alert.
 */
export const lambdaHandler = async (event: ParameterChangeEvent): Promise<PropagateResult> => {
  const { operation, name } = event.detail;
  metrics.addMetric('ParameterChangeEvents', MetricUnit.Count, 1);
  const files = filesForParameter(config, name);
  const environment = files[0]?.environment;
  correlate({ parameter: name, ...(environment === undefined ? {} : { environment }) });

  if (environment === undefined) {
    // The rule matches mapped names only; this is a rule edited by hand or a replayed event.
    logger.warn('parameter is not mapped in custom.fanout; nothing sent', { operation });
    return { status: 'skipped', parameter: name, operation, reason: 'not-mapped' };
  }
  if (!CONTENT_OPERATIONS.has(operation)) {
    await sendAlert(
      deps.sns,
      deps.alertsTopicArn,
      parameterNotPushedAlert({ operation, parameter: name, environment, eventId: event.id }),
    );
    return { status: 'skipped', parameter: name, operation, reason: 'not-a-content-change' };
  }

  const version = await currentVersion(deps.ssm, name);
  if (version === undefined) {
    // Right after a Create the metadata may lag; instances fetch the latest value anyway.
    logger.warn('parameter metadata not found; sending anyway, instances fetch the latest');
  }
  const rolloutId = newRolloutId(new Date(event.time), event.id);
  correlate({ rolloutId, ...(version === undefined ? {} : { version }) });

  const plan = await stagedPlan(deps, { environment, parameter: name, version, rolloutId });
  if ('skip' in plan) {
    logger.info('older than a staged change; nothing sent', { reason: plan.skip });
    return { status: 'skipped', parameter: name, operation, reason: 'superseded' };
  }
  const summary = await fanOut(deps, {
    rolloutId,
    trigger: { type: 'event', eventId: event.id },
    environment,
    files,
    ...(version === undefined ? {} : { version }),
    ...plan,
  });
  recordMetrics(summary);
  const rollout = summarise(summary);
  logger.info('rollout sent', { rollout });
  return { status: 'sent', rollout };
};

function recordMetrics(summary: RolloutSummary): void {
  metrics.addMetric('InstancesTargeted', MetricUnit.Count, summary.targeted.length);
  metrics.addMetric('InstancesUnreachable', MetricUnit.Count, summary.unreachable.length);
  metrics.addMetric('CommandsSent', MetricUnit.Count, summary.commands.length);
  metrics.addMetric('ChunksQueued', MetricUnit.Count, summary.queued);
  metrics.addMetric('CommandChunksFailed', MetricUnit.Count, summary.failedChunks.length);
}

export const handler = observed<ParameterChangeEvent, PropagateResult>()
  .use(parseEvent(ParameterChangeEventSchema, 'Parameter Store Change event'))
  .use(makeHandlerIdempotent(idempotentOn(requireEnv('IDEMPOTENCY_TABLE'), 'id')))
  .handler(lambdaHandler);
