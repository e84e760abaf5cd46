/**
 * New instances get their files (issue 6), end to end on the local cloud: Auto Scaling launches
 * with a launch lifecycle hook, plain launches, unconfigured environments, a parameter change
 * racing a scale-out, and an agent that never registers.
 */
import { AutoScalingClient, CompleteLifecycleActionCommand } from '@aws-sdk/client-auto-scaling';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ScalingActivity } from '../local-cloud/autoscaling.ts';
import { type LocalCloud, startLocalCloud } from '../local-cloud/cloud.ts';
import { readPackagedTemplate } from '../local-cloud/template.ts';
import {
  diagnose,
  PROD_1,
  PROD_2,
  rolloutOfChange,
  SECRETS_FILE,
  settledView,
} from './local-cloud.ts';

const GROUP = 'web-prod';
// custom.fanout.bootstrap.lifecycleHookName: the hook the LaunchLifecycleRule matches.
const HOOK = 'secrets-fanout';
const V1 = "<?php\nreturn ['db_password' => 'first'];\n";
const V2 = "<?php\nreturn ['db_password' => 'second'];\n";

/** A group tagged Environment=prod (propagated at launch) with the README's launch hook. */
const prodGroup = {
  name: GROUP,
  tags: [
    { key: 'Environment', value: 'prod' },
    { key: 'Name', value: 'web-prod' },
  ],
  // The README's hook, with AWS's default HeartbeatTimeout (3600 s, 36 real seconds at 100×):
  // the README's 600 s would be 6 real seconds, too close to a cold start on a busy machine.
  launchHook: { name: HOOK, heartbeatTimeout: 3600, defaultResult: 'ABANDON' as const },
};

function start(options: { functionEnvironment?: Record<string, string>; fleet?: boolean } = {}) {
  return startLocalCloud({
    packagedDir: inject('packagedDir'),
    fleet:
      options.fleet === false
        ? []
        : [
            { id: PROD_1, tags: { Environment: 'prod' } },
            { id: PROD_2, tags: { Environment: 'prod' } },
          ],
    autoScalingGroups: [prodGroup],
    // 100×: the bootstrap's re-checks (5–30 s) take tens of milliseconds, the hook's heartbeat
    // timeout stays well above a cold start.
    clockScale: 100,
    agent: { deliverySeconds: 1 },
    sqsDelayFloorMs: 250,
    ...(options.functionEnvironment ? { functionEnvironment: options.functionEnvironment } : {}),
  });
}

/** The SSM invocations sent to an instance, in order, with the version each reported. */
function invocationsOn(cloud: LocalCloud, instanceId: string) {
  return [...cloud.ssm.commands.values()]
    .filter((command) => command.instanceIds.includes(instanceId))
    .map((command) => {
      const invocation = command.invocations.get(instanceId);
      return {
        commandId: command.commandId,
        status: invocation?.statusDetails,
        version: /version=(\d+)/.exec(invocation?.stdout ?? '')?.[1],
        result: /result=(\w+)/.exec(invocation?.stdout ?? '')?.[1],
      };
    });
}

/** The bootstrap function's log lines about an instance ("bootstrap checked" …). */
function bootstrapLogs(cloud: LocalCloud, instanceId: string): any[] {
  return cloud
    .invocations('bootstrap')
    .flatMap((record) => record.logs)
    .filter((line) => line.startsWith('{') && line.includes(instanceId))
    .map((line) => JSON.parse(line));
}

async function inService(cloud: LocalCloud, instanceId: string) {
  await cloud
    .waitFor(() => cloud.autoscaling.lifecycleState(instanceId) === 'InService', {
      message: `${instanceId} to be InService`,
      timeoutMs: 25_000,
    })
    .catch((error) => {
      console.log(diagnose(cloud), cloud.autoscaling.activitiesOf(instanceId));
      throw error;
    });
}

