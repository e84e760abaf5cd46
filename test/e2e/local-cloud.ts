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

export function startTestCloud(fleet: InstanceSpec[] = testFleet()): Promise<LocalCloud> {
  return startLocalCloud({
    packagedDir: inject('packagedDir'),
    fleet,
    // 500 simulated seconds per real second: a 600 s delivery timeout takes 1.2 s.
    clockScale: 500,
    agent: { deliverySeconds: 1 },
  });
}

/** The propagate invocations' results (successful ones), in order. */
export function propagateResults(cloud: LocalCloud): any[] {
  return cloud
    .invocations('propagate')
    .filter((record) => record.error === undefined)
    .map((record) => record.result);
}
