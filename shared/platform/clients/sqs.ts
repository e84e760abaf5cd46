import { SQSClient } from '@aws-sdk/client-sqs';
import { tracer } from '../powertools.ts';

export const sqs = tracer.captureAWSv3Client(
  new SQSClient({ retryMode: 'adaptive', maxAttempts: 6 }),
);
