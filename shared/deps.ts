import type { SNSClient } from '@aws-sdk/client-sns';
import { loadConfig, requireEnv } from './config.ts';
import { documents } from './platform/clients/dynamodb.ts';
import { ec2 } from './platform/clients/ec2.ts';
import { sns } from './platform/clients/sns.ts';
import { sqs } from './platform/clients/sqs.ts';
import { ssm } from './platform/clients/ssm.ts';
import { rolloutAlert, sendAlert } from './report/alerts.ts';
import { Ledger, type RolloutNotifier } from './rollout/ledger.ts';
import { RolloutStore } from './rollout/store.ts';

/**
 * The composition root: every function's dependencies, built from the environment
 * serverless.yml gives it — the clients, the store, and the ledger wired to the alert texts.
 * Call once, at cold start; throws ConfigError naming what is missing or invalid.
 */
export function depsFromEnv(env: NodeJS.ProcessEnv = process.env) {
  const config = loadConfig(env);
  const store = new RolloutStore(documents, requireEnv('ROLLOUTS_TABLE', env));
  const alertsTopicArn = env.ALERTS_TOPIC_ARN || undefined;
  const stage = env.STAGE || undefined;
  const ledger = new Ledger({
    store,
    sqs,
    config,
    retryQueueUrl: requireEnv('RETRY_QUEUE_URL', env),
    statusQueueUrl: requireEnv('STATUS_QUEUE_URL', env),
    notify: rolloutNotifier(sns, alertsTopicArn, stage),
  });
  return {
    ec2,
    ssm,
    sqs,
    sns,
    config,
    store,
    ledger,
    documentName: requireEnv('DOCUMENT_NAME', env),
    outputLogGroup: requireEnv('COMMAND_OUTPUT_LOG_GROUP', env),
    ...(alertsTopicArn === undefined ? {} : { alertsTopicArn }),
    ...(stage === undefined ? {} : { stage }),
  };
}

/** Publishes a settled rollout's one alert to the topic (only logs it when there is none). */
export function rolloutNotifier(
  client: SNSClient,
  topicArn: string | undefined,
  stage: string | undefined,
): RolloutNotifier {
  return (rollout, targets) => sendAlert(client, topicArn, rolloutAlert(rollout, targets, stage));
}
