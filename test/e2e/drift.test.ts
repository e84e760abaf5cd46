import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { DEV_1, DEV_2, diagnose, SECRETS_FILE, startTestCloud } from './local-cloud.ts';

// Scheduled drift repair (custom.fanout.drift.schedule in serverless.yml: one scheduled rule
// per environment). The test fires dev's rule now instead of waiting out its rate.
const DEV_SCHEDULE = 'DriftScheduleDev0';
const VALUE = 'DB_PASSWORD=s3cr3t-for-tests\n';
/** Launched while its launch events were lost: no rollout ever reached it. */
const MISSED_LAUNCH = 'i-0b00000000000d0aa';

async function devView(cloud: LocalCloud, rolloutId: string): Promise<any> {
  return cloud
    .waitFor(
      async () => {
        const view = (await cloud.callApi(`/environments/dev/rollouts/${rolloutId}`)).json;
        return view?.state === 'Settled' ? view : undefined;
      },
      { message: `rollout ${rolloutId} to settle`, timeoutMs: 40_000 },
    )
    .catch((error) => {
      console.log(diagnose(cloud));
      throw error;
    });
}

/** Fires dev's drift schedule and returns the rollout its run started. */
async function driftRun(cloud: LocalCloud): Promise<string> {
  const before = cloud.invocations('drift').length;
  const event = cloud.fireSchedule(DEV_SCHEDULE);
  const record = await cloud.waitFor(
    () =>
      cloud
        .invocations('drift')
        .slice(before)
        .find((r) => r.result !== undefined),
    { message: 'the drift function to run', timeoutMs: 20_000 },
  );
  const result = record.result as any;
  expect(result.status).toBe('started');
  expect(result.rollout.trigger).toEqual({ type: 'drift', eventId: event.id });
  return result.rollout.rolloutId;
}

function alertsAbout(cloud: LocalCloud, rolloutId: string) {
  return cloud
    .snsMessages()
    .filter((message) => message.messageAttributes.rolloutId?.StringValue === rolloutId);
}

/** Every EMF metric value named `name` the functions emitted, in order. */
function emitted(cloud: LocalCloud, name: string): number[] {
  return cloud
    .invocations()
    .flatMap((record) => record.logs)
    .filter((line) => line.startsWith('{') && line.includes('"_aws"') && line.includes(`"${name}"`))
    .map((line) => JSON.parse(line)[name] as number);
}

