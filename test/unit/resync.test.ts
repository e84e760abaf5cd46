import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  DescribeInstanceInformationCommand,
  DescribeParametersCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { instanceIds, lambdaContext, loadEvent } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { deliverQueued, queuedMessages } from '../support/send-queue.ts';

const ssmMock = mockClient(SSMClient);
const ec2Mock = mockClient(EC2Client);
const sqsMock = mockClient(SQSClient);
const snsMock = mockClient(SNSClient);

// POST /environments/{environment}/resync is its own function (resync-http); the direct invoke is `resync`.
const table = withRolloutsTable(async () => ({
  http: await import('../../functions/resync-http.ts'),
  invoke: await import('../../functions/resync.ts'),
  retry: await import('../../functions/retry.ts'),
}));

const prod = instanceIds(3);
const dev = instanceIds(2, 100);
const JANE = 'arn:aws:sts::123456789012:assumed-role/oncall/jane';
/** The parameters that exist in Parameter Store. */
let existing: Set<string>;

beforeEach(() => {
  existing = new Set(['/prod/env.php', '/dev/env.php', '/staging/env.php']);
  ec2Mock.on(DescribeInstancesCommand).callsFake(({ Filters }) => {
    const env = Filters.find((f: any) => f.Name === 'tag:Environment')?.Values[0];
    const only = Filters.find((f: any) => f.Name === 'instance-id')?.Values;
    const fleet = env === 'prod' ? prod : env === 'dev' ? dev : [];
    const ids = fleet.filter((id) => only === undefined || only.includes(id));
    return { Reservations: [{ Instances: ids.map((InstanceId) => ({ InstanceId })) }] };
  });
  ssmMock.on(DescribeInstanceInformationCommand).callsFake(({ Filters }) => ({
    InstanceInformationList: Filters[0].Values.map((InstanceId: string) => ({
      InstanceId,
      PingStatus: 'Online',
    })),
  }));
  ssmMock.on(DescribeParametersCommand).callsFake(({ ParameterFilters }) => ({
    Parameters: (ParameterFilters?.[0]?.Values ?? [])
      .filter((name: string) => existing.has(name))
      .map((Name: string) => ({ Name, Version: Name === '/prod/env.php' ? 9 : 2 })),
  }));
  ssmMock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-resync' } });
  sqsMock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
  snsMock.on(PublishCommand).resolves({ MessageId: 'm' });
});
afterEach(() => {
  ssmMock.reset();
  ec2Mock.reset();
  sqsMock.reset();
  snsMock.reset();
});

/** The HTTP API fixture with another body. */
/**
 * The HTTP API fixture with another body. The environment is in the route: an `environment`
 * field moves into the path, a parameter's own environment goes there otherwise.
 */
function post(body: unknown, raw = false) {
  const event = loadEvent<any>('http/resync');
  let sent = body;
  if (!raw && typeof body === 'object' && body !== null) {
    const { environment, ...rest } = body as Record<string, unknown>;
    const parameter = typeof rest.parameter === 'string' ? rest.parameter : undefined;
    const env = (environment as string | undefined) ?? parameter?.split('/')[1] ?? 'prod';
    event.pathParameters = { environment: env };
    event.rawPath = `/environments/${env}/resync`;
    sent = environment === undefined ? body : rest;
  }
  event.body = raw ? body : JSON.stringify(sent);
  return event;
}
const call = (event: unknown) => table.handler.http.handler(event, lambdaContext()) as Promise<any>;
const invoke = (event: unknown) =>
  table.handler.invoke.handler(event, lambdaContext()) as Promise<any>;
const sent = () => ssmMock.commandCalls(SendCommandCommand).map((c) => c.args[0].input);
const queued = () => queuedMessages(sqsMock);
/** The send queue's function, given the plan messages queued so far. */
async function runPlans(): Promise<void> {
  expect(await deliverQueued(sqsMock, 'plan', table.handler.retry.handler)).toEqual([]);
}

