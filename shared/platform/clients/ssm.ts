import { SSMClient } from '@aws-sdk/client-ssm';
import { tracer } from '../powertools.ts';

// Created once per container. Adaptive retry backs off client-side when the service throttles,
// so a burst of SendCommand/Describe calls slows down instead of failing.
export const ssm = tracer.captureAWSv3Client(
  new SSMClient({ retryMode: 'adaptive', maxAttempts: 6 }),
);
