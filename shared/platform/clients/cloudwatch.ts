import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { tracer } from '../powertools.ts';

// Created once per container, only in the function that watches staged rollouts' alarms.
export const cloudwatch = tracer.captureAWSv3Client(
  new CloudWatchClient({ retryMode: 'adaptive', maxAttempts: 6 }),
);