describe('resync over HTTP', () => {
  it('answers 202 at once with the rollout id, and the plan queued sends and records who asked', async () => {
    // Act
    const response = await call(loadEvent('http/resync'));
    // Assert: the answer comes before anything is resolved or sent
    expect(response.statusCode).toBe(202);
    const body = JSON.parse(response.body);
    expect(body).toMatchObject({
      rolloutId: expect.stringMatching(/^\d{8}T\d{9}Z-[0-9a-f]{8}$/),
      accepted: true,
      requestedBy: JANE,
      environment: 'prod',
      parameters: ['/prod/env.php'],
      version: 9,
      follow: { http: `GET /environments/prod/rollouts/${body.rolloutId}` },
    });
    expect(sent()).toHaveLength(0);
    expect(ssmMock.commandCalls(DescribeInstanceInformationCommand)).toHaveLength(0);
    expect(queued()).toEqual([
      expect.objectContaining({ kind: 'plan', rolloutId: body.rolloutId, principal: JANE }),
    ]);
    // Act: the send queue's function plans it
    await runPlans();
    // Assert
    expect(sent()).toHaveLength(1);
    expect(sent()[0]?.InstanceIds).toEqual(prod);
    expect((await table.store.getRollout(body.rolloutId))?.trigger).toEqual({
      type: 'resync',
      principal: JANE,
    });
  });

  it('pushes every mapped file of an environment', async () => {
    const response = await call(post({ environment: 'dev' }));
    expect(response.statusCode).toBe(202);
    await runPlans();
    expect(sent()).toEqual([
      expect.objectContaining({
        InstanceIds: dev,
        Parameters: expect.objectContaining({ ParameterName: ['/dev/env.php'] }),
      }),
    ]);
  });

  it('sends only to the listed instances of the environment', async () => {
    const response = await call(post({ parameter: '/prod/env.php', instanceIds: [prod[1]] }));
    expect(response.statusCode).toBe(202);
    expect(sent().map((s) => s.InstanceIds)).toEqual([[prod[1]]]);
  });

  it('refuses an instance of another environment, naming it, and sends nothing', async () => {
    const response = await call(
      post({ parameter: '/prod/env.php', instanceIds: [prod[0], dev[0]] }),
    );
    expect(response.statusCode).toBe(400);
    expect(JSON.parse(response.body).error).toContain(dev[0]);
    expect(sent()).toEqual([]);
  });

  it('resolves and answers a dry run without recording or sending anything', async () => {
    const before = await table.store.recentRollouts({ parameter: '/prod/env.php' }, 50);
    const response = await call(post({ parameter: '/prod/env.php', dryRun: true }));
    expect(response.statusCode).toBe(200);
    expect(JSON.parse(response.body)).toMatchObject({ dryRun: true, targeted: prod });
    expect(JSON.parse(response.body)).not.toHaveProperty('rolloutId');
    expect(sent()).toEqual([]);
    expect(await table.store.recentRollouts({ parameter: '/prod/env.php' }, 50)).toEqual(before);
    expect(sqsMock.calls()).toHaveLength(0);
  });

  it.each([
    ['a body that is not JSON', post('{"parameter":', true), 400, 'body is not JSON'],
    ['an empty body', post('', true), 400, 'body is empty'],
    [
      'a huge body',
      post(JSON.stringify({ parameter: 'x'.repeat(20_000) }), true),
      413,
      'larger than',
    ],
    ['a parameter of the wrong type', post({ parameter: 42 }), 400, 'parameter:'],
    ['dryRun as a string', post({ parameter: '/prod/env.php', dryRun: 'yes' }), 400, 'dryRun:'],
    ['an extra field', post({ parameter: '/prod/env.php', path: '/etc/shadow' }), 400, 'path'],
    [
      'a command smuggled in',
      post({ parameter: '/prod/env.php', commands: ['reboot'] }),
      400,
      'commands',
    ],
    [
      'another environment in the body than in the path',
      {
        ...post({ parameter: '/prod/env.php' }),
        body: '{"parameter":"/prod/env.php","environment":"dev"}',
      },
      400,
      "the path's",
    ],
    [
      'a parameter of another environment than the path',
      { ...post({ parameter: '/prod/env.php' }), body: '{"parameter":"/dev/env.php"}' },
      404,
      'not mapped in environment prod',
    ],
    [
      'a malformed instance id',
      post({ parameter: '/prod/env.php', instanceIds: ['i-1; reboot'] }),
      400,
      'instanceIds.0:',
    ],
    ['an unmapped parameter', post({ parameter: '/prod/other' }), 404, '/prod/other is not mapped'],
    [
      'an unknown environment',
      post({ environment: 'qa' }),
      404,
      'environment qa is not configured',
    ],
  ])('refuses %s with %i and a message, sending nothing', async (_, event, status, message) => {
    const response = await call(event);
    expect(response.statusCode).toBe(status);
    expect(JSON.parse(response.body).error).toContain(message);
    expect(sent()).toEqual([]);
    expect(sqsMock.calls()).toHaveLength(0);
  });

  it('refuses a request that did not come through its own HTTP API, sending nothing', async () => {
    const event = loadEvent<any>('http/resync');
    event.requestContext.apiId = 'someoneelse';
    const response = await call(event);
    expect(response.statusCode).toBe(403);
    expect(sent()).toEqual([]);
    expect(sqsMock.calls()).toHaveLength(0);
  });
});

