import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { depsFromEnv } from '../shared/deps.ts';
import {
  PartMessageSchema,
  PlanMessageSchema,
  ResumeMessageSchema,
  RetryMessageSchema,
  SendChunkMessageSchema,
  StageMessageSchema,
} from '../shared/messages/retry.ts';
import { cloudwatch } from '../shared/platform/clients/cloudwatch.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseOrThrow } from '../shared/platform/parse.ts';
import { logger, metrics } from '../shared/platform/powertools.ts';
import { summarise } from '../shared/report/rollout-report.ts';
import { sendPlannedChunk } from '../shared/send/chunk-sender.ts';
import { queuePart } from '../shared/send/parts.ts';
import { resumeRollout } from '../shared/send/resume.ts';
import { planResync } from '../shared/send/resync.ts';
import { progressStage } from '../shared/stages/progress.ts';
import { retryChunk } from '../shared/track/retrier.ts';

const deps = { ...depsFromEnv(), cloudwatch };
const processor = new BatchProcessor(EventType.SQS);

/**
 * One message of the send queue: a planned first send of a chunk at its turn; a delayed retry
 * of a chunk (the targets' next attempt, or why not); a part of a large rollout's plan to record
 * and queue; a whole-environment re-sync to plan; a
 * staged rollout's stage to look at (halt, bake or go on); or a request of the sweep to resume
 * a rollout its creator left half-created.
 */
async function retryRecord(record: SQSRecord): Promise<void> {
  const body = JSON.parse(record.body);
  if (body?.kind === 'send') {
    const message = parseOrThrow(SendChunkMessageSchema, body, 'send message');
    const { result, sent } = await sendPlannedChunk(deps, message);
    metrics.addMetric('ChunksSent', MetricUnit.Count, result === 'sent' ? 1 : 0);
    logger.info('chunk handled', {
      rolloutId: message.rolloutId,
      path: message.path,
      index: message.index,
      instances: message.instanceIds.length,
      result,
      commandIds: sent.map((c) => c.commandId),
    });
    return;
  }
  if (body?.kind === 'part') {
    const { rolloutId, part } = parseOrThrow(PartMessageSchema, body, 'part message');
    const queued = await queuePart(deps, rolloutId, part);
    logger.info('part of a plan queued', {
      rolloutId,
      part,
      sent: queued.commands.length,
      queued: queued.queued,
    });
    return;
  }
  if (body?.kind === 'plan') {
    const message = parseOrThrow(PlanMessageSchema, body, 'plan message');
    const summary = await planResync(deps, message);
    logger.info('resync planned', { rollout: summarise(summary) });
    return;
  }
  if (body?.kind === 'stage') {
    const message = parseOrThrow(StageMessageSchema, body, 'stage message');
    const result = await progressStage(deps, message);
    logger.info('stage looked at', {
      rolloutId: message.rolloutId,
      stage: message.stage + 1,
      result,
    });
    return;
  }
  if (body?.kind === 'resume') {
    const { rolloutId } = parseOrThrow(ResumeMessageSchema, body, 'resume message');
    const result = await resumeRollout(deps, rolloutId);
    metrics.addMetric('RolloutsResumed', MetricUnit.Count, result === 'resumed' ? 1 : 0);
    logger.info('resume handled', { rolloutId, result });
    return;
  }
  const message = parseOrThrow(RetryMessageSchema, body, 'retry message');
  const results = await retryChunk(deps, message);
  const counts = new Map<string, number>();
  for (const result of results.values()) counts.set(result, (counts.get(result) ?? 0) + 1);
  for (const [result, n] of counts) {
    metrics.addMetric(`Retries${result[0]?.toUpperCase()}${result.slice(1)}`, MetricUnit.Count, n);
  }
  // Keys on the line itself: records of a batch run concurrently, so appended keys would mix.
  const { instanceIds, ...chunk } = message;
  logger.info('retry handled', {
    ...chunk,
    instances: instanceIds.length,
    results: Object.fromEntries(counts),
  });
}

/** A batch of due sends and retries (SQS, each delayed to its turn); failed ones come back later. */
export const lambdaHandler = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  processPartialResponse(event, retryRecord, processor, {
    context,
    throwOnFullBatchFailure: false,
  });

export const handler = observed<SQSEvent, SQSBatchResponse>().handler(lambdaHandler);
