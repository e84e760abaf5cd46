import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type FanoutConfigInput, parseConfig } from '../../shared/config.ts';

/** The config the unit tests run with: two environments, one mapped file. */
export const testConfigInput: FanoutConfigInput = {
  tagKey: 'Environment',
  environments: ['dev', 'prod'],
  files: [
    {
      parameter: '/{env}/env.php',
      path: '/var/www/html/env.php',
      owner: 'apache',
      group: 'apache',
      mode: '0400',
      format: 'raw',
    },
  ],
  rollout: { maxConcurrency: '25%', maxErrors: '10%', timeoutSeconds: 600 },
  retry: { maxAttempts: 3, baseDelaySeconds: 30 },
};
export const testConfig = parseConfig(testConfigInput);

const eventsDir = fileURLToPath(new URL('../../events/', import.meta.url));

/** A fresh copy of a fixture from events/ (e.g. 'parameter-store-change/update'). */
export function loadEvent<T = Record<string, unknown>>(name: string): T {
  return JSON.parse(readFileSync(`${eventsDir}${name}.json`, 'utf8')) as T;
}

/** A minimal Lambda context for calling a middy handler directly. */
export function lambdaContext(functionName = 'secrets-fanout-test') {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:eu-west-1:123456789012:function:${functionName}`,
    memoryLimitInMB: '512',
    awsRequestId: `req-${Math.random().toString(16).slice(2)}`,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'test',
    getRemainingTimeInMillis: () => 60_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Instance ids i-0000000000000001… in order. */
export function instanceIds(count: number, offset = 0): string[] {
  return Array.from(
    { length: count },
    (_, i) => `i-${(i + 1 + offset).toString(16).padStart(17, '0')}`,
  );
}
