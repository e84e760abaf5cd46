import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { filesForPathOf, requireEnv } from '../shared/config.ts';
import { depsFromEnv } from '../shared/deps.ts';
import {
  type ParameterChangeEvent,
  ParameterChangeEventSchema,
} from '../shared/messages/parameter-change.ts';
import { documents } from '../shared/platform/clients/dynamodb.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseEvent } from '../shared/platform/parse.ts';
import { correlate, logger, metrics } from '../shared/platform/powertools.ts';
import { recordPathChange } from '../shared/sources/path-rollouts.ts';
import { SourceEvents } from '../shared/sources/source-events.ts';

const deps = {
  ...depsFromEnv(),
  sourceEvents: new SourceEvents(documents, requireEnv('IDEMPOTENCY_TABLE')),
  pathSettleQueueUrl: requireEnv('PATH_SETTLE_QUEUE_URL'),
};

// Changes of a parameter's value or existence rewrite the file; a label changes neither.
const PATH_OPERATIONS: ReadonlySet<string> = new Set(['Create', 'Update', 'Delete']);

export type PathChangeResult =
  | { status: 'coalesced'; path: string; burstId: string; changes: number; scheduled: boolean }
  | { status: 'skipped'; parameter: string; operation: string; reason: string };

/**
 * A parameter under a mapped path was created, updated or deleted: add it to the path's burst.
 * The burst's settle check (path-settle) starts one rollout once changes stop.
 */
export const lambdaHandler = async (event: ParameterChangeEvent): Promise<PathChangeResult> => {
  const { operation, name } = event.detail;
  metrics.addMetric('PathChangeEvents', MetricUnit.Count, 1);
  const [file] = filesForPathOf(deps.config, name);
  if (file === undefined) {
    // The rule matches by prefix, so deeper names (/prod/app/db/X) arrive too; not entries.
    return {
      status: 'skipped',
      parameter: name,
      operation,
      reason: 'not-directly-under-a-mapped-path',
    };
  }
  correlate({ parameter: file.parameter, environment: file.environment });
  if (!PATH_OPERATIONS.has(operation)) {
    return { status: 'skipped', parameter: name, operation, reason: 'not-a-content-change' };
  }
  const burst = await recordPathChange(deps, {
    environment: file.environment,
    path: file.parameter,
    eventId: event.id,
    at: new Date(),
  });
  logger.info('path change coalesced', { changed: name, operation, ...burst });
  return { status: 'coalesced', path: file.parameter, ...burst };
};

export const handler = observed<ParameterChangeEvent, PathChangeResult>()
  .use(parseEvent(ParameterChangeEventSchema, 'Parameter Store Change event'))
  .handler(lambdaHandler);
