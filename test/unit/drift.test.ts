import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  DescribeInstanceInformationCommand,
  DescribeParametersCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { driftIntervalSeconds, parseConfig } from '../../shared/config.ts';
import { rolloutAlert } from '../../shared/report/alerts.ts';
import { rolloutListTable, rolloutTable } from '../../shared/report/status.ts';
import {
  type Counts,
  driftRepaired,
  hasProblems,
  needsAlert,
  type Rollout,
  type Target,
} from '../../shared/rollout/model.ts';
import { describeTrigger } from '../../shared/rollout/trigger.ts';
import { outcomeText } from '../local-cloud/console/render.ts';
import { instanceIds, lambdaContext, loadEvent, testConfigInput } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';

const counts = (over: Partial<Counts>): Counts => ({
  total: 3,
  pending: 0,
  success: 0,
  unchanged: 0,
  failed: 0,
  unreachable: 0,
  superseded: 0,
  terminated: 0,
  retries: 0,
  ...over,
});

describe('custom.fanout.drift', () => {
  const withDrift = (schedule: unknown) => ({
    ...structuredClone(testConfigInput),
    drift: { schedule },
  });

  it.each(['rate(6 hours)', 'rate(1 hour)', 'rate(15 minutes)', 'rate(1 day)', 'rate(7 days)'])(
    'accepts %s',
    (schedule) => {
      expect(parseConfig(withDrift(schedule)).drift).toEqual({ schedule });
    },
  );

  it.each([
    ['rate(1 hours)', 'singular exactly when the value is 1'],
    ['rate(5 hour)', 'singular exactly when the value is 1'],
    ['rate(0 hours)', 'rate expression'],
    ['rate(5 minutes)', 'at least rate(15 minutes)'],
    ['cron(0 3 * * ? *)', 'rate expression'],
    ['every 6 hours', 'rate expression'],
  ])('refuses %s, naming the field', (schedule, reason) => {
    expect(() => parseConfig(withDrift(schedule))).toThrow(
      new RegExp(`custom\\.fanout\\.drift\\.schedule: .*${reason.replace(/[()]/g, '\\$&')}`),
    );
  });

  it('is optional: no schedule, no drift runs', () => {
    expect(parseConfig(testConfigInput).drift).toBeUndefined();
  });

  it('measures the interval of a rate', () => {
    expect(driftIntervalSeconds('rate(6 hours)')).toBe(21_600);
    expect(driftIntervalSeconds('rate(1 day)')).toBe(86_400);
    expect(driftIntervalSeconds('cron(0 3 * * ? *)')).toBeNaN();
  });
});

describe('what a drift repair owes the on-call', () => {
  const drift = { type: 'drift', eventId: 'e-1' } as const;

  it('alerts when a drift rollout rewrote anything, and only then', () => {
    expect(needsAlert(counts({ success: 1, unchanged: 2 }), drift)).toBe(true);
    expect(needsAlert(counts({ unchanged: 3 }), drift)).toBe(false);
    expect(needsAlert(counts({ success: 3 }), { type: 'event', eventId: 'e' })).toBe(false);
    expect(needsAlert(counts({ success: 3 }))).toBe(false);
  });

  it('counts repairs only for drift rollouts, and never calls them problems', () => {
    expect(driftRepaired(counts({ success: 2 }), drift)).toBe(2);
    expect(driftRepaired(counts({ success: 2 }), { type: 'resync', principal: 'p' })).toBe(0);
    expect(hasProblems(counts({ success: 3 }))).toBe(false);
    expect(hasProblems(counts({ unreachable: 1, terminated: 1 }))).toBe(false);
    expect(hasProblems(counts({ failed: 1 }))).toBe(true);
  });

  it('names the trigger', () => {
    expect(describeTrigger(drift)).toBe('scheduled drift repair');
    expect(describeTrigger({ type: 'drift' })).toBe('drift repair (run by hand)');
  });
});

