import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { tracer } from '../powertools.ts';

export const dynamodb = tracer.captureAWSv3Client(new DynamoDBClient({ maxAttempts: 6 }));
