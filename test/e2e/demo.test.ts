/**
 * The guided demo of `npm start` (issue 13 item 2), end to end: the same story and console
 * session `npm start` plays, against a cloud this test starts (clock ×100), with the
 * non-terminal driver's lines captured. Each step's outcome is checked against the cloud
 * itself: files on disk, commands, alerts, the Auto Scaling lifecycle.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ADMIN_ARN, type LocalCloud, startLocalCloud } from '../local-cloud/cloud.ts';
import { lineDriver } from '../local-cloud/console/drivers.ts';
import { emptyModel } from '../local-cloud/console/model.ts';
import { playDemo, STORY_OVER } from '../local-cloud/console/session.ts';
import { type Watcher, watchCloud } from '../local-cloud/console/watch.ts';
import {
  DEMO_FLEET,
  DEMO_GROUPS,
  DEMO_INSTANCES,
  DEMO_VALUES,
  ENV_PHP,
  FIX_NOTE,
  SECRETS_ENV,
  type StepOutcome,
} from '../local-cloud/demo.ts';
import { diagnose } from './local-cloud.ts';

describe('the guided demo, end to end on the local cloud', () => {
  let cloud: LocalCloud;
  let watcher: Watcher;
  let outcomes: StepOutcome[];
  const lines: string[] = [];
  /** The staging dotenv files right after the invalid value's rollout settled. */
  const afterInvalid = new Map<string, string>();
  const model = emptyModel('demo test');

  beforeAll(async () => {
    cloud = await startLocalCloud({
      packagedDir: inject('demoPackagedDir'),
      fleet: DEMO_FLEET,
      autoScalingGroups: DEMO_GROUPS,
      clockScale: 100,
      agent: { deliverySeconds: 1 },
      sqsDelayFloorMs: 250,
    });
    const driver = lineDriver((line) => lines.push(line));
    watcher = watchCloud(cloud, model, {
      onEvent: (event) => driver.event(event),
      onChange: () => {},
    });
    const played = await playDemo(cloud, model, driver, watcher, {
      timeoutMs: 40_000,
      onSay: (text) => {
        if (text !== FIX_NOTE) return;
        for (const id of [DEMO_INSTANCES.stagingA, DEMO_INSTANCES.stagingB])
          afterInvalid.set(id, cloud.fleet.get(id).readFile(SECRETS_ENV).toString());
      },
    });
    if (played === undefined) {
      console.log(lines.join('\n'), diagnose(cloud));
      throw new Error(`the demo did not finish: ${model.step?.title}`);
    }
    outcomes = played;
  }, 150_000);

  afterAll(async () => {
    watcher?.stop();
    await cloud?.stop();
  });

  const alertsOf = (rolloutId: string) =>
    cloud
      .snsMessages()
      .filter((message) => message.messageAttributes.rolloutId?.StringValue === rolloutId);
  const invocationsOn = (instanceId: string, path: string) =>
    [...cloud.ssm.commands.values()]
      .filter(
        (c) => c.instanceIds.includes(instanceId) && c.parameters.DestinationPath?.[0] === path,
      )
      .map((c) => c.invocations.get(instanceId))
      .map((i) => ({ status: i?.statusDetails, exit: i?.responseCode }));

  it('1: a clean rollout to dev settles Success everywhere, without an alert', () => {
    const [rollout] = outcomes[0]?.rollouts ?? [];
    expect(rollout?.counts).toMatchObject({ total: 2, success: 2 });
    expect(rollout?.alert).toBe('None');
    for (const id of [DEMO_INSTANCES.devA, DEMO_INSTANCES.devB])
      expect(cloud.fleet.get(id).readFile(ENV_PHP).toString()).toBe(DEMO_VALUES.devPhp);
  });

  it('2: a value that fails the format check leaves the file as it was, with one alert', () => {
    const [good, bad, fixed] = outcomes[1]?.rollouts ?? [];
    expect(good?.counts).toMatchObject({ total: 2, success: 2 });
    expect(bad?.counts).toMatchObject({ total: 2, failed: 2, success: 0, retries: 0 });
    expect(fixed?.counts).toMatchObject({ total: 2, success: 2 });
    for (const id of [DEMO_INSTANCES.stagingA, DEMO_INSTANCES.stagingB]) {
      expect(afterInvalid.get(id), id).toBe(DEMO_VALUES.stagingDotenvV1);
      expect(invocationsOn(id, SECRETS_ENV).slice(0, 3)).toEqual([
        { status: 'Success', exit: 0 },
        { status: 'Failed', exit: 65 },
        { status: 'Success', exit: 0 },
      ]);
    }
    const alerts = alertsOf(bad?.rolloutId ?? '');
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.subject).toContain('2 failed');
    expect(alerts[0]?.message).toContain('ContentInvalid');
    expect(alerts[0]?.message).not.toContain('demo-token');
    expect(alertsOf(good?.rolloutId ?? '')).toEqual([]);
    expect(alertsOf(fixed?.rolloutId ?? '')).toEqual([]);
  });

  it('3: a flaky fetch fails once and a retry fixes it, without an alert', () => {
    const [rollout] = outcomes[2]?.rollouts ?? [];
    expect(rollout?.counts).toMatchObject({ total: 2, success: 2, failed: 0, retries: 1 });
    expect(rollout?.alert).toBe('None');
    expect(invocationsOn(DEMO_INSTANCES.stagingB, ENV_PHP).slice(0, 2)).toEqual([
      { status: 'Failed', exit: 75 },
      { status: 'Success', exit: 0 },
    ]);
    expect(cloud.fleet.get(DEMO_INSTANCES.stagingB).readFile(ENV_PHP).toString()).toBe(
      DEMO_VALUES.stagingPhp,
    );
  });

  it('4: the instance without an agent is Unreachable, the others updated, one alert', () => {
    const [rollout] = outcomes[3]?.rollouts ?? [];
    expect(rollout?.counts).toMatchObject({ total: 3, success: 2, unreachable: 1, failed: 0 });
    const alerts = alertsOf(rollout?.rolloutId ?? '');
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.message).toContain(DEMO_INSTANCES.prodNoAgent);
    expect(alerts[0]?.message).toContain('NotManagedBySSM');
    expect(cloud.fleet.get(DEMO_INSTANCES.prodNoAgent).exists(ENV_PHP)).toBe(false);
  });

  it('5: the scaled-out instance has both files before its lifecycle action completes', () => {
    const scaleOut = outcomes[4]?.scaleOut;
    expect(scaleOut?.completion).toMatchObject({
      instanceId: scaleOut?.instanceId,
      result: 'CONTINUE',
      by: expect.stringMatching(/-bootstrap$/),
    });
    expect(scaleOut?.filesAtCompletion.sort()).toEqual([SECRETS_ENV, ENV_PHP].sort());
    expect(cloud.autoscaling.lifecycleState(scaleOut?.instanceId ?? '')).toBe('InService');
    const instance = cloud.fleet.get(scaleOut?.instanceId ?? '');
    expect(instance.readFile(ENV_PHP).toString()).toBe(DEMO_VALUES.stagingPhp);
    expect(instance.readFile(SECRETS_ENV).toString()).toBe(DEMO_VALUES.stagingDotenvFixed);
    const rollouts = outcomes[4]?.rollouts ?? [];
    expect(rollouts.length).toBeGreaterThanOrEqual(1);
    for (const rollout of rollouts) {
      expect(rollout.trigger).toEqual({ type: 'bootstrap', instanceId: scaleOut?.instanceId });
      expect(rollout.counts.failed + rollout.counts.unreachable).toBe(0);
    }
  });

  it('6: a manual resync is its own rollout, by the admin, Unchanged on both dev instances', () => {
    const [rollout] = outcomes[5]?.rollouts ?? [];
    expect(rollout?.trigger).toEqual({ type: 'resync', principal: ADMIN_ARN });
    expect(rollout?.counts).toMatchObject({ total: 2, unchanged: 2 });
  });

  it('sends exactly the two alerts the story promises', () => {
    expect(cloud.snsMessages()).toHaveLength(2);
  });

  it('prints each step, each rollout started (with its trigger) and settled, and each alert', () => {
    const text = lines.map((line) => line.slice('00:00:00  '.length));
    for (const line of lines) expect(line).toMatch(/^\d\d:\d\d:\d\d {2}/);
    for (let index = 1; index <= 6; index++)
      expect(text.some((line) => line.startsWith(`demo step ${index}/6: `))).toBe(true);
    expect(text.at(-1)).toBe(`demo: ${STORY_OVER}`);
    for (const outcome of outcomes) {
      for (const rollout of outcome.rollouts) {
        const started = text.findIndex((line) =>
          line.startsWith(`rollout ${rollout.rolloutId} started (`),
        );
        const settled = text.findIndex((line) =>
          line.startsWith(`rollout ${rollout.rolloutId} settled: `),
        );
        expect(started, rollout.rolloutId).toBeGreaterThanOrEqual(0);
        expect(settled, rollout.rolloutId).toBeGreaterThan(started);
      }
    }
    expect(text.filter((line) => line.includes('started (bootstrap of i-'))).not.toEqual([]);
    expect(text.filter((line) => line.includes(`started (resync by ${ADMIN_ARN})`))).toHaveLength(
      1,
    );
    expect(text.filter((line) => line.includes('settled: Success everywhere'))).not.toEqual([]);
    expect(text.filter((line) => line.startsWith('ALERT '))).toHaveLength(2);
    const all = lines.join('\n');
    for (const secret of [
      'demo-dev-password',
      'demo-staging-password',
      'demo-prod-password',
      'demo-token',
    ])
      expect(all).not.toContain(secret);
  });
});
