import { EC2Client } from '@aws-sdk/client-ec2';
import { tracer } from '../powertools.ts';

// Created once per container. Adaptive retry backs off client-side when the service throttles,
// so a burst of SendCommand/Describe calls slows down instead of failing.
export const ec2 = tracer.captureAWSv3Client(
  new EC2Client({ retryMode: 'adaptive', maxAttempts: 6 }),
);
