import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';

/**
 * One Logger, Tracer and Metrics per function, shared by every module it bundles.
 * Service name, log level and sampling come from POWERTOOLS_* variables set in serverless.yml.
 */
export const logger = new Logger({ serviceName: 'secrets-fanout' });
export const tracer = new Tracer({ serviceName: 'secrets-fanout' });
// Pure as far as a bundle is concerned: a function that never uses it (status) leaves it out.
export const metrics = /* @__PURE__ */ new Metrics({
  namespace: 'SecretsFanout',
  serviceName: 'secrets-fanout',
});

/** The keys every log line of a rollout carries, so one Logs Insights query follows it. */
export interface CorrelationKeys {
  rolloutId?: string;
  parameter?: string;
  version?: number;
  environment?: string;
  commandId?: string;
  instanceId?: string;
}

/** Adds correlation keys to every following log line of this invocation. */
export function correlate(keys: CorrelationKeys): void {
  logger.appendKeys({ ...keys });
}
