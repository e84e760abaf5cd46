import * as z from '../zod.ts';

/**
 * What CloudTrail records for a Secrets Manager call that can stage a new AWSCURRENT version,
 * as EventBridge delivers it ("AWS API Call via CloudTrail"), and the rotation's end
 * ("AWS Service Event via CloudTrail", eventName RotationSucceeded, the secret's ARN in
 * additionalEventData.SecretId).
 * https://docs.aws.amazon.com/secretsmanager/latest/userguide/cloudtrail_log_entries.html
 * https://docs.aws.amazon.com/secretsmanager/latest/userguide/monitoring-eventbridge.html
 * CloudTrail never records the secret value; we read names and ids only.
 */
const nullableRecord = z.nullish(z.record(z.string(), z.unknown()));

export const SecretChangeEventSchema = z.object({
  version: z.string(),
  id: z.string().check(z.minLength(1)),
  source: z.literal('aws.secretsmanager'),
  account: z.string(),
  time: z.iso.datetime(),
  region: z.string(),
  resources: z.array(z.string()),
  'detail-type': z.enum(['AWS API Call via CloudTrail', 'AWS Service Event via CloudTrail']),
  detail: z.object({
    eventSource: z.literal('secretsmanager.amazonaws.com'),
    eventName: z.string().check(z.minLength(1)),
    requestParameters: nullableRecord,
    responseElements: nullableRecord,
    additionalEventData: nullableRecord,
    errorCode: z.optional(z.string()),
  }),
  'replay-name': z.optional(z.string()),
});

export type SecretChangeEvent = z.infer<typeof SecretChangeEventSchema>;

/**
 * The calls after which AWSCURRENT may point at a new version: CreateSecret (the first),
 * PutSecretValue and UpdateSecret with a value (AWSCURRENT by default), UpdateSecretVersionStage
 * (moving AWSCURRENT by hand, or a rotation function's finishSecret step), and the rotation's
 * RotationSucceeded. Which version is current is then read from DescribeSecret, never assumed.
 */
export const SECRET_CHANGE_EVENTS: readonly string[] = [
  'CreateSecret',
  'PutSecretValue',
  'UpdateSecret',
  'UpdateSecretVersionStage',
  'RotationSucceeded',
  // Not a new version: sends nothing and alerts, as a deleted parameter does.
  'DeleteSecret',
];

/** The secret an event is about (a name or an ARN, as the caller gave it), or undefined. */
export function secretIdOf(event: SecretChangeEvent): string | undefined {
  const { requestParameters, responseElements, additionalEventData } = event.detail;
  const candidates = [
    responseElements?.arn,
    // Before February 2024 some events spelled it aRN (same page as above).
    responseElements?.aRN,
    requestParameters?.secretId,
    additionalEventData?.SecretId,
    requestParameters?.name,
  ];
  return candidates.find((value): value is string => typeof value === 'string' && value !== '');
}
