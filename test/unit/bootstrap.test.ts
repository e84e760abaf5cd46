import { AutoScalingClient, CompleteLifecycleActionCommand } from '@aws-sdk/client-auto-scaling';
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
import {
  type BootstrapDeps,
  checkBootstrap,
  firstCheck,
} from '../../shared/bootstrap/new-instances.ts';
import { parseConfig } from '../../shared/config.ts';
import { rolloutNotifier } from '../../shared/deps.ts';
import { Ledger } from '../../shared/rollout/ledger.ts';
import type { Transition } from '../../shared/rollout/model.ts';
import { newRolloutId } from '../../shared/rollout/rollout-id.ts';
import { RolloutStore } from '../../shared/rollout/store.ts';
import { lambdaContext, loadEvent, testConfigInput } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { sqsBatch } from '../support/status-events.ts';

const ec2Mock = mockClient(EC2Client);
const ssmMock = mockClient(SSMClient);
const sqsMock = mockClient(SQSClient);
const snsMock = mockClient(SNSClient);
const asgMock = mockClient(AutoScalingClient);

const table = withRolloutsTable(() => import('../../functions/bootstrap.ts'));

const parameter = '/prod/env.php';
const path = '/var/www/html/env.php';
let launchSeconds = 0;
/** The instance under test: a fresh id and launch time per test, so tests share no rollouts. */
let instance: { id: string; launch: Date; env: string; state: string; online: boolean };

beforeEach(() => {
  launchSeconds += 1;
  instance = {
    id: `i-${(0xb00 + launchSeconds).toString(16).padStart(17, '0')}`,
    launch: new Date(Date.UTC(2026, 10, 23, 16, 20, launchSeconds)),
    env: 'prod',
    state: 'running',
    online: true,
  };
  ec2Mock.on(DescribeInstancesCommand).callsFake(({ Filters }) => {
    const ids: string[] = Filters.find((f: any) => f.Name === 'instance-id')?.Values ?? [];
    const env = Filters.find((f: any) => f.Name === 'tag:Environment')?.Values?.[0];
    const matches = ids.includes(instance.id) && (env === undefined || env === instance.env);
    return {
      Reservations: matches
        ? [
            {
              Instances: [
                {
                  InstanceId: instance.id,
                  LaunchTime: instance.launch,
                  State: { Name: instance.state },
                  Tags: [{ Key: 'Environment', Value: instance.env }],
                },
              ],
            },
          ]
        : [],
    };
  });
  ssmMock.on(DescribeInstanceInformationCommand).callsFake(() => ({
    InstanceInformationList: instance.online
      ? [{ InstanceId: instance.id, PingStatus: 'Online' }]
      : [],
  }));
  ssmMock.on(DescribeParametersCommand).resolves({ Parameters: [{ Name: parameter, Version: 3 }] });
  ssmMock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-boot' } });
  sqsMock.on(SendMessageCommand).resolves({});
  sqsMock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
  snsMock.on(PublishCommand).resolves({ MessageId: 'm' });
  asgMock.on(CompleteLifecycleActionCommand).resolves({});
});
afterEach(() => {
  for (const mock of [ec2Mock, ssmMock, sqsMock, snsMock, asgMock]) mock.reset();
});

const alertsTopicArn = 'arn:aws:sns:eu-west-1:123456789012:alerts';
/** The rollouts table as a store whose clock (every rule's clock) reads `now`. */
const storeAt = (now: Date) => new RolloutStore(table.db, process.env.ROLLOUTS_TABLE!, () => now);

