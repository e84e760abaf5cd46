import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { DEMO_DOTENV_FILE } from '../support/package.ts';
import {
  alertsOf,
  PROD_1,
  PROD_2,
  PROD_3,
  PROD_UNMANAGED,
  rolloutOfChange,
  settledView,
  startTestCloud,
} from './local-cloud.ts';

const DOTENV_FILE = DEMO_DOTENV_FILE;
const OLD_CONTENT = 'DB_PASSWORD=old-but-working\n';
// Line 3 is not KEY=value: the format check refuses the whole value before the swap.
const SECRET = 'n0t-for-any-log';
const INVALID_VALUE = `# app secrets\nDB_PASSWORD=${SECRET}\nAPI_TOKEN ${SECRET}\n`;

describe('a value that fails the format check, end to end on the local cloud', () => {
  let cloud: LocalCloud;
  let rolloutId: string;
  let view: any;

  beforeAll(async () => {
    // The service as deployed with a second, dotenv-checked file next to the raw env.php.
    cloud = await startTestCloud(undefined, { packagedDir: inject('demoPackagedDir') });
    // Every prod instance has a working file from before.
    for (const id of [PROD_1, PROD_2, PROD_3]) {
      cloud.fleet.get(id).writeFile(DOTENV_FILE, OLD_CONTENT, 0o400);
    }
    cloud.putParameter('/prod/app/secrets.env', INVALID_VALUE);
    rolloutId = await rolloutOfChange(cloud, 0);
    view = await settledView(cloud, rolloutId);
    await cloud.waitFor(() => alertsOf(cloud, rolloutId).length > 0, { message: 'the alert' });
    // Anything that would make a second alert has had time to (simulated minutes).
    await cloud.clock.sleep(50);
  }, 120_000);

  afterAll(async () => {
    await cloud?.stop();
  });

  it('runs the check once per instance and fails it for good: no retry after exit 65', () => {
    expect(view.counts).toMatchObject({ total: 4, failed: 3, unreachable: 1, success: 0 });
    const commands = [...cloud.ssm.commands.values()];
    const invocations = commands.flatMap((c) => [...c.invocations.values()]);
    for (const id of [PROD_1, PROD_2, PROD_3]) {
      const ran = invocations.filter((i) => i.instanceId === id && i.statusDetails === 'Failed');
      expect(
        ran.map((i) => i.responseCode),
        id,
      ).toEqual([65]);
      expect(view.instances.find((i: any) => i.instanceId === id)).toMatchObject({
        parameter: '/prod/app/secrets.env',
        path: DOTENV_FILE,
        status: 'Failed',
        lastError: { status: 'Failed', exitCode: 65, meaning: 'ContentInvalid' },
      });
    }
    // maxErrors is 100%: SSM cancels nobody, so each instance ran the check exactly once and
    // ends Failed after one attempt, with no retry (exit 65 is permanent).
    for (const id of [PROD_1, PROD_2, PROD_3]) {
      expect(view.instances.find((i: any) => i.instanceId === id).attempts, id).toBe(1);
    }
    expect(invocations.filter((i) => i.statusDetails === 'Terminated')).toEqual([]);
    expect(view.counts.retries).toBe(0);
    expect(commands.map((c) => c.instanceIds.length)).toEqual([3]);
  });

  it('leaves the old file byte-identical, mode included', () => {
    for (const id of [PROD_1, PROD_2, PROD_3]) {
      const instance = cloud.fleet.get(id);
      expect(instance.readFile(DOTENV_FILE).equals(Buffer.from(OLD_CONTENT)), id).toBe(true);
      expect(instance.mode(DOTENV_FILE).toString(8)).toBe('400');
    }
  });

  it('sends the on-call exactly one message naming the instances, exit 65 and the reason', () => {
    const alerts = alertsOf(cloud, rolloutId);
    expect(alerts).toHaveLength(1);
    expect(cloud.snsMessages()).toHaveLength(1);
    const [alert] = alerts;
    expect(alert?.subject).toContain('/prod/app/secrets.env');
    expect(alert?.subject).toContain('3 failed, 1 unreachable');
    const lines = alert?.message.split('\n') ?? [];
    for (const id of [PROD_1, PROD_2, PROD_3]) {
      const line = lines.find((l) => l.includes(id)) ?? '';
      expect(line, id).toContain('exit 65 ContentInvalid');
      expect(line, id).toContain('line 3 is not KEY=value');
    }
    expect(alert?.message).not.toContain(SECRET);
    expect(alert?.message).not.toContain('API_TOKEN');
  });

  it('names the unmanaged instance in that alert as unreachable', () => {
    const [alert] = alertsOf(cloud, rolloutId);
    const unreachable = alert?.message.split('\nUnreachable')[1] ?? '';
    expect(unreachable).toContain(PROD_UNMANAGED);
    expect(unreachable).toContain('NotManagedBySSM');
  });
});
