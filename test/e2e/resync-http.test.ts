import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_ARN, type LocalCloud } from '../local-cloud/cloud.ts';
import {
  DEV_1,
  PROD_1,
  PROD_2,
  PROD_3,
  PROD_UNMANAGED,
  propagateResults,
  settledView,
  startTestCloud,
} from './local-cloud.ts';

// An on-call engineer with her own access key (an IAM user of the account).
const ALICE = {
  accessKeyId: 'AKIAALICEEXAMPLE0001',
  secretAccessKey: 'alice-secret-access-key',
};
const ALICE_ARN = 'arn:aws:iam::123456789012:user/alice';

describe('POST /resync through the HTTP API (AWS_IAM), end to end on the local cloud', () => {
  let cloud: LocalCloud;
  const commandCount = () => cloud.ssm.commands.size;
  const rolloutsOfProd = async () =>
    (
      await cloud.callApi('/environments/prod/rollouts?parameter=/prod/env.php&limit=50')
    ).json.rollouts.map((r: any) => r.rolloutId);

  beforeAll(async () => {
    cloud = await startTestCloud();
    cloud.registerPrincipal(ALICE.accessKeyId, {
      secretAccessKey: ALICE.secretAccessKey,
      userArn: ALICE_ARN,
    });
    cloud.putParameter('/prod/env.php', 'DB_PASSWORD=first\n');
    await cloud.waitFor(() => propagateResults(cloud).length === 1, { message: 'propagate' });
    await cloud.commandsSettled();
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('refuses an unsigned request with 403 Forbidden and never runs the function', async () => {
    // Act
    const response = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php' },
      unsigned: true,
    });
    // Assert
    expect(response.status).toBe(403);
    expect(response.json).toEqual({ message: 'Forbidden' });
    expect(cloud.invocations('resyncHttp')).toHaveLength(0);
  });

  it('refuses an unknown access key, a wrong secret and an unknown route', async () => {
    const unknownKey = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php' },
      credentials: { accessKeyId: 'AKIANOBODY0000000000', secretAccessKey: 'x' },
    });
    const wrongSecret = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php' },
      credentials: { accessKeyId: ALICE.accessKeyId, secretAccessKey: 'not-her-secret' },
    });
    const noRoute = await cloud.callApi('/deploy', { body: {} });
    expect(unknownKey.status).toBe(403);
    expect(unknownKey.json.message).toBe('The security token included in the request is invalid.');
    expect(wrongSecret.status).toBe(403);
    expect(wrongSecret.json.message).toMatch(/^The request signature we calculated does not match/);
    expect(noRoute.status).toBe(404);
    expect(noRoute.json).toEqual({ message: 'Not Found' });
    expect(cloud.invocations('resyncHttp')).toHaveLength(0);
  });

  it('starts a rollout of a parameter, answers 202 at once and records who asked', async () => {
    // Arrange
    const before = commandCount();
    // Act
    const response = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php' },
      credentials: ALICE,
    });
    // Assert
    expect(response.status).toBe(202);
    expect(response.headers['content-type']).toBe('application/json');
    const answer = response.json;
    expect(answer.rolloutId).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{8}$/);
    expect(answer.requestedBy).toBe(ALICE_ARN);
    expect(answer.accepted).toBe(true);
    expect(answer.follow.http).toBe(`GET /environments/prod/rollouts/${answer.rolloutId}`);
    expect(answer.follow.cli).toContain('invoke -f status');
    // Planned from the send queue: the rollout it answered with settles with every instance.
    const settled = await settledView(cloud, answer.rolloutId);
    expect(settled.instances.map((i: any) => i.instanceId).sort()).toEqual(
      [PROD_1, PROD_2, PROD_3, PROD_UNMANAGED].sort(),
    );
    expect(settled.instances.find((i: any) => i.instanceId === PROD_UNMANAGED)).toMatchObject({
      status: 'Unreachable',
      reason: 'NotManagedBySSM',
    });
    expect(commandCount()).toBe(before + 1);
    // The function got the IAM authorizer's context, as API Gateway passes it.
    const event = cloud.invocations('resyncHttp').at(-1)?.event as any;
    expect(event.version).toBe('2.0');
    expect(event.routeKey).toBe('POST /environments/{environment}/resync');
    expect(event.isBase64Encoded).toBe(false);
    expect(event.requestContext.authorizer.iam).toMatchObject({
      accessKey: ALICE.accessKeyId,
      accountId: '123456789012',
      userArn: ALICE_ARN,
      callerId: expect.stringMatching(/^AIDA/),
      userId: expect.stringMatching(/^AIDA/),
    });
    // The audit trail: the rollout names the caller, in JSON and in the table.
    const view = await cloud.callApi(`/environments/prod/rollouts/${answer.rolloutId}`);
    expect(view.status).toBe(200);
    expect(view.json.trigger).toEqual({ type: 'resync', principal: ALICE_ARN });
    const table = (await cloud.fn('status').invoke({ rolloutId: answer.rolloutId }))
      .result as string[];
    expect(table[0]).toContain(`resync by ${ALICE_ARN}`);
    await cloud.commandsSettled();
  });

  it('re-pushes every mapped file of an environment', async () => {
    const before = commandCount();
    const response = await cloud.callApi('/environments/prod/resync', {
      body: { environment: 'prod' },
    });
    expect(response.status).toBe(202);
    expect(response.json).toMatchObject({
      environment: 'prod',
      parameters: ['/prod/env.php'],
      requestedBy: ADMIN_ARN,
    });
    const settled = await settledView(cloud, response.json.rolloutId);
    expect(settled.counts).toMatchObject({ success: 0, unchanged: 3, unreachable: 1, failed: 0 });
    expect(commandCount()).toBe(before + 1);
    await cloud.commandsSettled();
  });

  it('sends to the listed instances only', async () => {
    const before = commandCount();
    const response = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php', instanceIds: [PROD_2] },
    });
    expect(response.status).toBe(202);
    expect(response.json.targeted).toEqual([PROD_2]);
    expect(commandCount()).toBe(before + 1);
    expect([...cloud.ssm.commands.values()].at(-1)?.instanceIds).toEqual([PROD_2]);
    await cloud.commandsSettled();
  });

  it('refuses an instance of another environment with 400 naming it, sending nothing', async () => {
    const before = commandCount();
    const rollouts = await rolloutsOfProd();
    const response = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php', instanceIds: [PROD_1, DEV_1] },
    });
    expect(response.status).toBe(400);
    expect(response.json.error).toContain(DEV_1);
    expect(response.json.error).not.toContain(PROD_1);
    expect(commandCount()).toBe(before);
    expect(await rolloutsOfProd()).toEqual(rollouts);
  });

  it('resolves a dry run (200) but records and sends nothing', async () => {
    const before = commandCount();
    const rollouts = await rolloutsOfProd();
    const response = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php', dryRun: true },
    });
    expect(response.status).toBe(200);
    expect(response.json.dryRun).toBe(true);
    expect(response.json.rolloutId).toBeUndefined();
    expect(response.json.targeted.sort()).toEqual([PROD_1, PROD_2, PROD_3].sort());
    expect(commandCount()).toBe(before);
    expect(await rolloutsOfProd()).toEqual(rollouts);
  });

  it.each([
    ['a body that is not JSON', '{"parameter": "/prod/env.php"', 400, /not JSON/],
    ['an empty body', '', 400, /empty/],
    ['a wrong type', { parameter: 42 }, 400, /parameter/],
    ['dryRun as a string', { parameter: '/prod/env.php', dryRun: 'yes' }, 400, /dryRun/],
    ['an extra field', { parameter: '/prod/env.php', path: '/etc/passwd' }, 400, /path/],
    [
      'another environment in the body than in the path',
      { parameter: '/prod/env.php', environment: 'dev' },
      400,
      /the path's/,
    ],
    [
      'a parameter of another environment',
      { parameter: '/dev/env.php' },
      404,
      /not mapped in environment prod/,
    ],
    [
      'a malformed instance id',
      { parameter: '/prod/env.php', instanceIds: ['web-1'] },
      400,
      /instanceIds/,
    ],
    ['a huge body', { parameter: '/prod/env.php', pad: 'x'.repeat(17 * 1024) }, 413, /larger than/],
    ['an unknown parameter', { parameter: '/prod/nope.php' }, 404, /\/prod\/nope\.php/],
  ])('answers %s with %i naming the problem, sending nothing', async (_, body, status, error) => {
    // Arrange
    const before = commandCount();
    const rollouts = await rolloutsOfProd();
    // Act
    const response = await cloud.callApi('/environments/prod/resync', { method: 'POST', body });
    // Assert
    expect(response.status).toBe(status);
    expect(response.json.error).toMatch(error);
    expect(commandCount()).toBe(before);
    expect(await rolloutsOfProd()).toEqual(rollouts);
  });

  it('answers an unknown environment in the path with 404, sending nothing', async () => {
    const before = commandCount();
    const response = await cloud.callApi('/environments/qa/resync', { body: {} });
    expect(response.status).toBe(404);
    expect(response.json.error).toMatch(/environment qa/);
    expect(commandCount()).toBe(before);
  });
});

