import { testConfig } from './fixtures.ts';

// What serverless.yml gives every function, pointed at test values. Set before any handler
// module is imported, because handlers read their configuration at cold start.
Object.assign(process.env, {
  AWS_REGION: 'eu-west-1',
  AWS_ACCESS_KEY_ID: 'AKIDTESTTESTTEST',
  AWS_SECRET_ACCESS_KEY: 'test-secret-key-not-real',
  POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? 'SILENT',
  POWERTOOLS_TRACE_ENABLED: 'false',
  POWERTOOLS_METRICS_DISABLED: 'true',
  FANOUT_CONFIG: JSON.stringify(testConfig),
  DOCUMENT_NAME: 'secrets-fanout-test-ReplaceSecretsFile',
  COMMAND_OUTPUT_LOG_GROUP: '/secrets-fanout/test/commands',
  IDEMPOTENCY_TABLE: 'secrets-fanout-test-idempotency',
  ROLLOUTS_TABLE: 'secrets-fanout-test-rollouts',
  RETRY_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/123456789012/secrets-fanout-test-retries',
  STATUS_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/123456789012/secrets-fanout-test-status',
  BOOTSTRAP_QUEUE_URL:
    'https://sqs.eu-west-1.amazonaws.com/123456789012/secrets-fanout-test-bootstrap',
  STAGE: 'test',
  // The HTTP API the events/http fixtures came through (requestContext.apiId).
  HTTP_API_ID: 'abcdef1234',
  ALERTS_TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:secrets-fanout-test-alerts',
});
