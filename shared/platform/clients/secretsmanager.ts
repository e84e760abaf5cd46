import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { tracer } from '../powertools.ts';

// Metadata only (DescribeSecret): no function role may read a secret value.
export const secretsManager = tracer.captureAWSv3Client(
  new SecretsManagerClient({ retryMode: 'adaptive', maxAttempts: 6 }),
);
