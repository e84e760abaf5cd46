import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { depsFromEnv } from '../shared/deps.ts';
import {
  CommandCompletionEventSchema,
  CommandInvocationEventSchema,
} from '../shared/messages/command-status.ts';
import { type SweepMessage, SweepMessageSchema } from '../shared/messages/sweep.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseOrThrow } from '../shared/platform/parse.ts';
import { logger, metrics } from '../shared/platform/powertools.ts';
import { sweepRollout } from '../shared/track/sweeper.ts';
import { type StatusMessage, trackStatusEvents } from '../shared/track/tracker.ts';

// The fan-out dependencies carry all the tracker needs (clients, store, config, queues).
const deps = depsFromEnv();
const processor = new BatchProcessor(EventType.SQS);

/**
 * A batch of Run Command status events (EventBridge → SQS: a finished command, or a failed
 * invocation): record how each instance ended,
 * queue retries, settle finished rollouts and alert once for those with problems. Messages
 * that cannot be applied yet are reported as batch item failures and come back later. The
 * same queue carries each rollout's delayed sweep, the safety net for lost events.
 */
export const lambdaHandler = async (
  event: SQSEvent,
  context: Context,
): Promise<SQSBatchResponse> => {
  const invalid = new Map<string, Error>();
  const messages: StatusMessage[] = [];
  const sweeps: Array<{ messageId: string; sweep: SweepMessage }> = [];
  for (const record of event.Records) {
    try {
      const body = JSON.parse(record.body);
      if (body?.kind === 'sweep') {
        sweeps.push({
          messageId: record.messageId,
          sweep: parseOrThrow(SweepMessageSchema, body, 'sweep'),
        });
        continue;
      }
      const parsed =
        body?.['detail-type'] === 'EC2 Command Status-change Notification'
          ? parseOrThrow(CommandCompletionEventSchema, body, 'command status event')
          : parseOrThrow(CommandInvocationEventSchema, body, 'status event');
      messages.push({ messageId: record.messageId, event: parsed });
    } catch (error) {
      logger.error('status event refused; it will go to the dead-letter queue', {
        messageId: record.messageId,
        error: error as Error,
      });
      invalid.set(record.messageId, error as Error);
    }
  }
  metrics.addMetric('StatusEventsReceived', MetricUnit.Count, event.Records.length);
  const toRetry = await trackStatusEvents(deps, messages);
  for (const { messageId, sweep } of sweeps) {
    try {
      const result = await sweepRollout(deps, sweep);
      logger.info('rollout swept', { rolloutId: sweep.rolloutId, round: sweep.round, result });
    } catch (error) {
      logger.error('sweep failed; SQS will redeliver it', {
        rolloutId: sweep.rolloutId,
        error: error as Error,
      });
      toRetry.add(messageId);
    }
  }
  return processPartialResponse(
    event,
    async (record: SQSRecord) => {
      const problem = invalid.get(record.messageId);
      if (problem !== undefined) throw problem;
      if (toRetry.has(record.messageId)) throw new Error('not applied yet; SQS will redeliver it');
    },
    processor,
    // Report every failed message instead of failing the invocation: a batch that is all
    // "not finished yet" is routine, not a function error that pages someone.
    { context, throwOnFullBatchFailure: false },
  );
};

export const handler = observed<SQSEvent, SQSBatchResponse>().handler(lambdaHandler);
