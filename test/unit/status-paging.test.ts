import { describe, expect, it } from 'vitest';
import { instanceIds, lambdaContext, loadEvent } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { nextRolloutId } from '../support/rollouts.ts';

/**
 * The status view of one rollout comes a page of instances at a time (≤1,000; ~190 B each, so
 * a 30,000-instance rollout no longer exceeds Lambda's 6 MB response), with the counts of all.
 */
const table = withRolloutsTable(() => import('../../functions/status.ts'));

const parameter = '/prod/env.php';
const paths = ['/var/www/html/env.php', '/opt/app/env.php'];
const fleet = instanceIds(3);

/** A rollout of 3 instances × 2 files: 6 targets. */
async function rollout() {
  const rolloutId = nextRolloutId();
  await table.store.create(
    {
      rolloutId,
      trigger: { type: 'event', eventId: 'e' },
      environment: 'prod',
      parameters: [parameter],
      files: paths.map((path) => ({ parameter, path })),
      version: 7,
    },
    fleet.flatMap((instanceId) =>
      paths.map((path) => ({ instanceId, parameter, path, status: 'Pending' as const })),
    ),
  );
  return rolloutId;
}

function get(id: string, query?: Record<string, string>) {
  const event = loadEvent<any>('http/rollout');
  event.pathParameters = { environment: 'prod', id };
  event.rawPath = `/environments/prod/rollouts/${id}`;
  if (query !== undefined) event.queryStringParameters = query;
  return table.handler.handler(event, lambdaContext()) as Promise<any>;
}
const json = (response: any) => JSON.parse(response.body);

describe('status pages', () => {
  it('walks every instance page by page with nextToken; counts always cover all', async () => {
    // Arrange
    const rolloutId = await rollout();

    // Act
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const response = await get(rolloutId, { limit: '4', ...(token ? { nextToken: token } : {}) });
      expect(response.statusCode).toBe(200);
      const body = json(response);
      expect(body.counts).toMatchObject({ total: 6, pending: 6 });
      expect(body.instances.length).toBeLessThanOrEqual(4);
      seen.push(...body.instances.map((i: any) => `${i.instanceId}${i.path}`));
      token = body.nextToken;
      pages += 1;
    } while (token !== undefined && pages < 5);

    // Assert: 6 distinct targets over 2 pages, none twice
    expect(pages).toBe(2);
    expect(new Set(seen).size).toBe(6);
    expect(seen).toHaveLength(6);
  });

  it('answers 1,000 instances a page by default and refuses a larger limit', async () => {
    const rolloutId = await rollout();
    const all = json(await get(rolloutId));
    expect(all.instances).toHaveLength(6);
    expect(all.nextToken).toBeUndefined();

    const tooMany = await get(rolloutId, { limit: '1001' });
    expect(tooMany.statusCode).toBe(400);
    expect(json(tooMany).error).toContain('limit');
  });

  it('refuses a nextToken it did not hand out, naming the field', async () => {
    const rolloutId = await rollout();
    for (const nextToken of ['not-a-token', Buffer.from('C#cmd-1').toString('base64url')]) {
      const response = await get(rolloutId, { nextToken });
      expect(response.statusCode).toBe(400);
      expect(json(response).error).toContain('nextToken');
    }
  });

  it('the table of a direct invoke says how to read the next page', async () => {
    const rolloutId = await rollout();
    const lines = (await table.handler.handler(
      { rolloutId, limit: 2 },
      lambdaContext(),
    )) as string[];
    const last = lines.at(-1) ?? '';
    expect(last).toContain('nextToken');
    expect(last).toContain(rolloutId);
  });
});