describe('scheduled drift repair, end to end on the local cloud', () => {
  let cloud: LocalCloud;
  let repairId: string;
  let repair: any;

  beforeAll(async () => {
    cloud = await startTestCloud([
      { id: DEV_1, tags: { Environment: 'dev', Name: 'web-dev-1' } },
      { id: DEV_2, tags: { Environment: 'dev', Name: 'web-dev-2' } },
    ]);
    cloud.putParameter('/dev/env.php', VALUE);
    await cloud.waitFor(
      () => cloud.invocations('propagate').find((r) => (r.result as any)?.status === 'sent'),
      { message: 'propagate to send' },
    );
    await cloud.commandsSettled();
    // Drift: a file edited by hand on one instance; another instance launched while every
    // event about it was lost, so no rollout ever wrote its file.
    cloud.fleet.get(DEV_1).writeFile(SECRETS_FILE, 'DB_PASSWORD=edited-by-hand\n');
    const stopDropping = cloud.bus.dropWhen(
      (event) =>
        JSON.stringify(event.detail).includes(MISSED_LAUNCH) ||
        event.resources.some((r) => r.includes(MISSED_LAUNCH)),
    );
    cloud.launchInstance({ id: MISSED_LAUNCH, tags: { Environment: 'dev', Name: 'web-dev-3' } });
    await cloud.waitFor(() => cloud.fleet.get(MISSED_LAUNCH).reachable, {
      message: 'the new instance to run',
    });
    stopDropping();
    expect(cloud.bus.dropped.length).toBeGreaterThan(0);
    expect(cloud.fleet.get(MISSED_LAUNCH).exists(SECRETS_FILE)).toBe(false);

    repairId = await driftRun(cloud);
    repair = await devView(cloud, repairId);
  }, 90_000);

  afterAll(async () => {
    await cloud?.stop();
  });

  it('rewrites the hand-edited file and gives the missed instance its file', () => {
    for (const id of [DEV_1, DEV_2, MISSED_LAUNCH]) {
      expect(cloud.fleet.get(id).readFile(SECRETS_FILE).toString(), id).toBe(VALUE);
    }
    expect(cloud.invocations('bootstrap')).toEqual([]);
  });

  it('counts the drifted instances as repaired and the current one as unchanged', async () => {
    expect(repair.trigger.type).toBe('drift');
    expect(repair.driftRepaired).toBe(2);
    const status = Object.fromEntries(repair.instances.map((i: any) => [i.instanceId, i.status]));
    expect(status).toEqual({
      [DEV_1]: 'Success',
      [DEV_2]: 'Unchanged',
      [MISSED_LAUNCH]: 'Success',
    });
    // Metrics are flushed when the settling invocation ends, a moment after the view settles.
    await cloud.waitFor(() => emitted(cloud, 'DriftRepaired').length > 0, {
      message: 'the DriftRepaired metric',
    });
    expect(emitted(cloud, 'DriftRepaired')).toEqual([2]);
    expect(emitted(cloud, 'RolloutsFailed').every((n) => n === 0)).toBe(true);
  });

  it('sends one alert naming the drifted instances, never the value', async () => {
    const alerts = await cloud.waitFor(
      () => {
        const found = alertsAbout(cloud, repairId);
        return found.length > 0 ? found : undefined;
      },
      { message: 'the drift alert' },
    );
    expect(alerts).toHaveLength(1);
    const [alert] = alerts;
    expect(alert?.subject).toMatch(/^secrets-fanout: dev drift repaired on 2 instances: /);
    expect(alert?.messageAttributes.kind?.StringValue).toBe('drift-repaired');
    expect(alert?.message).toContain(`  ${DEV_1}: ${SECRETS_FILE} (now v1)`);
    expect(alert?.message).toContain(`  ${MISSED_LAUNCH}: ${SECRETS_FILE} (now v1)`);
    expect(alert?.message).not.toContain(DEV_2);
    expect(JSON.stringify(cloud.snsMessages())).not.toContain('s3cr3t');
    expect(JSON.stringify(cloud.snsMessages())).not.toContain('edited-by-hand');
  });

  it('an undrifted fleet: nothing rewritten, nothing counted, no alert', async () => {
    const before = [DEV_1, DEV_2, MISSED_LAUNCH].map((id) => {
      const stat = statSync(cloud.fleet.get(id).path(SECRETS_FILE));
      return { id, ino: stat.ino, mtimeMs: stat.mtimeMs };
    });

    const quietId = await driftRun(cloud);
    const quiet = await devView(cloud, quietId);

    expect(quiet.driftRepaired).toBe(0);
    expect(quiet.counts).toMatchObject({ total: 3, unchanged: 3, success: 0, failed: 0 });
    for (const { id, ino, mtimeMs } of before) {
      const stat = statSync(cloud.fleet.get(id).path(SECRETS_FILE));
      expect({ id, ino: stat.ino, mtimeMs: stat.mtimeMs }).toEqual({ id, ino, mtimeMs });
    }
    const rollout = (await cloud.callApi(`/environments/dev/rollouts?limit=1`)).json;
    expect(JSON.stringify(rollout)).toContain(quietId);
    await cloud.waitFor(() => emitted(cloud, 'DriftRepaired').length > 1, {
      message: 'the second DriftRepaired metric',
    });
    expect(emitted(cloud, 'DriftRepaired')).toEqual([2, 0]);
    // The invocation that settled it has ended (its metrics are out), and an owed alert is
    // published by that same invocation before it ends: none was.
    expect(alertsAbout(cloud, quietId)).toEqual([]);
  });
});
