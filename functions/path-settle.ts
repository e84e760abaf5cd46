import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { requireEnv } from '../shared/config.ts';
import { depsFromEnv } from '../shared/deps.ts';
import { PathSettleMessageSchema } from '../shared/messages/path-settle.ts';
import { documents } from '../shared/platform/clients/dynamodb.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseOrThrow } from '../shared/platform/parse.ts';
import { logger, metrics } from '../shared/platform/powertools.ts';
import { summarise } from '../shared/report/rollout-report.ts';
import { settlePath } from '../shared/sources/path-rollouts.ts';
import { SourceEvents } from '../shared/sources/source-events.ts';

const deps = {
  ...depsFromEnv(),
  sourceEvents: new SourceEvents(documents, requireEnv('IDEMPOTENCY_TABLE')),
  pathSettleQueueUrl: requireEnv('PATH_SETTLE_QUEUE_URL'),
};
const processor = new BatchProcessor(EventType.SQS);

/** One burst's settle check: wait longer, or start the path's one rollout. */
async function settleRecord(record: SQSRecord): Promise<void> {
  const message = parseOrThrow(
    PathSettleMessageSchema,
    JSON.parse(record.body),
    'path settle message',
  );
  const outcome = await settlePath(deps, message, new Date());
  if (outcome.result === 'rolled-out') {
    metrics.addMetric('PathRollouts', MetricUnit.Count, 1);
    logger.info('path rollout sent', {
      path: message.path,
      environment: message.environment,
      rolloutId: outcome.summary.rolloutId,
      rollout: summarise(outcome.summary),
    });
  } else {
    logger.info('path settle check', { path: message.path, burstId: message.burstId, ...outcome });
  }
}

/** Settle checks of coalesced path changes (SQS, delayed by the settle window). */
export const lambdaHandler = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  processPartialResponse(event, settleRecord, processor, {
    context,
    throwOnFullBatchFailure: false,
  });

export const handler = observed<SQSEvent, SQSBatchResponse>().handler(lambdaHandler);
