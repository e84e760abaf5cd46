import { describe, expect, it } from 'vitest';
import { instanceIds, lambdaContext, loadEvent } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { nextRolloutId } from '../support/rollouts.ts';

const table = withRolloutsTable(() => import('../../functions/status.ts'));

const parameter = '/prod/env.php';
const path = '/var/www/html/env.php';
const [a, b, c] = instanceIds(3);

/** A rollout of a, b (pending) and c (unreachable), its first command recorded. */
async function rollout() {
  const rolloutId = nextRolloutId();
  await table.store.create(
    {
      rolloutId,
      trigger: { type: 'resync', principal: 'arn:aws:iam::123456789012:user/jane' },
      environment: 'prod',
      parameters: [parameter],
      files: [{ parameter, path }],
      version: 4,
    },
    [
      { instanceId: a!, parameter, path, status: 'Pending' },
      { instanceId: b!, parameter, path, status: 'Pending' },
      { instanceId: c!, parameter, path, status: 'Unreachable', reason: 'NotManagedBySSM' },
    ],
  );
  await table.store.recordCommand(rolloutId, {
    commandId: 'cmd-first',
    parameter,
    path,
    attempt: 1,
    instanceIds: [a!, b!],
  });
  return rolloutId;
}

function get(id: string) {
  const event = loadEvent<any>('http/rollout');
  event.pathParameters = { environment: 'prod', id };
  event.rawPath = `/environments/prod/rollouts/${id}`;
  return table.handler.handler(event, lambdaContext()) as Promise<any>;
}
const json = (response: any) => JSON.parse(response.body);

