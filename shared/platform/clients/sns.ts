import { SNSClient } from '@aws-sdk/client-sns';
import { tracer } from '../powertools.ts';

export const sns = tracer.captureAWSv3Client(
  new SNSClient({ retryMode: 'adaptive', maxAttempts: 6 }),
);
