import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { tracer } from '../powertools.ts';

export const autoscaling = tracer.captureAWSv3Client(
  new AutoScalingClient({ retryMode: 'adaptive', maxAttempts: 6 }),
);
