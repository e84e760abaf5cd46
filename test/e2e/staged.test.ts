/**
 * Staged rollouts end to end on the local cloud, from a package of the service whose prod stages
 * its changes: a canary (1 instance), a wave (2 in all), then the rest, each baking 600 s with
 * the CloudWatch alarm prod-api-5xx watched. One cloud, one story in order:
 *   v1  goes out clean, stage by stage;
 *   v2  fails on the canary: halted, the canary rolled back to v1, the rest untouched, one
 *       alert; meanwhile a new instance and a drift repair get v1, never v2; then abandoned;
 *   v3  passes the canary, the alarm fires during its bake: halted the same way; resumed, it
 *       reaches every instance;
 *   v4  goes out while the alarm fires: Run Command runs none of the canary's commands.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { paginateListCommands, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { describeCloud, writeConsoleInfo } from '../local-cloud/console.ts';
import {
  type PackagedVariant,
  packageVariant,
  repoRoot,
  withRolloutPace,
} from '../support/package.ts';
import { diagnose, PROD_1, PROD_2, PROD_3, SECRETS_FILE, startTestCloud } from './local-cloud.ts';

const PROD_4 = 'i-0a00000000000f004';
/** Launched while v2 is halted. */
const PROD_NEW = 'i-0a00000000000f0a1';
const FLEET = [PROD_1, PROD_2, PROD_3, PROD_4];
const ALARM = 'prod-api-5xx';
const BAKE_SECONDS = 600;
const PARAMETER = '/prod/env.php';
const value = (v: number) => `<?php return ['db_password' => 's3cr3t-for-tests-v${v}'];\n`;

const STAGES = `, stages: { prod: { canary: 1, waves: [2], bakeSeconds: ${BAKE_SECONDS}, alarms: [${ALARM}] } }`;

let cloud: LocalCloud;
let variant: PackagedVariant;

beforeAll(async () => {
  variant = await packageVariant('staged', {
    serverlessYml: (text) =>
      withRolloutPace(text, `fetchesPerSecond: 40, commandsPerSecond: 10${STAGES}`),
  });
  cloud = await startTestCloud(
    FLEET.map((id, i) => ({ id, tags: { Environment: 'prod', Name: `web-prod-${i + 1}` } })),
    { packagedDir: variant.packagedDir },
  );
  cloud.createAlarm(ALARM);
}, 240_000);

afterAll(async () => {
  await cloud?.stop();
  await variant?.remove();
});

const fileOf = (id: string) => cloud.fleet.get(id).readFile(SECRETS_FILE).toString('utf8');

async function view(rolloutId: string): Promise<any> {
  return (await cloud.callApi(`/environments/prod/rollouts/${rolloutId}`)).json;
}

/** Waits until the rollout's view satisfies `done`; prints the cloud's story if it never does. */
async function viewWhen(rolloutId: string, done: (v: any) => boolean, what: string) {
  return cloud
    .waitFor(
      async () => {
        const v = await view(rolloutId);
        return v !== undefined && done(v) ? v : undefined;
      },
      { message: `rollout ${rolloutId}: ${what}`, timeoutMs: 60_000 },
    )
    .catch((error) => {
      console.log(diagnose(cloud));
      throw error;
    });
}

/** The rollout the `n`-th change's propagate started (0-based, in the order they were put). */
async function changeRollout(n: number): Promise<string> {
  const record = await cloud.waitFor(
    () => cloud.invocations('propagate').filter((r) => (r.result as any)?.status === 'sent')[n],
    { message: `propagate to send change ${n + 1}` },
  );
  return (record.result as any).rollout.rolloutId;
}

/** The rollout's commands in the order they were sent: their instances and when. */
async function commandsOf(rolloutId: string) {
  const ssm = new SSMClient(cloud.clientConfig('ssm'));
  const found: Array<{
    instanceIds: string[];
    at: number;
    parameter: string;
    neverOlder?: string;
  }> = [];
  for await (const page of paginateListCommands({ client: ssm }, {})) {
    for (const c of page.Commands ?? []) {
      if (!c.Comment?.includes(rolloutId)) continue;
      found.push({
        instanceIds: [...(c.InstanceIds ?? [])].sort(),
        at: c.RequestedDateTime?.getTime() ?? 0,
        parameter: c.Parameters?.ParameterName?.[0] ?? '',
        ...(c.Parameters?.NeverOlder === undefined
          ? {}
          : { neverOlder: c.Parameters.NeverOlder[0] }),
      });
    }
  }
  return found.sort((a, b) => a.at - b.at);
}

const alertsAbout = (rolloutId: string) =>
  cloud.snsMessages().filter((m) => m.messageAttributes.rolloutId?.StringValue === rolloutId);

async function decide(rolloutId: string, action: 'resume' | 'abandon') {
  return cloud.callApi('/environments/prod/resync', {
    method: 'POST',
    body: { rolloutId, action },
  });
}