describe('the drift alert', () => {
  const PATH = '/var/www/html/env.php';
  const rollout = (c: Counts): Rollout => ({
    rolloutId: '20261123T160000000Z-0123abcd',
    trigger: { type: 'drift', eventId: 'e-1' },
    environment: 'prod',
    parameters: ['/prod/env.php'],
    files: [{ parameter: '/prod/env.php', path: PATH }],
    version: 4,
    createdAt: '2026-11-23T16:00:00.000Z',
    settledAt: '2026-11-23T16:01:00.000Z',
    state: 'Settled',
    alert: 'Pending',
    counts: c,
  });
  const target = (instanceId: string, status: Target['status'], extra: Partial<Target> = {}) =>
    ({
      instanceId,
      parameter: '/prod/env.php',
      path: PATH,
      status,
      attempt: 1,
      commandIds: ['c-1'],
      updatedAt: '2026-11-23T16:01:00.000Z',
      ...(status === 'Success' ? { versionWritten: 4 } : {}),
      ...extra,
    }) as Target;

  it('names each drifted instance with the file and version it now has, and not the others', () => {
    const [a, b, c] = instanceIds(3);
    const alert = rolloutAlert(
      rollout(counts({ success: 2, unchanged: 1 })),
      [
        target(a as string, 'Success'),
        target(b as string, 'Unchanged'),
        target(c as string, 'Success'),
      ],
      'prod',
    );
    expect(alert.subject).toBe(`secrets-fanout: prod drift repaired on 2 instances: ${a}, ${c}`);
    expect(alert.subject.length).toBeLessThanOrEqual(100);
    expect(alert.lines).toContain(`  ${a}: ${PATH} (now v4)`);
    expect(alert.lines).toContain(`  ${c}: ${PATH} (now v4)`);
    expect(alert.lines.join('\n')).not.toContain(b as string);
    expect(alert.lines.join('\n')).not.toContain('invoke -f resync');
    expect(alert.lines.join('\n')).toContain('invoke -f status --stage prod');
    expect(alert.attributes).toMatchObject({
      kind: 'drift-repaired',
      driftRepaired: '2',
      driftedInstances: '2',
      rolloutId: '20261123T160000000Z-0123abcd',
    });
  });

  it('caps the list and says how many more', () => {
    const ids = instanceIds(60);
    const alert = rolloutAlert(
      rollout(counts({ total: 60, success: 60 })),
      ids.map((id) => target(id, 'Success')),
    );
    expect(alert.subject).toMatch(/drift repaired on 60 instances: \S+, \S+ \+58$/);
    expect(alert.lines.filter((line) => line.startsWith('  i-'))).toHaveLength(50);
    expect(alert.lines).toContain('  … and 10 more instances (see status)');
  });

  it('keeps the failures and the re-sync command when the run also had problems', () => {
    const [a, b] = instanceIds(2);
    const alert = rolloutAlert(rollout(counts({ total: 2, success: 1, failed: 1 })), [
      target(a as string, 'Success'),
      target(b as string, 'Failed', {
        lastError: { status: 'Failed', exitCode: 75, meaning: 'FetchFailed' },
      } as Partial<Target>),
    ]);
    expect(alert.subject).toBe(
      'secrets-fanout: prod /prod/env.php v4: 1 failed, 0 unreachable; drift repaired on 1',
    );
    expect(alert.attributes.kind).toBe('rollout-settled-with-problems');
    expect(alert.lines.join('\n')).toContain(`  ${a}: ${PATH} (now v4)`);
    expect(alert.lines.join('\n')).toContain(`${b} ${PATH}: Failed, exit 75 FetchFailed`);
    expect(alert.lines.join('\n')).toContain('invoke -f resync');
  });
});

