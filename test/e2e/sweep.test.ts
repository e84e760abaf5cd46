/**
 * The safety net end to end, on the one clock: Run Command's status events are best effort, so
 * the local cloud loses one (a `dropWhen` fault on the bus). Nothing else would ever tell the
 * tracker that the instance succeeded; the rollout's sweep — due delivery timeout + execution
 * timeout + margin after the rollout, on the functions' clock, which is the local cloud's scaled
 * clock — asks Run Command and settles the rollout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AwsEvent, LocalCloud } from '../local-cloud/cloud.ts';
import {
  PROD_1,
  PROD_2,
  PROD_3,
  PROD_UNMANAGED,
  rolloutOfChange,
  SECRETS_FILE,
  settledView,
  startTestCloud,
} from './local-cloud.ts';

const STATUS_CHANGE = 'EC2 Command Invocation Status-change Notification';
const VALUE = 'DB_PASSWORD=s3cr3t-for-tests-sweep\n';

/** The `rollout swept` log entries of the track function. */
function sweepLogs(cloud: LocalCloud): Array<{ rolloutId: string; result: string }> {
  return cloud
    .invocations('track')
    .flatMap((record) => record.logs)
    .filter((line) => line.startsWith('{') && line.includes('"rollout swept"'))
    .map((line) => JSON.parse(line));
}

describe('a status event that never arrives is caught by the sweep', () => {
  let cloud: LocalCloud;
  let rolloutId: string;
  let view: any;
  let rolloutStartedAt: number;

  beforeAll(async () => {
    cloud = await startTestCloud();
    cloud.bus.dropWhen(
      (event: AwsEvent) =>
        event['detail-type'] === STATUS_CHANGE &&
        event.detail['instance-id'] === PROD_2 &&
        event.detail.status === 'Success',
    );
    rolloutStartedAt = cloud.clock.nowMs();
    cloud.putParameter('/prod/env.php', VALUE);
    rolloutId = await rolloutOfChange(cloud, 0);
    view = await settledView(cloud, rolloutId);
    // The sweep's invocation settles the rollout, then finishes (alerting on the way).
    await cloud.waitFor(
      () => sweepLogs(cloud).some((e) => e.rolloutId === rolloutId && e.result !== 'early'),
      { message: 'the sweep that acted to finish' },
    );
  }, 120_000);

  afterAll(async () => {
    await cloud?.stop();
  });

  it('lost the instance’s final status event (the fault took effect)', () => {
    expect(cloud.bus.dropped.map((event) => event.detail['instance-id'])).toEqual([PROD_2]);
    expect(cloud.fleet.get(PROD_2).readFile(SECRETS_FILE).toString()).toBe(VALUE);
  });

  it('settles the rollout with every instance Success, the silent one included', () => {
    const statuses = Object.fromEntries(
      view.instances.map((instance: any) => [instance.instanceId, instance.status]),
    );
    expect(statuses).toMatchObject({
      [PROD_1]: 'Success',
      [PROD_2]: 'Success',
      [PROD_3]: 'Success',
    });
  });

  it('settled through a sweep that acted, after the commands must have been over', () => {
    const acted = sweepLogs(cloud).filter(
      (entry) => entry.rolloutId === rolloutId && entry.result !== 'early',
    );
    expect(acted.length).toBeGreaterThanOrEqual(1);
    expect(acted[0]?.result).toBe('done');
    // Delivery timeout (600 s) + execution timeout (600 s) + margin (120 s) of simulated time.
    expect(cloud.clock.nowMs() - rolloutStartedAt).toBeGreaterThanOrEqual(1320 * 1000);
  });

  it('alerts about the unreachable instance only: the silent one succeeded', () => {
    const alerts = cloud.snsMessages().filter((message) => message.message.includes(rolloutId));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.message).toContain('0 failed, 1 unreachable');
    expect(alerts[0]?.message).toContain(PROD_UNMANAGED);
    expect(alerts[0]?.message).not.toContain(PROD_2);
  });
});
