import { makeHandlerIdempotent } from '@aws-lambda-powertools/idempotency/middleware';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { parameterNotPushedAlert, sendAlert } from '../shared/alerts.ts';
import { filesForParameter, requireEnv } from '../shared/config.ts';
import { fanOutDepsFromEnv } from '../shared/deps.ts';
import { fanOut, type RolloutSummary } from '../shared/fanout.ts';
import { idempotentOn } from '../shared/idempotency.ts';
import { currentVersion } from '../shared/parameters.ts';
import { parseEvent } from '../shared/parse.ts';
import { correlate, logger, metrics, tracer } from '../shared/powertools.ts';
import { newRolloutId } from '../shared/rollout-id.ts';
import { type RolloutReport, summarise } from '../shared/rollout-report.ts';
import {
  CONTENT_OPERATIONS,
  type ParameterChangeEvent,
  ParameterChangeEventSchema,
} from '../shared/schemas/parameter-change.ts';

// Read and checked once per container: a bad deployment fails at cold start, loudly.
const deps = fanOutDepsFromEnv();
const { config } = deps;

export type PropagateResult =
  | { status: 'sent'; rollout: RolloutReport }
  | { status: 'skipped'; parameter: string; operation: string; reason: string };

/**
 * A Parameter Store change: push a created or updated parameter to every instance of its
 * environment; for any other operation (Delete, LabelParameterVersion…) send nothing and alert.
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

  const summary = await fanOut(deps, {
    rolloutId,
    trigger: { type: 'event', eventId: event.id },
    environment,
    files,
    ...(version === undefined ? {} : { version }),
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
  metrics.addMetric('CommandChunksFailed', MetricUnit.Count, summary.failedChunks.length);
}

export const handler = middy<ParameterChangeEvent, PropagateResult>()
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics))
  .use(parseEvent(ParameterChangeEventSchema, 'Parameter Store Change event'))
  .use(makeHandlerIdempotent(idempotentOn(requireEnv('IDEMPOTENCY_TABLE'), 'id')))
  .handler(lambdaHandler);