function deps(
  bootstrapConfig: Record<string, unknown> = {},
  now = new Date(instance.launch.getTime() + 5_000),
): BootstrapDeps {
  const config = parseConfig({ ...structuredClone(testConfigInput), bootstrap: bootstrapConfig });
  const store = storeAt(now);
  const sqs = new SQSClient({});
  const sns = new SNSClient({});
  return {
    ec2: new EC2Client({}),
    ssm: new SSMClient({}),
    sqs,
    sns,
    autoscaling: new AutoScalingClient({}),
    store,
    ledger: new Ledger({
      store,
      sqs,
      retryQueueUrl: 'retry-queue',
      statusQueueUrl: 'status-queue',
      config,
      notify: rolloutNotifier(sns, alertsTopicArn, undefined),
    }),
    config,
    documentName: 'doc',
    bootstrapQueueUrl: 'bootstrap-queue',
    alertsTopicArn,
  };
}
const done = (to: 'Success' | 'Failed'): Transition => ({
  instanceId: instance.id,
  parameter,
  path,
  fromAttempt: 1,
  to,
});
const lifecycle = { groupName: 'prod-web', hookName: 'secrets-fanout', token: 'tok-1' };
const sends = () => ssmMock.commandCalls(SendCommandCommand).map((c) => c.args[0].input);
const requeued = () =>
  sqsMock
    .commandCalls(SendMessageCommand)
    .map((c) => c.args[0].input)
    .filter((m) => m.QueueUrl === 'bootstrap-queue');
const completions = () =>
  asgMock.commandCalls(CompleteLifecycleActionCommand).map((c) => c.args[0].input);
const bootstrapRolloutId = () => newRolloutId(instance.launch, `bootstrap:${instance.id}`);

describe('bootstrap of a new instance in a launch lifecycle hook', () => {
  it('sends every mapped file once SSM reports it Online, then waits for them', async () => {
    const d = deps();
    const result = await checkBootstrap(d, firstCheck(d, instance.id, instance.launch, lifecycle));
    expect(result).toBe('sent');
    expect(sends()).toEqual([
      expect.objectContaining({
        InstanceIds: [instance.id],
        Parameters: expect.objectContaining({ ParameterName: [parameter] }),
      }),
    ]);
    expect(await table.store.getRollout(bootstrapRolloutId())).toMatchObject({
      trigger: { type: 'bootstrap', instanceId: instance.id },
    });
    expect(requeued()).toEqual([
      expect.objectContaining({ QueueUrl: 'bootstrap-queue', DelaySeconds: 10 }),
    ]);
    expect(completions()).toEqual([]);
  });

  it('completes the lifecycle action with CONTINUE only once the files are in place', async () => {
    // Auto Scaling refuses a second completion of one action (ValidationError), as AWS does.
    asgMock
      .on(CompleteLifecycleActionCommand)
      .resolvesOnce({})
      .rejects(
        Object.assign(new Error('No active Lifecycle Action found'), { name: 'ValidationError' }),
      );
    // Arrange: the files were sent, the first re-check finds them pending
    const d = deps();
    const check = firstCheck(d, instance.id, instance.launch, lifecycle);
    await checkBootstrap(d, check);
    expect(await checkBootstrap(d, { ...check, checks: 1 })).toBe('waiting-for-files');
    expect(completions()).toEqual([]);
    // Act: the instance reports success, and the next check runs (twice, as SQS may deliver it)
    await d.store.commit(bootstrapRolloutId(), [done('Success')]);
    const results = [
      await checkBootstrap(d, { ...check, checks: 2 }),
      await checkBootstrap(d, { ...check, checks: 2 }),
    ];
    // Assert
    expect(results).toEqual(['continued', 'already-done']);
    expect(completions()[0]).toEqual({
      AutoScalingGroupName: 'prod-web',
      LifecycleHookName: 'secrets-fanout',
      LifecycleActionToken: 'tok-1',
      InstanceId: instance.id,
      LifecycleActionResult: 'CONTINUE',
    });
  });

  it('waits for SSM with a bounded backoff through the queue, never by sleeping', async () => {
    instance.online = false;
    const d = deps();
    const check = firstCheck(d, instance.id, instance.launch, lifecycle);
    for (let checks = 0; checks < 5; checks++) {
      expect(await checkBootstrap(d, { ...check, checks })).toBe('waiting-for-ssm');
    }
    expect(requeued().map((m) => m.DelaySeconds)).toEqual([5, 10, 20, 30, 30]);
    expect(JSON.parse(requeued()[4]!.MessageBody!)).toMatchObject({
      kind: 'bootstrap-check',
      checks: 5,
      lifecycle,
    });
    expect(sends()).toEqual([]);
  });

  it.each([
    ['abandon', 'ABANDON', 'the group replaces the instance'],
    ['continue', 'CONTINUE', 'joins the load balancer without them'],
  ])(
    'on timeout completes with the configured result (%s) and alerts once',
    async (onTimeout, result, text) => {
      // Arrange: the budget is spent and the instance never came online
      instance.online = false;
      const check = firstCheck(deps({ onTimeout }), instance.id, instance.launch, lifecycle);
      const late = deps({ onTimeout }, new Date(Date.parse(check.deadline) + 1_000));
      // Act: the last check, delivered twice
      const results = [await checkBootstrap(late, check), await checkBootstrap(late, check)];
      // Assert
      expect(results).toEqual(['gave-up', 'gave-up']);
      expect(completions().length).toBeGreaterThan(0);
      for (const c of completions()) expect(c.LifecycleActionResult).toBe(result);
      const alerts = snsMock.commandCalls(PublishCommand).map((c) => c.args[0].input);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]?.Message).toContain(text);
      expect(alerts[0]?.Message).toContain('never came online');
    },
  );

  it('gives up at once with the configured result when a file cannot be delivered', async () => {
    const d = deps();
    const check = firstCheck(d, instance.id, instance.launch, lifecycle);
    await checkBootstrap(d, check);
    await d.store.commit(bootstrapRolloutId(), [done('Failed')]);
    expect(await checkBootstrap(d, { ...check, checks: 1 })).toBe('gave-up');
    expect(completions()).toEqual([expect.objectContaining({ LifecycleActionResult: 'ABANDON' })]);
  });

  it('lets an instance of an unconfigured environment go, with CONTINUE and no files', async () => {
    instance.env = 'qa';
    const d = deps();
    expect(await checkBootstrap(d, firstCheck(d, instance.id, instance.launch, lifecycle))).toBe(
      'ignored',
    );
    expect(sends()).toEqual([]);
    expect(completions()).toEqual([expect.objectContaining({ LifecycleActionResult: 'CONTINUE' })]);
  });
});

