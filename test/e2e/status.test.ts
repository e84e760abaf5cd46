import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import {
  DEV_1,
  diagnose,
  PROD_1,
  PROD_2,
  PROD_3,
  propagateResults,
  SECRETS_FILE,
  startTestCloud,
} from './local-cloud.ts';

/**
 * Rollout ids have second precision (the functions' clock, which is the local cloud's): start
 * the next rollout in a new second so ids sort by time.
 */
async function nextSecond(cloud: LocalCloud): Promise<void> {
  await cloud.clock.sleep((1005 - (cloud.clock.nowMs() % 1000)) / 1000);
}

describe('the on-call view (status), end to end on the local cloud', () => {
  let cloud: LocalCloud;
  let clean: string;
  let withFailures: string;
  let inProgress: string;

  const view = async (rolloutId: string) =>
    (await cloud.callApi(`/environments/prod/rollouts/${rolloutId}`)).json;
  const rollout = async (put: string) => {
    const before = propagateResults(cloud).length;
    cloud.putParameter('/prod/env.php', put);
    await cloud.waitFor(() => propagateResults(cloud).length === before + 1, {
      message: 'propagate',
    });
    return propagateResults(cloud)[before].rollout.rolloutId as string;
  };
  const settled = (rolloutId: string) =>
    cloud
      .waitFor(async () => (await view(rolloutId)).state === 'Settled', {
        message: `rollout ${rolloutId} to settle`,
      })
      .catch((error) => {
        console.log(diagnose(cloud));
        throw error;
      });

  beforeAll(async () => {
    // No unmanaged instance: the first rollout can settle clean.
    cloud = await startTestCloud([
      { id: PROD_1, tags: { Environment: 'prod' } },
      { id: PROD_2, tags: { Environment: 'prod' } },
      { id: PROD_3, tags: { Environment: 'prod' } },
      { id: DEV_1, tags: { Environment: 'dev' } },
    ]);
    clean = await rollout('DB_PASSWORD=one\n');
    await settled(clean);
    await nextSecond(cloud);
    // PROD_3 cannot fetch three times: every attempt fails, the rollout settles with a failure.
    cloud.fleet.setFaults(PROD_3, { fetchFailures: 3 });
    withFailures = await rollout('DB_PASSWORD=two\n');
    await settled(withFailures);
    await nextSecond(cloud);
    // PROD_3's agent takes ages to pick the command up (it comes last: MaxConcurrency 25% of 3
    // runs one instance at a time): the rollout stays in progress.
    cloud.fleet.setFaults(PROD_3, { agentLatencySeconds: 1_000_000 });
    inProgress = await rollout('DB_PASSWORD=three\n');
    // Successes are recorded when their command (≤50 instances) finishes: here the files of
    // PROD_1 and PROD_2 are written while the command waits for PROD_3.
    await cloud.waitFor(
      () =>
        [PROD_1, PROD_2].every((id) =>
          cloud.fleet.get(id).readFile(SECRETS_FILE).toString().includes('three'),
        ),
      { message: 'all but PROD_3 to write the file' },
    );
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('shows a rollout that settled clean', async () => {
    const response = await cloud.callApi(`/environments/prod/rollouts/${clean}`);
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('application/json');
    const body = response.json;
    expect(body).toMatchObject({
      rolloutId: clean,
      trigger: { type: 'event' },
      environment: 'prod',
      parameters: ['/prod/env.php'],
      version: 1,
      state: 'Settled',
      counts: { total: 3, pending: 0, success: 3, failed: 0, unreachable: 0, retries: 0 },
    });
    expect(body.settledAt >= body.createdAt).toBe(true);
    expect(body.instances).toHaveLength(3);
    for (const instance of body.instances) {
      expect(instance).toMatchObject({
        parameter: '/prod/env.php',
        path: SECRETS_FILE,
        status: 'Success',
        attempts: 1,
        versionWritten: 1,
        commandId: expect.any(String),
      });
      expect(instance.lastError).toBeUndefined();
    }
  });

  it('shows a rollout that settled with a failure: attempts, exit code meaning and stderr', async () => {
    const body = await view(withFailures);
    expect(body).toMatchObject({
      state: 'Settled',
      version: 2,
      counts: { total: 3, pending: 0, success: 2, failed: 1, retries: 2 },
    });
    const failed = body.instances.find((i: any) => i.instanceId === PROD_3);
    expect(failed).toMatchObject({
      status: 'Failed',
      attempts: 3,
      commandId: expect.any(String),
      lastError: {
        status: 'Failed (after 3 attempts)',
        exitCode: 75,
        meaning: 'FetchFailed',
        stderr: expect.any(String),
      },
    });
    // The latest attempt's command, not the first one.
    const commands = [...cloud.ssm.commands.values()].filter((c) =>
      c.comment.includes(withFailures),
    );
    expect(commands.map((c) => c.instanceIds.length)).toEqual([3, 1, 1]);
    expect(failed.commandId).toBe(commands.at(-1)?.commandId);
  });

  it('shows a rollout in progress with the instance still pending', async () => {
    const body = await view(inProgress);
    expect(body.state).toBe('InProgress');
    expect(body.settledAt).toBeUndefined();
    // Its command is not finished (PROD_3 has not picked it up): all three still pending.
    expect(body.counts).toMatchObject({ total: 3, pending: 3 });
    expect(body.instances.find((i: any) => i.instanceId === PROD_3)).toMatchObject({
      status: 'Pending',
      attempts: 1,
    });
  });

  it('lists the newest rollouts of a parameter first, as many as asked', async () => {
    const response = await cloud.callApi(
      '/environments/prod/rollouts?parameter=/prod/env.php&limit=2',
    );
    expect(response.status).toBe(200);
    expect(response.json.rollouts.map((r: any) => r.rolloutId)).toEqual([inProgress, withFailures]);
    expect(response.json.rollouts[0]).toMatchObject({ state: 'InProgress', version: 3 });
  });

  it('answers a direct invoke with a table: one row per instance', async () => {
    const record = await cloud.fn('status').invoke({ rolloutId: withFailures });
    expect(record.error).toBeUndefined();
    const table = record.result as string[];
    expect(Array.isArray(table)).toBe(true);
    expect(table[0]).toContain(withFailures);
    expect(table[0]).toContain('Settled');
    expect(table.join('\n')).toContain('2 updated, 0 unchanged, 1 failed');
    for (const id of [PROD_1, PROD_2, PROD_3]) {
      expect(
        table.filter((line) => line.startsWith(id)),
        id,
      ).toHaveLength(1);
    }
    const row = table.find((line) => line.startsWith(PROD_3)) ?? '';
    expect(row).toMatch(/Failed\s+3\s+-/);
    expect(row).toContain('exit 75 FetchFailed');
  });

  it('answers 404 for an unknown rollout and 400 for a malformed id or query', async () => {
    const unknown = await cloud.callApi('/environments/prod/rollouts/20200101T000000000Z-deadbeef');
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toContain('20200101T000000000Z-deadbeef');
    const malformed = await cloud.callApi('/environments/prod/rollouts/not-a-rollout');
    expect(malformed.status).toBe(400);
    const badLimit = await cloud.callApi(
      '/environments/prod/rollouts?parameter=/prod/env.php&limit=500',
    );
    expect(badLimit.status).toBe(400);
    expect(badLimit.json.error).toContain('limit');
    const unsigned = await cloud.callApi(`/environments/prod/rollouts/${clean}`, {
      unsigned: true,
    });
    expect(unsigned.status).toBe(403);
  });
});