describe('per-environment authorization for people (IAM on the environment in the route)', () => {
  let cloud: LocalCloud;
  // The README's operator policies, as IAM identity policies of two people.
  const DEV_ONCALL = { accessKeyId: 'AKIADEVONCALL0000001', secretAccessKey: 'dev-oncall-secret' };
  const READER = { accessKeyId: 'AKIAREADONLY00000001', secretAccessKey: 'read-only-secret' };

  beforeAll(async () => {
    cloud = await startTestCloud();
    cloud.putParameter('/dev/env.php', 'DB_PASSWORD=s3cr3t-for-tests\n');
    cloud.registerPrincipal(DEV_ONCALL.accessKeyId, {
      secretAccessKey: DEV_ONCALL.secretAccessKey,
      userArn: 'arn:aws:iam::123456789012:user/dev-oncall',
      policy: [
        {
          Effect: 'Allow',
          Action: 'execute-api:Invoke',
          Resource: 'arn:aws:execute-api:*:*:*/*/*/environments/dev/*',
        },
      ],
    });
    cloud.registerPrincipal(READER.accessKeyId, {
      secretAccessKey: READER.secretAccessKey,
      userArn: 'arn:aws:iam::123456789012:user/reader',
      policy: [
        {
          Effect: 'Allow',
          Action: 'execute-api:Invoke',
          Resource: [
            'arn:aws:execute-api:*:*:*/*/GET/environments/*/rollouts',
            'arn:aws:execute-api:*:*:*/*/GET/environments/*/rollouts/*',
          ],
        },
      ],
    });
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('a dev-only identity is refused on prod routes and allowed on dev', async () => {
    // Act
    const prodResync = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php' },
      credentials: DEV_ONCALL,
    });
    const prodStatus = await cloud.callApi('/environments/prod/rollouts', {
      credentials: DEV_ONCALL,
    });
    const devStatus = await cloud.callApi('/environments/dev/rollouts', {
      credentials: DEV_ONCALL,
    });
    const devResync = await cloud.callApi('/environments/dev/resync', {
      body: { dryRun: true },
      credentials: DEV_ONCALL,
    });

    // Assert: API Gateway's own refusal, and the function never ran for prod
    expect(prodResync.status).toBe(403);
    expect(prodResync.json.Message ?? prodResync.json.message).toMatch(
      /^User: arn:aws:iam::123456789012:user\/dev-oncall is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:.*\/POST\/environments\/prod\/resync$/,
    );
    expect(prodStatus.status).toBe(403);
    expect(devStatus.status).toBe(200);
    expect(devResync.status).toBe(200);
    expect(devResync.json).toMatchObject({
      dryRun: true,
      environment: 'dev',
      requestedBy: 'arn:aws:iam::123456789012:user/dev-oncall',
    });
    expect(
      cloud.invocations('resyncHttp').filter((i: any) => i.event.rawPath.includes('/prod/')),
    ).toHaveLength(0);
  });

  it('a read-only identity reads every environment and re-syncs none', async () => {
    const status = await cloud.callApi('/environments/prod/rollouts', { credentials: READER });
    const resync = await cloud.callApi('/environments/dev/resync', {
      body: { dryRun: true },
      credentials: READER,
    });
    expect(status.status).toBe(200);
    expect(resync.status).toBe(403);
  });
});