describe('staged rollouts, end to end on the local cloud', () => {
  let v1: string;
  let v2: string;
  let v3: string;

  it('a clean staged rollout reaches every instance, stage by stage, each after a bake', async () => {
    cloud.putParameter(PARAMETER, value(1));
    v1 = await changeRollout(0);
    const settled = await viewWhen(v1, (v) => v.state === 'Settled', 'settled');

    expect(settled.stages).toMatchObject({ phase: 'Done', instances: [1, 1, 2] });
    expect(settled.counts).toMatchObject({ total: 4, success: 4, failed: 0 });
    for (const id of FLEET) expect(fileOf(id)).toBe(value(1));
    // Each stage pinned to v1, sent only after the previous stage passed and baked.
    const commands = await commandsOf(v1);
    expect(commands.map((c) => c.instanceIds)).toEqual([[PROD_1], [PROD_2], [PROD_3, PROD_4]]);
    expect(commands.every((c) => c.parameter === `${PARAMETER}:1`)).toBe(true);
    // A stage never writes over a later version an instance already has.
    expect(commands.every((c) => c.neverOlder === 'true')).toBe(true);
    for (let k = 1; k < commands.length; k++) {
      const gap = (commands[k]?.at ?? 0) - (commands[k - 1]?.at ?? 0);
      expect(gap).toBeGreaterThanOrEqual(BAKE_SECONDS * 1000);
    }
    expect(alertsAbout(v1)).toHaveLength(0);
  });

  it('a canary that fails halts the rollout, rolls the canary back, leaves the rest untouched and alerts once', async () => {
    // The canary cannot fetch v2 (three attempts); the others could, but must never be asked.
    cloud.fleet.setFaults(PROD_1, { fetchFailures: 3 });
    cloud.putParameter(PARAMETER, value(2));
    v2 = await changeRollout(1);
    const halted = await viewWhen(v2, (v) => v.stages?.phase === 'Halted', 'halted');
    expect(halted.state).toBe('InProgress');
    expect(halted.stages.halt.stage).toBe(0);
    expect(halted.stages.halt.reason).toMatch(
      /^1 of 1 instances of the canary \(stage 1 of 3\) failed/,
    );
    expect(halted.stages.rollbackTo).toBe(1);

    // The canary is rolled back to v1 by a rollout of its own, which settles cleanly.
    const rollback = await viewWhen(
      halted.stages.halt.rollbackRolloutId,
      (v) => v.state === 'Settled',
      'the rollback settled',
    );
    expect(rollback.trigger).toEqual({ type: 'rollback', of: v2, stage: 0 });
    // A rollback writes the older version on purpose: pinned, not NeverOlder.
    const back = await commandsOf(halted.stages.halt.rollbackRolloutId);
    expect(back.map((c) => c.parameter)).toEqual([`${PARAMETER}:1`]);
    expect(back.map((c) => c.neverOlder ?? 'false')).toEqual(['false']);
    expect(rollback.instances.map((i: any) => [i.instanceId, i.versionWritten])).toEqual([
      [PROD_1, 1],
    ]);
    for (const id of FLEET) expect(fileOf(id)).toBe(value(1));
    // Nothing of v2 ever went to the other instances.
    const commands = await commandsOf(v2);
    expect(new Set(commands.flatMap((c) => c.instanceIds))).toEqual(new Set([PROD_1]));

    // One alert, the halt's, naming where and why; no second one as the sweep goes on.
    await cloud.waitFor(() => alertsAbout(v2).length > 0, { message: 'the halt alert' });
    const [alert] = alertsAbout(v2);
    expect(alert?.subject).toBe(`secrets-fanout: prod ${PARAMETER} v2 HALTED at the canary of 3`);
    expect(alert?.message).toContain('rolled back to v1');
    expect(alertsAbout(v2)).toHaveLength(1);
  });

  it('while it is halted a new instance gets the last complete version, and drift repair converges to it', async () => {
    cloud.launchInstance({ id: PROD_NEW, tags: { Environment: 'prod', Name: 'web-prod-new' } });
    await cloud.waitFor(
      () => cloud.fleet.get(PROD_NEW).exists(SECRETS_FILE) && fileOf(PROD_NEW) === value(1),
      { message: 'the new instance to get v1', timeoutMs: 60_000 },
    );
    // A file edited by hand is repaired to v1, not to the halted v2 Parameter Store holds.
    cloud.fleet.get(PROD_2).writeFile(SECRETS_FILE, 'edited by hand\n');
    const before = cloud.invocations('drift').length;
    cloud.fireSchedule('DriftScheduleProd2');
    const run = await cloud.waitFor(
      () =>
        cloud
          .invocations('drift')
          .slice(before)
          .find((r) => r.result !== undefined),
      { message: 'the drift run' },
    );
    const repairId = (run.result as any).rollout.rolloutId;
    const repair = await viewWhen(repairId, (v) => v.state === 'Settled', 'drift settled');
    expect(repair.pins).toEqual({ [PARAMETER]: 1 });
    expect(repair.driftRepaired).toBe(1);
    for (const id of [...FLEET, PROD_NEW]) expect(fileOf(id)).toBe(value(1));
  });

  it('a halted rollout can be abandoned: the stages not reached are never sent', async () => {
    const refused = await decide(v1, 'abandon');
    expect(refused.status).toBe(409);
    const answer = await decide(v2, 'abandon');
    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ rolloutId: v2, abandoned: true, untouched: 3 });
    const settled = await viewWhen(v2, (v) => v.state === 'Settled', 'settled');
    expect(settled.stages.phase).toBe('Abandoned');
    expect(settled.counts).toMatchObject({ failed: 1, superseded: 3, pending: 0 });
    expect(alertsAbout(v2)).toHaveLength(1);
  });

  it('an alarm going to ALARM during the bake halts the rollout and rolls the canary back', async () => {
    cloud.fleet.setFaults(PROD_1, { fetchFailures: 0 });
    cloud.putParameter(PARAMETER, value(3));
    v3 = await changeRollout(2);
    await viewWhen(v3, (v) => v.stages?.phase === 'Baking', 'the canary baking');
    expect(fileOf(PROD_1)).toBe(value(3));
    cloud.setAlarmState(ALARM, 'ALARM', '5xx rate above 1% for 3 minutes');

    const halted = await viewWhen(v3, (v) => v.stages?.phase === 'Halted', 'halted');
    expect(halted.stages.halt.reason).toContain(
      `alarm ${ALARM} in ALARM during the bake of the canary`,
    );
    expect(halted.stages.rollbackTo).toBe(1);
    await viewWhen(
      halted.stages.halt.rollbackRolloutId,
      (v) => v.state === 'Settled',
      'rolled back',
    );
    expect(fileOf(PROD_1)).toBe(value(1));
    for (const id of [PROD_2, PROD_3, PROD_4]) expect(fileOf(id)).toBe(value(1));
    await cloud.waitFor(() => alertsAbout(v3).length > 0, { message: 'the halt alert' });
    expect(alertsAbout(v3)).toHaveLength(1);
    expect(alertsAbout(v3)[0]?.message).toContain(ALARM);
  });

  it('a halted rollout resumed (npm run local -- resume) reaches the rest, the rolled-back canary included', async () => {
    cloud.setAlarmState(ALARM, 'OK', 'back to normal');
    // The on-call's command, as a child process against this cloud.
    const infoFile = join(variant.packagedDir, 'endpoints.json');
    writeConsoleInfo(infoFile, describeCloud(cloud));
    const run = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(repoRoot, 'test', 'local-cloud', 'cli.ts'), 'resume', v3],
        { cwd: repoRoot, env: { ...process.env, LOCAL_CLOUD_INFO: infoFile } },
        (error, stdout) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout }),
      );
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^HTTP 202\n/);
    const answer = { json: JSON.parse(run.stdout.slice(run.stdout.indexOf('{'))) };
    expect(answer.json).toMatchObject({ rolloutId: v3, resumed: true, stage: 'stage 2 of 3' });
    const settled = await viewWhen(v3, (v) => v.state === 'Settled', 'settled');
    expect(settled.stages.phase).toBe('Done');
    expect(settled.stages.decisions).toEqual([
      expect.objectContaining({ action: 'resume', stage: 0 }),
    ]);
    for (const id of FLEET) expect(fileOf(id)).toBe(value(3));
    const resumed = await viewWhen(
      answer.json.resumeRolloutId,
      (v) => v.state === 'Settled',
      'resume settled',
    );
    expect(resumed.instances.map((i: any) => [i.instanceId, i.versionWritten])).toEqual([
      [PROD_1, 3],
    ]);
    // One alert for the halt; the resumed rollout settles without another.
    expect(alertsAbout(v3)).toHaveLength(1);
  });

  it('Run Command itself holds back a stage whose alarm is already in ALARM', async () => {
    cloud.setAlarmState(ALARM, 'ALARM', 'still firing');
    cloud.putParameter(PARAMETER, value(4));
    const v4 = await changeRollout(3);
    const halted = await viewWhen(v4, (v) => v.stages?.phase === 'Halted', 'halted');
    expect(halted.stages.halt.reason).toContain(`alarm ${ALARM} in ALARM during the canary`);
    // Its commands carried the alarm (AlarmConfiguration), so the canary's never ran.
    const ssm = new SSMClient(cloud.clientConfig('ssm'));
    const carried: string[] = [];
    for await (const page of paginateListCommands({ client: ssm }, {})) {
      for (const c of page.Commands ?? []) {
        if (c.Comment?.includes(v4)) carried.push(c.AlarmConfiguration?.Alarms?.[0]?.Name ?? '');
      }
    }
    expect(carried.length).toBeGreaterThan(0);
    expect(new Set(carried)).toEqual(new Set([ALARM]));
    expect(halted.instances.find((i: any) => i.instanceId === PROD_1)?.status).toBe('Failed');
    for (const id of FLEET) expect(fileOf(id)).toBe(value(3));
    await cloud.waitFor(() => alertsAbout(v4).length > 0, { message: 'the halt alert' });
  });
});
