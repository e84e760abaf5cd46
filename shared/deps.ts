import { documents } from './clients/dynamodb.ts';
import { ec2 } from './clients/ec2.ts';
import { sns } from './clients/sns.ts';
import { sqs } from './clients/sqs.ts';
import { ssm } from './clients/ssm.ts';
import { loadConfig, requireEnv } from './config.ts';
import type { FanOutDeps } from './fanout.ts';
import { RolloutStore } from './rollouts.ts';

/**
 * Everything the fan-out path needs (propagate, resync, retry, bootstrap), from the
 * environment serverless.yml gives the function. Call once, at cold start; throws ConfigError
 * naming what is missing or invalid.
 */
export function fanOutDepsFromEnv(env: NodeJS.ProcessEnv = process.env): FanOutDeps {
  return {
    ec2,
    ssm,
    sqs,
    sns,
    config: loadConfig(env),
    store: new RolloutStore(documents, requireEnv('ROLLOUTS_TABLE', env)),
    documentName: requireEnv('DOCUMENT_NAME', env),
    outputLogGroup: requireEnv('COMMAND_OUTPUT_LOG_GROUP', env),
    retryQueueUrl: requireEnv('RETRY_QUEUE_URL', env),
    statusQueueUrl: requireEnv('STATUS_QUEUE_URL', env),
    ...(env.ALERTS_TOPIC_ARN ? { alertsTopicArn: env.ALERTS_TOPIC_ARN } : {}),
    ...(env.STAGE ? { stage: env.STAGE } : {}),
  };
}
