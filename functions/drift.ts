import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { depsFromEnv } from '../shared/deps.ts';
import { type DriftRequest, DriftRequestSchema } from '../shared/messages/drift.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseEvent } from '../shared/platform/parse.ts';
import { logger, metrics } from '../shared/platform/powertools.ts';
import { type RolloutReport, summarise } from '../shared/report/rollout-report.ts';
import { repairDrift } from '../shared/send/drift.ts';

const deps = depsFromEnv();

export type DriftAnswer =
  | { status: 'started'; rollout: RolloutReport; skipped: string[] }
  | { status: 'nothing-to-do'; environment: string; reason: string };

/**
 * Scheduled drift repair of one environment (one EventBridge schedule rule per environment,
 * `custom.fanout.drift.schedule`), or `serverless invoke -f drift --data '{"environment":"prod"}'`
 * to run one now. Starts the rollout and returns; the ledger settles it, counts the repaired
 * files (DriftRepaired) and alerts with the drifted instances when there are any.
 */
export const lambdaHandler = async (request: DriftRequest): Promise<DriftAnswer> => {
  metrics.addMetric('DriftRuns', MetricUnit.Count, 1);
  const result = await repairDrift(deps, request);
  if (result.status === 'nothing-to-do') {
    logger.info('drift repair: nothing to do', { ...result });
    return result;
  }
  const rollout = summarise(result.summary);
  logger.info('drift repair started', { rollout });
  return { status: 'started', rollout, skipped: result.skipped };
};

export const handler = observed<DriftRequest, DriftAnswer>()
  .use(parseEvent(DriftRequestSchema, 'drift request'))
  .handler(lambdaHandler);
