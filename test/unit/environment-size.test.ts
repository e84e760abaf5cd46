import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { checkEnvironmentSize } from '../local-cloud/cloud.ts';

const require = createRequire(import.meta.url);
const { measure, oversized } = require('../../shared/build/environment-size.cjs');

const context = { stack: 'secrets-fanout-prod', region: 'ap-southeast-2', partition: 'aws' };
const resources = {
  RetryQueue: { Type: 'AWS::SQS::Queue' },
  RolloutsTable: { Type: 'AWS::DynamoDB::Table' },
  AlertsTopic: { Type: 'AWS::SNS::Topic' },
  Logs: { Type: 'AWS::Logs::LogGroup', Properties: { LogGroupName: '/secrets-fanout/prod' } },
};

describe("a function's environment as Lambda measures it (environment-size.cjs)", () => {
  it('counts names, values and JSON punctuation, quotes inside values twice', () => {
    const variables = { A: 'x', CONFIG: '{"a":1}' };
    // {"A":"x","CONFIG":"{\"a\":1}"}
    expect(measure(variables, { ...context, resources }).bytes).toBe(
      JSON.stringify(variables).length,
    );
    expect(JSON.stringify(variables)).toBe('{"A":"x","CONFIG":"{\\"a\\":1}"}');
  });

  it('sizes what CloudFormation fills in at deploy as the longest name it would generate', () => {
    const { shares } = measure(
      {
        QUEUE: { Ref: 'RetryQueue' },
        TABLE: { Ref: 'RolloutsTable' },
        TOPIC: { Ref: 'AlertsTopic' },
        LOGS: { Ref: 'Logs' },
      },
      { ...context, resources },
    );
    const suffix = 'X'.repeat(13);
    const expected = {
      QUEUE: `https://sqs.ap-southeast-2.amazonaws.com/123456789012/secrets-fanout-prod-RetryQueue-${suffix}`,
      TABLE: `secrets-fanout-prod-RolloutsTable-${suffix}`,
      TOPIC: `arn:aws:sns:ap-southeast-2:123456789012:secrets-fanout-prod-AlertsTopic-${suffix}`,
      LOGS: '/secrets-fanout/prod',
    };
    expect(Object.fromEntries(shares)).toEqual(
      Object.fromEntries(
        Object.entries(expected).map(([name, value]) => [name, `"${name}":"${value}"`.length]),
      ),
    );
  });

  it('refuses to guess a reference it does not know', () => {
    expect(() =>
      measure({ X: { 'Fn::GetAtt': ['RetryQueue', 'Arn'] } }, { ...context, resources }),
    ).toThrow('cannot size');
  });

  it('names each function over 4,096 bytes, with its largest variables', () => {
    const fn = (size: number) => ({
      Type: 'AWS::Lambda::Function',
      Properties: {
        Environment: { Variables: { BIG: 'b'.repeat(size), QUEUE: { Ref: 'RetryQueue' } } },
      },
    });
    const queue = `"QUEUE":"https://sqs.ap-southeast-2.amazonaws.com/123456789012/secrets-fanout-prod-RetryQueue-${'X'.repeat(13)}"`;
    // {"BIG":"…",<queue>}: 9 bytes around BIG's value, 1 comma, 2 braces.
    const fits = 4096 - queue.length - '"BIG":""'.length - 3;
    const template = { Resources: { ...resources, Fits: fn(fits), Over: fn(fits + 1) } };
    const problems = oversized(template, context);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^Over: its environment is 4097 bytes .* largest: BIG \d+, QUEUE \d+/,
    );
  });
});

describe("the local cloud's Lambda", () => {
  it('refuses an environment over 4 KB as Lambda measures it, as a deploy would fail', () => {
    const exactly = { V: 'v'.repeat(4096 - '{"V":""}'.length) };
    expect(() => checkEnvironmentSize('fn', exactly)).not.toThrow();
    expect(() => checkEnvironmentSize('fn', { ...exactly, W: '' })).toThrow(
      'exceeded the 4KB limit. String measured: {"V":',
    );
  });
});