describe('bootstrap after a rollout that missed the booting instance', () => {
  it('sends the file itself instead of counting an Unreachable target as delivered', async () => {
    // Arrange: a parameter change ran while the instance was running but not yet in SSM
    const at = new Date(instance.launch.getTime() + 1_000);
    const early = newRolloutId(at, 'event-early');
    await storeAt(at).create(
      {
        rolloutId: early,
        trigger: { type: 'event', eventId: 'e' },
        environment: 'prod',
        parameters: [parameter],
        files: [{ parameter, path }],
      },
      [
        {
          instanceId: instance.id,
          parameter,
          path,
          status: 'Unreachable',
          reason: 'NotManagedBySSM',
        },
      ],
    );
    const d = deps();
    // Act
    const result = await checkBootstrap(d, firstCheck(d, instance.id, instance.launch, lifecycle));
    // Assert
    expect(result).toBe('sent');
    expect(sends()).toHaveLength(1);
    expect(completions()).toEqual([]);
  });

  it('alerts again for a launch whose first alert could not be published', async () => {
    // Arrange: the first publish fails after its check claimed the alert
    instance.online = false;
    const check = firstCheck(deps(), instance.id, instance.launch);
    const late = deps({}, new Date(Date.parse(check.deadline) + 1_000));
    snsMock.on(PublishCommand).rejectsOnce(new Error('SNS down')).resolves({ MessageId: 'm' });
    await expect(checkBootstrap(late, check)).rejects.toThrow('SNS down');
    // Act: a check while that claim may still be live sends nothing; once it has run out
    // (its holder is gone), the next check sends it, and later checks do not again
    await checkBootstrap(late, check);
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(1);
    const later = deps({}, new Date(Date.parse(check.deadline) + 1_000 + 5 * 60_000));
    await checkBootstrap(later, check);
    await checkBootstrap(later, check);
    // Assert
    expect(snsMock.commandCalls(PublishCommand)).toHaveLength(2);
  });
});

