/**
 * What the end-to-end tests share: a local cloud on free ports started from the packaged
 * template (`inject('packagedDir')`), with a small fleet over dev and prod and a fast clock.
 */
import { inject } from 'vitest';
import { type InstanceSpec, type LocalCloud, startLocalCloud } from '../local-cloud/cloud.ts';

export const PROD_1 = 'i-0a00000000000f001';
export const PROD_2 = 'i-0a00000000000f002';
export const PROD_3 = 'i-0a00000000000f003';
/** Tagged prod and running, but not managed by SSM. */
export const PROD_UNMANAGED = 'i-0a00000000000f0ee';
/** Tagged prod, stopped. */
export const PROD_STOPPED = 'i-0a00000000000f050';
export const DEV_1 = 'i-0b00000000000d001';
export const DEV_2 = 'i-0b00000000000d002';

export const SECRETS_FILE = '/var/www/html/env.php';

export function testFleet(): InstanceSpec[] {
  return [
    { id: PROD_1, tags: { Environment: 'prod', Name: 'web-prod-1' } },
    { id: PROD_2, tags: { Environment: 'prod', Name: 'web-prod-2' } },
    { id: PROD_3, tags: { Environment: 'prod', Name: 'web-prod-3' } },
    {
      id: PROD_UNMANAGED,
      tags: { Environment: 'prod', Name: 'web-prod-no-agent' },
      managed: false,
    },
    { id: PROD_STOPPED, tags: { Environment: 'prod', Name: 'web-prod-stopped' }, state: 'stopped' },
    { id: DEV_1, tags: { Environment: 'dev', Name: 'web-dev-1' } },
    { id: DEV_2, tags: { Environment: 'dev', Name: 'web-dev-2' } },
  ];
}

export function startTestCloud(
  fleet: InstanceSpec[] = testFleet(),
  options: { packagedDir?: string } = {},
): Promise<LocalCloud> {
  return startLocalCloud({
    packagedDir: options.packagedDir ?? inject('packagedDir'),
    fleet,
    // 100 simulated seconds per real second: a 600 s delivery timeout takes 6 s. The functions
    // read this clock too (one clock), so every real second a loaded machine spends on a chain
    // of invocations is 100 simulated seconds for the sweeps (first due 1,320 s after a rollout),
    // the sending lease (120 s) and the retries: 100× keeps a loaded 2-core machine's worst
    // chains (cold starts of several seconds) well inside them, as AWS's real latencies are.
    clockScale: 100,
    agent: { deliverySeconds: 1 },
    // A retry's backoff (≥15 s in AWS) must outlast the tracker's DynamoDB commit, which a
    // 500× clock would squeeze to 30 ms (see the report on the retry-before-commit race).
    sqsDelayFloorMs: 250,
  });
}

/** The rollout a propagate invocation started for the `index`-th parameter change. */
export async function rolloutOfChange(cloud: LocalCloud, index: number): Promise<string> {
  await cloud.waitFor(() => propagateResults(cloud).length > index, {
    message: `propagate to handle change ${index}`,
  });
  return propagateResults(cloud)[index].rollout.rolloutId as string;
}

/** Waits until the rollout is settled and returns its status view (GET /environments/prod/rollouts/{id}). */
export async function settledView(cloud: LocalCloud, rolloutId: string): Promise<any> {
  return cloud
    .waitFor(
      async () => {
        const view = (await cloud.callApi(`/environments/prod/rollouts/${rolloutId}`)).json;
        return view?.state === 'Settled' ? view : undefined;
      },
      // Generous: cold starts on a busy 2-core machine; a settled rollout returns at once.
      { message: `rollout ${rolloutId} to settle`, timeoutMs: 40_000 },
    )
    .catch((error) => {
      console.log(diagnose(cloud));
      throw error;
    });
}

/** The SNS messages about one rollout. */
export function alertsOf(cloud: LocalCloud, rolloutId: string) {
  return cloud
    .snsMessages()
    .filter((message) => message.messageAttributes.rolloutId?.StringValue === rolloutId);
}

/** The propagate invocations' results (successful ones), in order. */
export function propagateResults(cloud: LocalCloud): any[] {
  return cloud
    .invocations('propagate')
    .filter((record) => record.error === undefined)
    .map((record) => record.result);
}

/** What happened, for a failing test's output: commands, invocations of track/retry, queues. */
export function diagnose(cloud: LocalCloud): string {
  const lines: string[] = [];
  for (const command of cloud.ssm.commands.values()) {
    lines.push(
      `command ${command.commandId} ${command.comment}: ${[...command.invocations.entries()].map(([id, inv]) => `${id} ${inv.statusDetails} ${inv.responseCode}`).join(', ')}`,
    );
  }
  for (const name of ['track', 'retry']) {
    for (const record of cloud.invocations(name)) {
      lines.push(
        `${name} ${record.startedAt.toISOString()} ${JSON.stringify(record.result ?? record.error)}`,
        ...record.logs
          .filter((line) => line.startsWith('{') && line.includes('"message"'))
          .map((line) => {
            const entry = JSON.parse(line);
            return `  ${entry.timestamp} ${entry.level} ${entry.message} ${entry.instanceId ?? ''} ${entry.to ?? ''} ${entry.attempt ?? ''} ${entry.result ?? ''}`;
          }),
      );
    }
  }
  return lines.join('\n');
}