describe('the drift function', () => {
  const ssmMock = mockClient(SSMClient);
  const ec2Mock = mockClient(EC2Client);
  const sqsMock = mockClient(SQSClient);
  const snsMock = mockClient(SNSClient);
  const table = withRolloutsTable(() => import('../../functions/drift.ts'));
  const prod = instanceIds(3);
  let existing: Set<string>;

  beforeEach(() => {
    existing = new Set(['/prod/env.php']);
    ec2Mock.on(DescribeInstancesCommand).callsFake(({ Filters }) => {
      const env = Filters.find((f: any) => f.Name === 'tag:Environment')?.Values[0];
      const ids = env === 'prod' ? prod : [];
      return { Reservations: [{ Instances: ids.map((InstanceId) => ({ InstanceId })) }] };
    });
    ssmMock.on(DescribeInstanceInformationCommand).callsFake(({ Filters }) => ({
      InstanceInformationList: Filters[0].Values.map((InstanceId: string) => ({
        InstanceId,
        PingStatus: 'Online',
      })),
    }));
    ssmMock.on(DescribeParametersCommand).callsFake(({ ParameterFilters }) => ({
      Parameters: (ParameterFilters?.[0]?.Values ?? [])
        .filter((name: string) => existing.has(name))
        .map((Name: string) => ({ Name, Version: 4 })),
    }));
    ssmMock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-drift' } });
    sqsMock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm' });
    snsMock.on(PublishCommand).resolves({ MessageId: 'm' });
  });
  afterEach(() => {
    ssmMock.reset();
    ec2Mock.reset();
    sqsMock.reset();
    snsMock.reset();
  });
  const run = (event: unknown) =>
    table.handler.handler(event as any, lambdaContext()) as Promise<any>;

  it('starts one drift rollout of every mapped file to every instance, at its version', async () => {
    // Arrange
    const event = loadEvent('drift/scheduled');
    // Act
    const answer = await run(event);
    // Assert
    expect(answer.status).toBe('started');
    expect(answer.rollout).toMatchObject({
      trigger: { type: 'drift', eventId: event.eventId },
      environment: 'prod',
      parameters: ['/prod/env.php'],
      version: 4,
      targeted: 3,
    });
    const rollout = await table.store.getRollout(answer.rollout.rolloutId);
    expect(rollout?.trigger).toEqual({ type: 'drift', eventId: event.eventId });
    expect(rollout?.counts.total).toBe(3);
    const sent = ssmMock
      .commandCalls(SendCommandCommand)
      .flatMap((c) => c.args[0].input.InstanceIds);
    expect(sent.sort()).toEqual([...prod].sort());
  });

  it('maps a redelivered scheduled event to the same rollout', async () => {
    const event = { ...loadEvent<any>('drift/scheduled'), eventId: 'redelivered-1' };
    const first = await run(event);
    const again = await run(event);
    expect(again.rollout.rolloutId).toBe(first.rollout.rolloutId);
    expect(again.rollout.resumed).toBe(true);
  });

  it('records nothing for an environment without instances or parameters', async () => {
    const dev = await run({ environment: 'dev', eventId: 'e-dev' });
    expect(dev).toMatchObject({ status: 'nothing-to-do', environment: 'dev' });
    existing.clear();
    const none = await run({ environment: 'prod', eventId: 'e-none' });
    expect(none.reason).toBe('no mapped parameter of prod exists in Parameter Store');
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it('refuses an unknown environment or a malformed request, sending nothing', async () => {
    const unknown = await run({ environment: 'qa' });
    expect(unknown.reason).toMatch(/^environment qa is not configured/);
    await expect(run({ environment: 'prod', extra: 1 })).rejects.toThrow(/drift request refused/);
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
  });
});

describe('drift in the status view and the console', () => {
  const settled = (c: Counts): Rollout => ({
    rolloutId: '20261123T160000000Z-0123abcd',
    trigger: { type: 'drift', eventId: 'e-1' },
    environment: 'prod',
    parameters: ['/prod/env.php'],
    files: [{ parameter: '/prod/env.php', path: '/var/www/html/env.php' }],
    version: 4,
    createdAt: '2026-11-23T16:00:00.000Z',
    settledAt: '2026-11-23T16:01:00.000Z',
    state: 'Settled',
    alert: 'Sent',
    counts: c,
  });

  it('lists a drift rollout with its trigger and repaired count', () => {
    const [, row] = rolloutListTable([settled(counts({ success: 2, unchanged: 1 }))]);
    expect(row).toMatch(/scheduled drift repair: 2 repaired$/);
  });

  it('shows the repaired count above a rollout table', () => {
    const { stages: _, ...rollout } = settled(counts({ success: 2, unchanged: 1 }));
    const lines = rolloutTable({
      ...rollout,
      driftRepaired: 2,
      instances: [],
    });
    expect(lines[0]).toContain('scheduled drift repair');
    expect(lines).toContain(
      'drift repaired: 2 file(s) had drifted and were rewritten (state Success)',
    );
  });

  it('says in the console whether the run found drift', () => {
    expect(outcomeText(settled(counts({ success: 2, unchanged: 1 })))).toBe(
      'drift repaired: 2 (alert)',
    );
    expect(outcomeText(settled(counts({ unchanged: 3 })))).toBe('no drift');
    expect(outcomeText(settled(counts({ success: 1, failed: 1, unchanged: 1 })))).toBe(
      'drift repaired: 1 (alert); settled with problems (alert)',
    );
  });
});