describe('resync by direct invoke', () => {
  it('answers the body itself and records the invoke as the trigger', async () => {
    const body = await invoke(loadEvent('invoke/resync-parameter'));
    expect(body).toMatchObject({
      environment: 'prod',
      accepted: true,
      requestedBy: expect.stringContaining('direct invoke'),
    });
    await runPlans();
    expect(sent()).toHaveLength(1);
    expect((await table.store.getRollout(body.rolloutId))?.trigger).toEqual({
      type: 'resync',
      principal: body.requestedBy,
    });
  });

  it('answers a bad request with its status and error instead of failing the invocation', async () => {
    await expect(invoke({ parameter: '/nope' })).resolves.toMatchObject({
      status: 404,
      error: expect.stringContaining('/nope'),
    });
  });

  it('runs the dry-run fixture without sending', async () => {
    const body = await invoke(loadEvent('invoke/resync-environment-dry-run'));
    expect(body).toMatchObject({ dryRun: true, environment: 'prod' });
    expect(sent()).toEqual([]);
  });

  it.each([
    ['invoke/resume-halted', 'resume'],
    ['invoke/abandon-halted', 'abandon'],
  ])(
    'answers %s for a rollout that does not exist with a 404, changing nothing',
    async (fixture) => {
      const body = await invoke(loadEvent(fixture));
      expect(body).toMatchObject({
        status: 404,
        error: 'rollout 20261129T120000000Z-0123abcd not found',
      });
      expect(sent()).toEqual([]);
      expect(sqsMock.calls()).toHaveLength(0);
    },
  );

  it('refuses a decision that is not resume or abandon, or on a rollout that is not staged', async () => {
    await expect(
      invoke({ rolloutId: '20261129T120000000Z-0123abcd', action: 'restart' }),
    ).resolves.toMatchObject({ status: 400, error: expect.stringContaining('action') });
    const planned = await invoke(loadEvent('invoke/resync-parameter'));
    await runPlans();
    const sends = sent().length;
    await expect(invoke({ rolloutId: planned.rolloutId, action: 'resume' })).resolves.toMatchObject(
      {
        status: 409,
        error: `rollout ${planned.rolloutId} is not staged: there is nothing to resume`,
      },
    );
    expect(sent()).toHaveLength(sends);
  });

  it('refuses an HTTP-shaped event instead of trusting the principal it claims', async () => {
    const body = await invoke(loadEvent('http/resync'));
    expect(body).toMatchObject({
      status: 400,
      error: expect.stringContaining('POST /environments/'),
    });
    expect(sent()).toEqual([]);
    expect(sqsMock.calls()).toHaveLength(0);
  });
});

describe('requests that cannot do anything are answered, not queued', () => {
  it('a parameter that does not exist in Parameter Store is a 404 naming it; nothing is recorded or sent', async () => {
    // Arrange
    existing.delete('/prod/env.php');

    // Act
    const response = await call(post({ parameter: '/prod/env.php' }));

    // Assert
    expect(response.statusCode).toBe(404);
    expect(JSON.parse(response.body).error).toBe(
      '/prod/env.php does not exist in Parameter Store; nothing sent',
    );
    expect(sent()).toHaveLength(0);
    expect(sqsMock.calls()).toHaveLength(0);
  });

  it('an environment with no running instance answers 200 "nothing to send" and records no rollout', async () => {
    // Arrange: dev has no running instance (scaled to zero)
    ec2Mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    const before = await table.store.recentRollouts({ environment: 'dev' }, 50);

    // Act
    const response = await call(post({ environment: 'dev' }));

    // Assert
    expect(response.statusCode).toBe(200);
    const body = JSON.parse(response.body);
    expect(body).toMatchObject({ nothingToSend: true, environment: 'dev' });
    expect(body.reason).toContain('Environment=dev');
    expect(body.rolloutId).toBeUndefined();
    expect(sent()).toHaveLength(0);
    expect(await table.store.recentRollouts({ environment: 'dev' }, 50)).toEqual(before);
  });
});
