import { IdempotencyConfig } from '@aws-lambda-powertools/idempotency';
import { DynamoDBPersistenceLayer } from '@aws-lambda-powertools/idempotency/dynamodb';
import { dynamodb } from './clients/dynamodb.ts';

// EventBridge retries delivery to a target for up to 24 hours
// (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-retry-policy.html), so a
// duplicate can arrive that late; remember each event a little longer.
const REMEMBER_EVENTS_SECONDS = 25 * 60 * 60;

/** Idempotency keyed on one field of the event (e.g. the EventBridge `id`); throws if absent. */
export function idempotentOn(tableName: string, eventKeyJmesPath: string) {
  return {
    persistenceStore: new DynamoDBPersistenceLayer({ tableName, awsSdkV3Client: dynamodb }),
    config: new IdempotencyConfig({
      eventKeyJmesPath,
      expiresAfterSeconds: REMEMBER_EVENTS_SECONDS,
      throwOnNoIdempotencyKey: true,
    }),
  };
}
