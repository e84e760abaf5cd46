import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalCloud, startLocalCloud } from '../local-cloud/cloud.ts';
import { type PackagedVariant, packageVariant, withRolloutPace } from '../support/package.ts';
import { diagnose, SECRETS_FILE } from './local-cloud.ts';

const INSTANCES = 230;
const PARAMETER = '/prod/env.php';
const ids = Array.from({ length: INSTANCES }, (_, i) => `i-0c${String(i).padStart(15, '0')}`);

let cloud: LocalCloud;
let variant: PackagedVariant;

beforeAll(async () => {
  variant = await packageVariant('parts', {
    // 40 fetches a second would make this fleet's sends take 6 s simulated: keep the pace out
    // of the way, the parts are what is under test.
    serverlessYml: (text) =>
      withRolloutPace(text, 'fetchesPerSecond: 3000, commandsPerSecond: 100, planPartTargets: 50'),
  });
  cloud = await startLocalCloud({
    packagedDir: variant.packagedDir,
    fleet: ids.map((id, i) => ({
      id,
      tags: { Environment: 'prod', Name: `web-prod-${i}` },
      directories: ['/var/www/html'],
    })),
    clockScale: 100,
    // The agent writes the value itself (no /bin/sh per instance): this test is about the plan.
    agent: { deliverySeconds: 1, stubScript: true },
    sqsDelayFloorMs: 250,
  });
}, 240_000);

afterAll(async () => {
  await cloud?.stop();
  await variant?.remove();
});

/** The rollout's status view once it has settled. */
async function settled(rolloutId: string): Promise<any> {
  return cloud
    .waitFor(
      async () => {
        const view = (await cloud.callApi(`/environments/prod/rollouts/${rolloutId}?limit=1000`))
          .json as any;
        return view?.state === 'Settled' ? view : undefined;
      },
      { message: `rollout ${rolloutId} to settle`, timeoutMs: 120_000 },
    )
    .catch((error) => {
      console.log(diagnose(cloud));
      throw error;
    });
}

/** The part messages the retry function handled for the rollout. */
function partsHandled(rolloutId: string): number[] {
  return cloud
    .invocations('retry')
    .flatMap((record) => ((record.event as any)?.Records ?? []) as Array<{ body: string }>)
    .map((message) => JSON.parse(message.body))
    .filter((body) => body.kind === 'part' && body.rolloutId === rolloutId)
    .map((body) => body.part as number);
}

/** Every Run Command invocation of the parameter requested at or after `since`, by instance. */
function sendsSince(since: number): Map<string, number> {
  const sends = new Map<string, number>();
  for (const command of cloud.ssm.commands.values()) {
    if (command.parameters.ParameterName?.[0] !== PARAMETER) continue;
    if (command.requestedDateTime.getTime() < since) continue;
    for (const id of command.instanceIds) sends.set(id, (sends.get(id) ?? 0) + 1);
  }
  return sends;
}

describe('a rollout planned in parts', () => {
  it('a parameter change: the planner records its part, the send workers the rest; every file once', async () => {
    const since = cloud.clock.nowMs();
    cloud.putParameter(PARAMETER, "<?php return ['db_password' => 's3cr3t-for-tests-parts'];\n");
    const propagate = await cloud.waitFor(() => cloud.invocations('propagate').at(-1), {
      message: 'propagate',
    });
    const rolloutId = (propagate.result as any)?.rollout?.rolloutId as string;
    expect(rolloutId).toBeTruthy();

    const view = await settled(rolloutId);
    expect(view.counts).toMatchObject({ total: INSTANCES, success: INSTANCES, pending: 0 });
    expect(view.instances).toHaveLength(INSTANCES);
    // 230 targets in parts of at most 50 (whole chunks: 50, 50, 50, 50, 30): the planner's own
    // part 0, and parts 1–4 recorded by the send workers.
    expect(new Set(partsHandled(rolloutId))).toEqual(new Set([1, 2, 3, 4]));
    const sends = sendsSince(since);
    expect(new Set(sends.keys())).toEqual(new Set(ids));
    expect([...sends.values()].every((n) => n === 1)).toBe(true);
    for (const id of ids) {
      expect(cloud.fleet.get(id).readFile(SECRETS_FILE).toString('utf8')).toContain(
        's3cr3t-for-tests-parts',
      );
    }
  });

  it('a whole-environment re-sync answers at once and is planned in parts from the send queue', async () => {
    const since = cloud.clock.nowMs();
    const answer = await cloud.callApi('/environments/prod/resync', {
      method: 'POST',
      body: {},
    });
    expect(answer.status).toBe(202);
    const rolloutId = (answer.json as any).rolloutId as string;
    const view = await settled(rolloutId);
    // The files are current: every instance ran its command and rewrote nothing.
    expect(view.counts).toMatchObject({ total: INSTANCES, pending: 0, failed: 0 });
    expect(view.counts.success + view.counts.unchanged).toBe(INSTANCES);
    expect(new Set(partsHandled(rolloutId))).toEqual(new Set([1, 2, 3, 4]));
    expect([...sendsSince(since).values()].every((n) => n === 1)).toBe(true);
    expect(sendsSince(since).size).toBe(INSTANCES);
  });
});
