import { DescribeSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config.ts';
import {
  type SecretChangeEvent,
  SecretChangeEventSchema,
  secretIdOf,
} from '../../shared/messages/secret-change.ts';
import {
  burstRolloutId,
  type PathDeps,
  recordPathChange,
  settlePath,
} from '../../shared/sources/path-rollouts.ts';
import { propagateSecret, type SecretDeps } from '../../shared/sources/secret-rollouts.ts';
import { secretNameOf } from '../../shared/sources/secrets.ts';
import type { Burst, SourceEvents } from '../../shared/sources/source-events.ts';
import { loadEvent } from '../support/fixtures.ts';

const config = parseConfig({
  environments: ['dev', 'prod'],
  files: [
    { secret: '{env}/db', path: '/etc/app/db.json', format: 'json' },
    { parametersByPath: '/{env}/app/', path: '/etc/app/app.env', format: 'dotenv' },
  ],
  coalesce: { settleSeconds: 5, maxWaitSeconds: 60 },
});

const sqsMock = mockClient(SQSClient);
const secretsMock = mockClient(SecretsManagerClient);
afterEach(() => {
  sqsMock.reset();
  secretsMock.reset();
});

/** An in-memory SourceEvents: the same contract, no table. */
function fakeSourceEvents(initial?: Burst) {
  let burst = initial;
  const claims = new Map<string, string>();
  const fake = {
    closed: 0,
    async claim(key: string, rolloutId: string) {
      const first = !claims.has(key);
      if (first) claims.set(key, rolloutId);
      return { rolloutId: claims.get(key) as string, first };
    },
    async addChange(_key: string, eventId: string, now: Date) {
      const at = now.toISOString();
      burst = burst
        ? { ...burst, lastEventAt: at, changes: burst.changes + 1 }
        : { burstId: eventId, firstEventAt: at, lastEventAt: at, changes: 1 };
      return { ...burst };
    },
    async markScheduled(_key: string, burstId: string) {
      if (burst?.burstId === burstId) burst = { ...burst, scheduled: burstId };
    },
    async getBurst() {
      return burst;
    },
    async close(_key: string, burstId: string, lastEventAt: string) {
      if (burst?.burstId !== burstId || burst.lastEventAt !== lastEventAt) return false;
      burst = undefined;
      fake.closed += 1;
      return true;
    },
  };
  return fake;
}

const at = (seconds: number) => new Date(Date.UTC(2026, 10, 23, 16, 13, seconds));
const message = {
  kind: 'path-settle' as const,
  environment: 'prod',
  path: '/prod/app/',
  burstId: 'event-1',
  firstEventAt: at(0).toISOString(),
};

function pathDeps(events: ReturnType<typeof fakeSourceEvents>, rollouts: string[] = []) {
  return {
    config,
    sqs: new SQSClient({ region: 'eu-west-1' }),
    sourceEvents: events as unknown as SourceEvents,
    pathSettleQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/settle',
    store: { getRollout: async (id: string) => (rollouts.includes(id) ? {} : undefined) },
  } as unknown as PathDeps;
}

describe('coalescing changes under a path', () => {
  it('queues one settle check per burst, delayed by the settle window', async () => {
    // Arrange
    sqsMock.on(SendMessageCommand).resolves({});
    const events = fakeSourceEvents();
    const deps = pathDeps(events);
    // Act: three changes of one deploy
    const results = [];
    for (const [index, second] of [0, 1, 2].entries()) {
      results.push(
        await recordPathChange(deps, {
          environment: 'prod',
          path: '/prod/app/',
          eventId: `event-${index + 1}`,
          at: at(second),
        }),
      );
    }
    // Assert
    expect(results.map((r) => [r.burstId, r.scheduled])).toEqual([
      ['event-1', true],
      ['event-1', false],
      ['event-1', false],
    ]);
    const sent = sqsMock.commandCalls(SendMessageCommand);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.args[0].input.DelaySeconds).toBe(5);
    expect(JSON.parse(sent[0]?.args[0].input.MessageBody ?? '')).toEqual(message);
  });

  it('waits out the rest of the window while changes keep coming', async () => {
    sqsMock.on(SendMessageCommand).resolves({});
    const events = fakeSourceEvents({
      burstId: 'event-1',
      firstEventAt: at(0).toISOString(),
      lastEventAt: at(4).toISOString(),
      changes: 7,
    });
    const outcome = await settlePath(pathDeps(events), message, at(6));
    expect(outcome).toEqual({ result: 'waiting', delaySeconds: 3 });
    expect(sqsMock.commandCalls(SendMessageCommand)[0]?.args[0].input.DelaySeconds).toBe(3);
    expect(events.closed).toBe(0);
  });

  it('stops waiting at maxWaitSeconds however long the trickle goes on', async () => {
    sqsMock.on(SendMessageCommand).resolves({});
    const events = fakeSourceEvents({
      burstId: 'event-1',
      firstEventAt: at(0).toISOString(),
      lastEventAt: at(58).toISOString(),
      changes: 50,
    });
    const outcome = await settlePath(pathDeps(events), message, new Date(at(0).getTime() + 59_000));
    expect(outcome).toEqual({ result: 'waiting', delaySeconds: 1 });
  });

  it('does nothing for a burst already closed whose rollout exists', async () => {
    const events = fakeSourceEvents();
    const outcome = await settlePath(pathDeps(events, [burstRolloutId(message)]), message, at(30));
    expect(outcome).toEqual({ result: 'already-rolled-out', rolloutId: burstRolloutId(message) });
    expect(sqsMock.commandCalls(SendMessageCommand)).toHaveLength(0);
  });

  it('names one rollout per burst, whoever checks it', () => {
    expect(burstRolloutId(message)).toBe(burstRolloutId({ ...message }));
    expect(burstRolloutId(message)).not.toBe(burstRolloutId({ ...message, burstId: 'event-9' }));
    expect(burstRolloutId(message).startsWith('20261123T161300000Z-')).toBe(true);
  });
});

