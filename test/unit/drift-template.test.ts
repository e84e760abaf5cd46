import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { packageService, serviceCopy } from '../support/package.ts';

// The scheduled drift repair as `serverless package` builds it from custom.fanout.drift.

type Resource = { Type: string; Properties: any };
let resources: Record<string, Resource>;

beforeAll(() => {
  const template = JSON.parse(
    readFileSync(join(inject('packagedDir'), 'cloudformation-template-update-stack.json'), 'utf8'),
  );
  resources = template.Resources;
});

describe('drift repair schedules', () => {
  it('one scheduled rule per environment, invoking drift with the event id and time', () => {
    const rules = Object.entries(resources).filter(
      ([, r]) => r.Type === 'AWS::Events::Rule' && r.Properties.ScheduleExpression !== undefined,
    );
    expect(rules.map(([id]) => id).sort()).toEqual([
      'DriftScheduleDev0',
      'DriftScheduleProd2',
      'DriftScheduleStaging1',
    ]);
    const [, prod] = rules.find(([id]) => id === 'DriftScheduleProd2')!;
    expect(prod.Properties.ScheduleExpression).toBe('rate(6 hours)');
    expect(prod.Properties.EventPattern).toBeUndefined();
    const [target] = prod.Properties.Targets;
    expect(target.Arn).toEqual({ 'Fn::GetAtt': ['DriftLambdaFunction', 'Arn'] });
    expect(target.InputTransformer).toEqual({
      InputPathsMap: { id: '$.id', time: '$.time' },
      InputTemplate: '{"environment":"prod","eventId":"<id>","time":"<time>"}',
    });
    expect(target.DeadLetterConfig).toEqual({ Arn: { 'Fn::GetAtt': ['DeadLetterQueue', 'Arn'] } });
  });

  it('lets only its own rule invoke the function', () => {
    expect(resources.DriftScheduleProd2Permission?.Properties).toEqual({
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': ['DriftLambdaFunction', 'Arn'] },
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': ['DriftScheduleProd2', 'Arn'] },
    });
  });

  it('shows DriftRepaired on the dashboard', () => {
    const body = JSON.stringify(resources.Dashboard?.Properties.DashboardBody);
    expect(body).toContain('DriftRepaired');
  });
});

describe('packaging a bad drift schedule', () => {
  it('fails and names the field', async () => {
    const dir = await serviceCopy({
      serverlessYml: (yml) => yml.replace("schedule: 'rate(6 hours)'", "schedule: 'rate(6 hour)'"),
    });
    const failure = await packageService(join(dir, 'out'), dir).then(
      () => undefined,
      (error: { stdout: string; stderr: string }) => `${error.stdout}${error.stderr}`,
    );
    expect(failure).toContain('custom.fanout.drift.schedule');
    expect(failure).toContain('singular exactly when the value is 1');
  }, 120_000);
});