describe('bootstrap without a lifecycle hook', () => {
  it('sends the files to an instance that starts running, once', async () => {
    const d = deps();
    expect(await checkBootstrap(d, firstCheck(d, instance.id, instance.launch))).toBe('sent');
    expect(await checkBootstrap(d, firstCheck(d, instance.id, instance.launch))).toBe(
      'already-done',
    );
    expect(sends()).toHaveLength(1);
    expect(requeued()).toEqual([]);
  });

  it('ignores an instance of an unconfigured environment', async () => {
    instance.env = 'qa';
    const d = deps();
    expect(await checkBootstrap(d, firstCheck(d, instance.id, instance.launch))).toBe('ignored');
    expect(sends()).toEqual([]);
  });

  it('sends nothing a normal rollout since the launch already sent, and waits for that one', async () => {
    // Arrange: a parameter change reached the instance right after it came online
    const at = new Date(instance.launch.getTime() + 2_000);
    const normal = newRolloutId(at, 'event');
    await storeAt(at).create(
      {
        rolloutId: normal,
        trigger: { type: 'event', eventId: 'e' },
        environment: 'prod',
        parameters: [parameter],
        files: [{ parameter, path }],
      },
      [{ instanceId: instance.id, parameter, path, status: 'Pending' }],
    );
    await storeAt(at).recordCommand(normal, {
      commandId: 'cmd-normal',
      parameter,
      path,
      attempt: 1,
      instanceIds: [instance.id],
    });
    const d = deps();
    const check = firstCheck(d, instance.id, instance.launch, lifecycle);
    // Act
    const first = await checkBootstrap(d, check);
    await d.store.commit(normal, [done('Success')]);
    const second = await checkBootstrap(d, { ...check, checks: 1 });
    // Assert
    expect([first, second]).toEqual(['waiting-for-files', 'continued']);
    expect(sends()).toEqual([]);
  });

  it('sends itself when a rollout since the launch recorded the instance but has not sent it yet', async () => {
    // Arrange: a big rollout resolved the new instance; its chunk waits its turn in the pace
    // (minutes, longer than the launch hook), so no command covers it yet
    const at = new Date(instance.launch.getTime() + 2_000);
    const paced = newRolloutId(at, 'event-paced');
    await storeAt(at).create(
      {
        rolloutId: paced,
        trigger: { type: 'event', eventId: 'e-paced' },
        environment: 'prod',
        parameters: [parameter],
        files: [{ parameter, path }],
      },
      [{ instanceId: instance.id, parameter, path, status: 'Pending' }],
    );
    const d = deps();
    // Act
    const result = await checkBootstrap(d, firstCheck(d, instance.id, instance.launch, lifecycle));
    // Assert
    expect(result).toBe('sent');
    expect(sends().map((send) => send.InstanceIds)).toEqual([[instance.id]]);
  });
});

describe('bootstrap handler', () => {
  // The handler's store reads the real clock: its instance launched, and its events happened,
  // just now, so its bootstrap budget is not already spent.
  const eventTime = (date: Date) => date.toISOString().replace(/\.\d{3}/, '');
  beforeEach(() => {
    instance.launch = new Date(Math.floor(Date.now() / 1000) * 1000 - 2_000);
  });

  it('meets the lifecycle and state-change paths in one rollout: one send', async () => {
    const launch = loadEvent<any>('bootstrap/launch-lifecycle');
    launch.detail.EC2InstanceId = instance.id;
    launch.time = eventTime(new Date(instance.launch.getTime() + 1_000));
    const running = loadEvent<any>('bootstrap/instance-running');
    running.detail['instance-id'] = instance.id;
    running.time = eventTime(new Date(instance.launch.getTime() + 1_000));
    const response = await table.handler.handler(sqsBatch([launch, running]), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect(sends()).toHaveLength(1);
  });

  it('takes the instance id of a tag change from its ARN', async () => {
    const tagged = loadEvent<any>('bootstrap/instance-tagged');
    tagged.resources = [`arn:aws:ec2:eu-west-1:123456789012:instance/${instance.id}`];
    tagged.time = eventTime(new Date(instance.launch.getTime() + 1_000));
    await table.handler.handler(sqsBatch([tagged]), lambdaContext());
    expect(sends()).toEqual([expect.objectContaining({ InstanceIds: [instance.id] })]);
  });

  it('reports a message it cannot read as a batch failure', async () => {
    const batch = sqsBatch([{ kind: 'bootstrap-check', instanceId: 'nope' }]);
    const response = await table.handler.handler(batch, lambdaContext());
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: batch.Records[0]?.messageId }]);
  });
});