describe('Secrets Manager events', () => {
  const putEvent = () =>
    SecretChangeEventSchema.parse(loadEvent('secret-change/put-secret-value')) as SecretChangeEvent;

  it('finds the secret in an API call and in a rotation’s service event', () => {
    expect(secretIdOf(putEvent())).toBe(
      'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf',
    );
    const rotation = SecretChangeEventSchema.parse(loadEvent('secret-change/rotation-succeeded'));
    expect(secretNameOf(secretIdOf(rotation) ?? '')).toBe('prod/db');
  });

  it.each([
    ['prod/db', 'prod/db'],
    ['arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf', 'prod/db'],
    ['arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db', 'prod/db'],
  ])('reads the name of %s', (id, name) => {
    expect(secretNameOf(id)).toBe(name);
  });

  function secretDeps(events = fakeSourceEvents(), rollouts: Record<string, unknown> = {}) {
    return {
      config,
      secretsManager: new SecretsManagerClient({ region: 'eu-west-1' }),
      sourceEvents: events as unknown as SourceEvents,
      store: { getRollout: async (id: string) => rollouts[id] },
    } as unknown as SecretDeps;
  }

  it('ignores a secret that is not mapped without describing it', async () => {
    const event = putEvent();
    event.detail.responseElements = {
      arn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:other/thing-AbCdEf',
    };
    const outcome = await propagateSecret(secretDeps(), event);
    expect(outcome).toEqual({ status: 'skipped', secret: 'other/thing', reason: 'not-mapped' });
    expect(secretsMock.commandCalls(DescribeSecretCommand)).toHaveLength(0);
  });

  it('reports a deleted secret (to alert) without describing it or sending anything', async () => {
    const event = putEvent();
    event.detail.eventName = 'DeleteSecret';
    expect(await propagateSecret(secretDeps(), event)).toEqual({
      status: 'deleted',
      secret: 'prod/db',
      environment: 'prod',
    });
    expect(secretsMock.commandCalls(DescribeSecretCommand)).toHaveLength(0);
  });

  it('ignores a call that failed', async () => {
    const event = putEvent();
    event.detail.errorCode = 'AccessDenied';
    expect(await propagateSecret(secretDeps(), event)).toMatchObject({ reason: 'call-failed' });
  });

  it('sends nothing for a version already pushed (a rotation’s second event)', async () => {
    // Arrange: the version was claimed by an earlier event whose rollout exists
    secretsMock.on(DescribeSecretCommand).resolves({
      Name: 'prod/db',
      VersionIdsToStages: { 'v-old': ['AWSPREVIOUS'], 'v-new': ['AWSCURRENT'] },
    });
    const events = fakeSourceEvents();
    await events.claim('secret#prod/db#v-new', 'rollout-1');
    // Act
    const outcome = await propagateSecret(
      secretDeps(events, { 'rollout-1': { state: 'Settled' } }),
      putEvent(),
    );
    // Assert
    expect(outcome).toEqual({
      status: 'skipped',
      secret: 'prod/db',
      reason: 'version-already-pushed',
      rolloutId: 'rollout-1',
    });
  });

  it('sends nothing while the secret has no AWSCURRENT version', async () => {
    secretsMock.on(DescribeSecretCommand).resolves({ Name: 'prod/db', VersionIdsToStages: {} });
    expect(await propagateSecret(secretDeps(), putEvent())).toMatchObject({
      reason: 'no-awscurrent',
    });
  });
});
