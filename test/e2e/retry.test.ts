import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import {
  alertsOf,
  PROD_1,
  PROD_2,
  PROD_3,
  PROD_UNMANAGED,
  rolloutOfChange,
  SECRETS_FILE,
  settledView,
  startTestCloud,
  testFleet,
} from './local-cloud.ts';

const FLAKY = PROD_3;
const VALUE = "<?php\nreturn ['db_password' => 'second'];\n";

describe('a flaky instance, end to end on the local cloud', () => {
  let cloud: LocalCloud;
  let rolloutId: string;
  let view: any;

  beforeAll(async () => {
    // PROD_3's first fetch fails to connect (a network blip): exit 75 FetchFailed, retryable.
    // It is the last instance the command runs on (MaxConcurrency 25% of 3 is one at a time):
    // a failure earlier would exceed MaxErrors 10% (0 of 3) and cancel the rest.
    cloud = await startTestCloud(
      testFleet().map((spec) =>
        spec.id === PROD_3 ? { ...spec, faults: { fetchFailures: 1 } } : spec,
      ),
    );
    cloud.putParameter('/prod/env.php', VALUE);
    rolloutId = await rolloutOfChange(cloud, 0);
    view = await settledView(cloud, rolloutId);
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('gets the file on a retry, without anyone acting', () => {
    expect(cloud.fleet.get(FLAKY).readFile(SECRETS_FILE).toString()).toBe(VALUE);
    expect(cloud.invocations('resync')).toHaveLength(0);
    expect(cloud.invocations('retry').length).toBeGreaterThanOrEqual(1);
    const commands = [...cloud.ssm.commands.values()];
    expect(commands.map((c) => c.instanceIds.length)).toEqual([3, 1]);
    expect(commands[1]?.instanceIds).toEqual([FLAKY]);
    expect(commands[0]?.invocations.get(FLAKY)).toMatchObject({
      statusDetails: 'Failed',
      responseCode: 75,
    });
    expect(commands[1]?.invocations.get(FLAKY)?.statusDetails).toBe('Success');
  });

  it('shows the target as Success after 2 attempts in the status view', () => {
    expect(view.counts).toMatchObject({ success: 3, failed: 0, unreachable: 1, retries: 1 });
    const target = view.instances.find((i: any) => i.instanceId === FLAKY);
    expect(target).toMatchObject({ status: 'Success', attempts: 2, versionWritten: 1 });
    expect(target.commandId).toBe([...cloud.ssm.commands.values()][1]?.commandId);
    for (const id of [PROD_1, PROD_2]) {
      expect(view.instances.find((i: any) => i.instanceId === id)).toMatchObject({
        status: 'Success',
        attempts: 1,
      });
    }
  });

  it('alerts once, for the unreachable instance only: the retry is no failure', async () => {
    await cloud.waitFor(() => alertsOf(cloud, rolloutId).length > 0, { message: 'the alert' });
    await cloud.clock.sleep(30);
    const alerts = alertsOf(cloud, rolloutId);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.message).toContain(PROD_UNMANAGED);
    expect(alerts[0]?.message).not.toContain('Failed:');
    expect(alerts[0]?.message).not.toContain(FLAKY);
  });
});