describe('new instances get their files, end to end on the local cloud', () => {
  let cloud: LocalCloud;

  beforeAll(async () => {
    cloud = await start();
    cloud.putParameter('/prod/env.php', V1);
    // The fleet has its file; the scale-outs below are what is left to bootstrap.
    await settledView(cloud, await rolloutOfChange(cloud, 0));
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('scaling out a prod group: the files appear, then the action completes with CONTINUE', async () => {
    // Arrange: what is on the instance's disk at the moment its lifecycle action is completed
    const atCompletion: Array<{ activity: ScalingActivity; file?: string }> = [];
    cloud.autoscaling.on('activity', (activity) => {
      if (activity.kind !== 'lifecycle-action-completed') return;
      const instance = cloud.fleet.get(activity.instanceId);
      atCompletion.push({
        activity,
        ...(instance.exists(SECRETS_FILE)
          ? { file: instance.readFile(SECRETS_FILE).toString() }
          : {}),
      });
    });
    // Act
    const instance = cloud.scaleOut(GROUP, { registerAfterSeconds: 20 });
    await inService(cloud, instance.id);
    // Assert: the file, as configured, with no other action
    expect(instance.readFile(SECRETS_FILE).toString()).toBe(V1);
    expect(instance.mode(SECRETS_FILE)).toBe(0o400);
    expect(instance.ownerOf(SECRETS_FILE)).toEqual({ owner: 'apache', group: 'apache' });
    expect(instance.tags).toMatchObject({
      Environment: 'prod',
      'aws:autoscaling:groupName': GROUP,
    });
    expect(cloud.invocations('resync')).toHaveLength(0);
    // … sent once (the lifecycle and running paths meet in one rollout)
    expect(invocationsOn(cloud, instance.id)).toEqual([
      expect.objectContaining({ status: 'Success', result: 'updated', version: '1' }),
    ]);
    // … and the action completed by the service, with the file already on disk
    expect(atCompletion).toEqual([
      {
        activity: expect.objectContaining({
          instanceId: instance.id,
          result: 'CONTINUE',
          by: expect.stringMatching(/^ASIA-LOCAL-.*-bootstrap$/),
        }),
        file: V1,
      },
    ]);
    const steps = cloud.autoscaling
      .activitiesOf(instance.id)
      .map((a) => a.lifecycleState ?? `${a.kind}${a.result ? `:${a.result}` : ''}`);
    expect(steps).toEqual([
      'launched',
      'Pending',
      'Pending:Wait',
      'lifecycle-action-started',
      'lifecycle-action-completed:CONTINUE',
      'Pending:Proceed',
      'InService',
    ]);
    const [invocation] = [...cloud.ssm.commands.values()]
      .filter((command) => command.instanceIds.includes(instance.id))
      .map((command) => command.invocations.get(instance.id));
    const completedAt = atCompletion[0]?.activity.at.getTime() ?? 0;
    expect(invocation?.executionEnd?.getTime()).toBeLessThanOrEqual(completedAt);
  });

  it('shows the bootstrap in the status view as a rollout with trigger bootstrap', async () => {
    const instance = cloud.scaleOut(GROUP);
    await inService(cloud, instance.id);
    const list = (await cloud.callApi('/environments/prod/rollouts')).json;
    const bootstrap = list.rollouts.filter(
      (rollout: any) =>
        rollout.trigger?.type === 'bootstrap' && rollout.trigger.instanceId === instance.id,
    );
    expect(bootstrap).toHaveLength(1);
    const view = await settledView(cloud, bootstrap[0].rolloutId);
    expect(view).toMatchObject({
      trigger: { type: 'bootstrap', instanceId: instance.id },
      environment: 'prod',
      state: 'Settled',
    });
    expect(view.instances).toEqual([
      expect.objectContaining({
        instanceId: instance.id,
        parameter: '/prod/env.php',
        status: 'Success',
        versionWritten: 1,
      }),
    ]);
  });

  it('gives an instance launched outside any group its files (EC2 running event only)', async () => {
    const instance = cloud.launchInstance({ tags: { Environment: 'prod', Name: 'by-hand' } });
    await cloud.waitFor(() => instance.exists(SECRETS_FILE), {
      message: 'the file on the hand-launched instance',
    });
    await cloud.commandsSettled();
    expect(instance.readFile(SECRETS_FILE).toString()).toBe(V1);
    expect(instance.ownerOf(SECRETS_FILE)).toEqual({ owner: 'apache', group: 'apache' });
    expect(invocationsOn(cloud, instance.id)).toEqual([
      expect.objectContaining({ status: 'Success', version: '1' }),
    ]);
    expect(cloud.autoscaling.lifecycleState(instance.id)).toBeUndefined();
  });

  it('leaves an instance of an unconfigured environment alone: no command', async () => {
    const instance = cloud.launchInstance({ tags: { Environment: 'qa' } });
    await cloud.waitFor(
      () =>
        bootstrapLogs(cloud, instance.id).some(
          (entry) => entry.message === 'bootstrap checked' && entry.result === 'ignored',
        ),
      { message: 'the bootstrap to look at the qa instance' },
    );
    expect(invocationsOn(cloud, instance.id)).toEqual([]);
    expect(instance.exists(SECRETS_FILE)).toBe(false);
    expect(bootstrapLogs(cloud, instance.id).filter((entry) => entry.level === 'ERROR')).toEqual(
      [],
    );
  });

  it('Auto Scaling refuses what AWS refuses: an unknown token, a group outside the role', async () => {
    // Arrange: a qa group (not a configured environment) whose hook is not ours, so the
    // service leaves it alone; the client signs as the bootstrap function's role.
    cloud.createAutoScalingGroup({
      name: 'web-qa',
      tags: [{ key: 'Environment', value: 'qa' }],
      launchHook: { name: 'someone-elses-hook' },
    });
    const qa = cloud.scaleOut('web-qa');
    const action = [...cloud.autoscaling.group('web-qa').actions.values()][0];
    const asBootstrap = new AutoScalingClient({
      ...cloud.clientConfig('autoscaling'),
      credentials: {
        accessKeyId: `ASIA-LOCAL-${cloud.fn('bootstrap').options.name}`,
        secretAccessKey: 'x',
      },
      maxAttempts: 1,
    });
    const complete = (input: Record<string, string>) =>
      asBootstrap.send(
        new CompleteLifecycleActionCommand({
          AutoScalingGroupName: GROUP,
          LifecycleHookName: HOOK,
          LifecycleActionResult: 'CONTINUE',
          ...input,
        }),
      );
    // Act / Assert
    await expect(complete({ LifecycleActionToken: 'no-such-token' })).rejects.toMatchObject({
      name: 'ValidationError',
      message: 'No active Lifecycle Action found with token no-such-token',
    });
    await expect(complete({ InstanceId: PROD_1 })).rejects.toMatchObject({
      name: 'ValidationError',
      message: `No active Lifecycle Action found with instance ID ${PROD_1}`,
    });
    await expect(
      complete({
        AutoScalingGroupName: 'web-qa',
        LifecycleHookName: 'someone-elses-hook',
        LifecycleActionToken: action?.token ?? '',
        InstanceId: qa.id,
      }),
    ).rejects.toMatchObject({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect(cloud.autoscaling.lifecycleState(qa.id)).toBe('Pending:Wait');
    asBootstrap.destroy();
  });

  describe('a parameter change racing a scale-out', () => {
    let instance: ReturnType<LocalCloud['scaleOut']>;
    let sent: ReturnType<typeof invocationsOn>;

    beforeAll(async () => {
      // The value changes the moment the new instance's agent registers, so the change's
      // rollout and the bootstrap both find it Online; early in a second, so the launch and
      // the change fall in the same second (event-driven rollout ids have second precision).
      await cloud.clock.sleep((1005 - (cloud.clock.nowMs() % 1000)) / 1000);
      instance = cloud.scaleOut(GROUP, { registerAfterSeconds: 15 });
      await new Promise<void>((resolve) => {
        const onOnline = (online: { id: string }) => {
          if (online.id !== instance.id) return;
          cloud.fleet.off('online', onOnline);
          cloud.putParameter('/prod/env.php', V2);
          resolve();
        };
        cloud.fleet.on('online', onOnline);
      });
      await inService(cloud, instance.id);
      await settledView(cloud, await rolloutOfChange(cloud, 1));
      await cloud.commandsSettled();
      sent = invocationsOn(cloud, instance.id);
    });

    it('leaves the newest version on the new instance, which joins InService', () => {
      expect(instance.readFile(SECRETS_FILE).toString()).toBe(V2);
      expect(sent.every((invocation) => invocation.status === 'Success')).toBe(true);
      expect(sent.at(-1)?.version).toBe('2');
      expect(cloud.autoscaling.lifecycleState(instance.id)).toBe('InService');
    });

    // The change's rollout and the bootstrap race for the new instance: the change may have
    // resolved it Online before the bootstrap's rollout existed, and the bootstrap may have
    // looked before the change's rollout was recorded. Then both send, and the second finds the
    // file current: it rewrites nothing and reloads nothing. What must hold: each version is
    // written at most once, and never an older one after a newer one.
    it('writes each version on the new instance at most once, never going back', () => {
      const written = sent.filter((invocation) => invocation.result === 'updated');
      const versions = written.map((invocation) => Number(invocation.version));
      expect(new Set(versions).size, JSON.stringify(sent)).toBe(versions.length);
      expect(versions, JSON.stringify(sent)).toEqual([...versions].sort((a, b) => a - b));
      for (const invocation of sent.filter((i) => i.result !== 'updated')) {
        expect(invocation.result, JSON.stringify(sent)).toBe('unchanged');
        expect(Number(invocation.version)).toBe(Math.max(...versions));
      }
    });
  });
});

describe('a new instance whose agent never registers', () => {
  let cloud: LocalCloud;
  let instance: ReturnType<LocalCloud['scaleOut']>;

  beforeAll(async () => {
    // The budget is counted from the event's time on the functions' clock, which is the local
    // cloud's scaled clock: it runs out budget / scale real seconds after the launch.
    const budget = bootstrapBudget(inject('packagedDir'));
    cloud = await start({ fleet: false });
    cloud.putParameter('/prod/env.php', V1);
    // Settled before the launch: a change's rollout that finds the booting instance not yet
    // registered reports it Unreachable, an alert of its own (see the report).
    await settledView(cloud, await rolloutOfChange(cloud, 0));
    // Booting takes 200 simulated seconds (2 real ones): the EC2 running event comes well after
    // the lifecycle action event, as in AWS, where instances boot during Pending:Wait. Its
    // check's budget (wall-clock, second precision) then ends after the lifecycle check's,
    // which abandons the instance first. In the same second, both would alert (see the report).
    instance = cloud.scaleOut(GROUP, { registerAfterSeconds: null, bootSeconds: 200 });
    await cloud
      .waitFor(() => cloud.autoscaling.lifecycleState(instance.id) === 'Terminated', {
        message: 'the instance to be abandoned',
        timeoutMs: 60_000,
      })
      .catch((error) => {
        console.log(cloud.autoscaling.activitiesOf(instance.id), bootstrapLogs(cloud, instance.id));
        throw error;
      });
    // Anything that would make a second alert has had time to (a budget's worth, simulated).
    await cloud.clock.sleep(budget / 3);
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('is abandoned by the service (ABANDON, the default) once the budget runs out', () => {
    const completions = cloud.autoscaling
      .activitiesOf(instance.id)
      .filter((a) => a.kind === 'lifecycle-action-completed' || a.kind === 'heartbeat-timed-out');
    expect(completions).toEqual([
      expect.objectContaining({
        kind: 'lifecycle-action-completed',
        result: 'ABANDON',
        by: expect.stringMatching(/-bootstrap$/),
      }),
    ]);
    expect(invocationsOn(cloud, instance.id)).toEqual([]);
    // It waited for SSM (re-checks through the queue) before giving up.
    expect(
      bootstrapLogs(cloud, instance.id).filter((entry) => entry.result === 'waiting-for-ssm')
        .length,
    ).toBeGreaterThan(1);
  });

  it('alerts about it, saying the instance was abandoned', () => {
    const alerts = alertsAbout(cloud, instance.id);
    expect(alerts.length).toBeGreaterThanOrEqual(1);
    expect(alerts.some((alert) => alert.message.includes('completed with ABANDON'))).toBe(true);
  });

  it('alerts exactly once', () => {
    expect(alertsAbout(cloud, instance.id)).toHaveLength(1);
    expect(
      cloud.snsMessages().filter((message) => message.message.includes(instance.id)),
    ).toHaveLength(1);
  });
});

/** The bootstrap alerts about an instance. */
function alertsAbout(cloud: LocalCloud, instanceId: string) {
  return cloud
    .snsMessages()
    .filter(
      (message) =>
        message.messageAttributes.kind?.StringValue === 'bootstrap-timed-out' &&
        message.messageAttributes.instanceId?.StringValue === instanceId,
    );
}

/** custom.fanout.bootstrap.timeoutSeconds of the packaged service (FANOUT_CONFIG). */
function bootstrapBudget(packagedDir: string): number {
  const { template } = readPackagedTemplate(packagedDir);
  for (const resource of Object.values(template.Resources)) {
    const config = (resource.Properties as any)?.Environment?.Variables?.FANOUT_CONFIG;
    if (typeof config === 'string') return JSON.parse(config).bootstrap.timeoutSeconds;
  }
  throw new Error('no FANOUT_CONFIG in the packaged template');
}