describe('status', () => {
  it('shows a rollout in progress with every instance, its state and its command', async () => {
    const rolloutId = await rollout();
    const response = await get(rolloutId);
    expect(response.statusCode).toBe(200);
    expect(json(response)).toMatchObject({
      rolloutId,
      trigger: { type: 'resync', principal: 'arn:aws:iam::123456789012:user/jane' },
      environment: 'prod',
      version: 4,
      state: 'InProgress',
      counts: { total: 3, pending: 2, unreachable: 1 },
      instances: [
        { instanceId: a, status: 'Pending', attempts: 1, commandId: 'cmd-first' },
        { instanceId: b, status: 'Pending', attempts: 1, commandId: 'cmd-first' },
        { instanceId: c, status: 'Unreachable', reason: 'NotManagedBySSM' },
      ],
    });
  });

  it('shows a settled rollout with the version each instance wrote and why one failed', async () => {
    // Arrange
    const rolloutId = await rollout();
    await table.store.commit(rolloutId, [
      { instanceId: a!, parameter, path, fromAttempt: 1, to: 'Success', versionWritten: 4 },
      {
        instanceId: b!,
        parameter,
        path,
        fromAttempt: 1,
        to: 'Retry',
        retryAt: new Date().toISOString(),
        lastError: { status: 'Failed', exitCode: 75, meaning: 'FetchFailed' },
      },
    ]);
    await table.store.recordAttemptCommands(
      rolloutId,
      [{ instanceId: b!, parameter, path }],
      2,
      'cmd-retry',
    );
    await table.store.commit(rolloutId, [
      {
        instanceId: b!,
        parameter,
        path,
        fromAttempt: 2,
        commandId: 'cmd-retry',
        to: 'Failed',
        lastError: {
          status: 'Failed',
          exitCode: 65,
          meaning: 'ContentInvalid',
          stderr: 'secrets-fanout: error: not dotenv: line 2',
        },
      },
    ]);
    await table.store.settle(rolloutId);
    // Act
    const view = json(await get(rolloutId));
    const lines: string[] = (await table.handler.handler({ rolloutId }, lambdaContext())) as any;
    // Assert
    expect(view).toMatchObject({
      state: 'Settled',
      settledAt: expect.any(String),
      counts: { success: 1, failed: 1, unreachable: 1, pending: 0, retries: 1 },
    });
    expect(view.instances[0]).toMatchObject({
      instanceId: a,
      status: 'Success',
      versionWritten: 4,
      commandId: 'cmd-first',
    });
    expect(view.instances[1]).toMatchObject({
      instanceId: b,
      status: 'Failed',
      attempts: 2,
      commandId: 'cmd-retry',
      lastError: { exitCode: 65 },
    });
    expect(lines[0]).toBe(
      `rollout ${rolloutId}  Settled  resync by arn:aws:iam::123456789012:user/jane`,
    );
    expect(lines[2]).toBe(
      '1 updated, 0 unchanged, 1 failed, 1 unreachable, 0 superseded, 0 pending (of 3; 1 retries)',
    );
    expect(lines.find((line) => line.startsWith(b!))).toMatch(
      /Failed\s+2\s+-\s+cmd-retry\s+Failed exit 65 ContentInvalid: secrets-fanout: error: not dotenv: line 2/,
    );
    expect(lines.find((line) => line.startsWith(a!))).toMatch(/Success\s+1\s+v4\s+cmd-first/);
  });

  it('shows a rollout that settled clean', async () => {
    const rolloutId = nextRolloutId();
    await table.store.create(
      {
        rolloutId,
        trigger: { type: 'event', eventId: 'e' },
        environment: 'prod',
        parameters: [parameter],
        files: [{ parameter, path }],
        version: 5,
      },
      [{ instanceId: a!, parameter, path, status: 'Pending' }],
    );
    await table.store.commit(rolloutId, [
      { instanceId: a!, parameter, path, fromAttempt: 1, to: 'Unchanged', versionWritten: 5 },
    ]);
    await table.store.settle(rolloutId);
    const view = json(await get(rolloutId));
    expect(view).toMatchObject({
      state: 'Settled',
      counts: { unchanged: 1, failed: 0, unreachable: 0, pending: 0 },
    });
    expect(view.instances).toEqual([
      expect.objectContaining({ status: 'Unchanged', versionWritten: 5 }),
    ]);
    const lines: string[] = (await table.handler.handler({ rolloutId }, lambdaContext())) as any;
    expect(lines[0]).toBe(`rollout ${rolloutId}  Settled  parameter change`);
  });

  it('lists the newest rollouts of a parameter, newest first, limited', async () => {
    const first = await rollout();
    const second = await rollout();
    const event = loadEvent<any>('http/rollouts');
    event.queryStringParameters = { parameter, limit: '2' };
    const body = json(await table.handler.handler(event, lambdaContext()));
    expect(body.rollouts.map((r: { rolloutId: string }) => r.rolloutId)).toEqual([second, first]);
  });

  it.each([
    ['an unknown rollout', () => get('20991231T235959999Z-00000000'), 404, 'no rollout'],
    ['a malformed id', () => get('../../etc'), 400, 'rolloutId'],
    [
      'a list of a parameter of another environment than the path',
      () =>
        table.handler.handler(
          {
            ...loadEvent<any>('http/rollouts'),
            queryStringParameters: { parameter: '/dev/env.php' },
          },
          lambdaContext(),
        ),
      404,
      'not mapped in environment prod',
    ],
    [
      'a rollout of another environment than the path',
      async () => {
        const event = loadEvent<any>('http/rollout');
        event.pathParameters = { environment: 'dev', id: await rollout() };
        return table.handler.handler(event, lambdaContext());
      },
      404,
      'no rollout',
    ],
    [
      'an environment that is not configured',
      () =>
        table.handler.handler(
          { ...loadEvent<any>('http/rollouts'), pathParameters: { environment: 'qa' } },
          lambdaContext(),
        ),
      404,
      'environment qa is not configured',
    ],
    [
      'a list of a parameter that is not mapped',
      () =>
        table.handler.handler(
          {
            ...loadEvent<any>('http/rollouts'),
            queryStringParameters: { parameter: '/prod/nope' },
          },
          lambdaContext(),
        ),
      404,
      'not mapped',
    ],
    [
      'a limit out of range',
      () =>
        table.handler.handler(
          {
            ...loadEvent<any>('http/rollouts'),
            queryStringParameters: { parameter, limit: '5000' },
          },
          lambdaContext(),
        ),
      400,
      'limit',
    ],
  ])('answers %s with %s', async (_, request, code, message) => {
    const response: any = await request();
    expect(response.statusCode).toBe(code);
    expect(json(response).error).toContain(message);
  });
});
