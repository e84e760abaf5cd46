import {
  DeleteSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { type PackagedVariant, packageVariant } from '../support/package.ts';
import { DEV_1, diagnose, PROD_1, PROD_2, PROD_3, startTestCloud } from './local-cloud.ts';

const SECRET_FILE = '/etc/app/db.json';
const PATH_FILE = '/etc/app/app.env';
const PROD = [PROD_1, PROD_2, PROD_3];

// The settle window in simulated seconds: at the test clock's 100x, 9 real seconds, far more
// than the 20 puts (one synchronous loop) and their pathChange invocations take.
const SOURCES = `
      - secret: '{env}/db'
        path: ${SECRET_FILE}
        format: json
      - parametersByPath: /{env}/app/
        path: ${PATH_FILE}
        format: dotenv
`;

let cloud: LocalCloud;
let variant: PackagedVariant;

beforeAll(async () => {
  variant = await packageVariant('sources', {
    serverlessYml: (text) =>
      text
        .replace(
          '        # reloadService: php-fpm   # optional; rolled back if the reload fails\n',
          (line) => `${line}${SOURCES}`,
        )
        .replace(
          'coalesce: { settleSeconds: 5, maxWaitSeconds: 60 }',
          'coalesce: { settleSeconds: 900, maxWaitSeconds: 1800 }',
        ),
  });
  cloud = await startTestCloud(undefined, { packagedDir: variant.packagedDir });
}, 240_000);

afterAll(async () => {
  await cloud?.stop();
  await variant?.remove();
});

/** The rollouts of a source, newest first, from the status API. */
async function rolloutsOf(source: string): Promise<any[]> {
  const reply = await cloud.callApi(
    `/environments/prod/rollouts?parameter=${encodeURIComponent(source)}`,
  );
  return reply.json?.rollouts ?? [];
}

async function settled(rolloutId: string): Promise<any> {
  return cloud
    .waitFor(
      async () => {
        const view = (await cloud.callApi(`/environments/prod/rollouts/${rolloutId}`)).json;
        return view?.state === 'Settled' ? view : undefined;
      },
      { message: `rollout ${rolloutId} to settle`, timeoutMs: 60_000 },
    )
    .catch((error) => {
      console.log(diagnose(cloud));
      throw error;
    });
}

function commandsFor(source: string) {
  return [...cloud.ssm.commands.values()].filter(
    (command) => command.parameters?.ParameterName?.[0] === source,
  );
}

describe('a Secrets Manager secret', () => {
  it('is written on create, and a rotation reaches every instance once', async () => {
    // Arrange: the secret is created (CreateSecret), its first version pushed
    const first = `{"password":"s3cr3t-for-tests-1"}`;
    const second = `{"password":"s3cr3t-for-tests-2","user":"ünïcødé"}`;
    cloud.secretsManager.put('prod/db', first);
    const [created] = await cloud.waitFor(
      async () => {
        const list = await rolloutsOf('prod/db');
        return list.length === 1 ? list : undefined;
      },
      { message: 'the secret create rollout', timeoutMs: 60_000 },
    );
    await settled(created.rolloutId);

    // Act: a rotation (PutSecretValue AWSPENDING, UpdateSecretVersionStage, RotationSucceeded)
    const rotated = cloud.secretsManager.rotate('prod/db', second);
    const rollout = await cloud.waitFor(
      async () => {
        const list = await rolloutsOf('prod/db');
        return list.length === 2 ? list[0] : undefined;
      },
      { message: 'the rotation rollout', timeoutMs: 60_000 },
    );
    const view = await settled(rollout.rolloutId);
    await cloud.waitFor(() => cloud.invocations('secretChange').length >= 4, {
      message: 'every secret event handled',
      timeoutMs: 60_000,
    });

    // Assert: every prod instance holds the new version, dev nothing
    for (const id of PROD) {
      expect(cloud.fleet.get(id).readFile(SECRET_FILE).toString('utf8'), id).toBe(second);
    }
    expect(cloud.fleet.get(DEV_1).exists(SECRET_FILE)).toBe(false);
    // The fourth is the prod instance SSM does not manage: Unreachable, as for a parameter.
    expect(view.counts).toMatchObject({ total: 4, success: 3, unreachable: 1, failed: 0 });
    expect(view.sources).toEqual([{ name: 'prod/db', version: rotated }]);
    // The status view says which version of the secret each instance now holds.
    for (const id of PROD) {
      expect(view.instances.find((i: { instanceId: string }) => i.instanceId === id)).toMatchObject(
        {
          status: 'Success',
          revisionWritten: rotated,
        },
      );
    }
    // One rollout for the rotation's three events: the others found the version claimed.
    const results = cloud
      .invocations('secretChange')
      .map((record) => record.result as { status: string; reason?: string });
    expect(results.filter((r) => r.status === 'sent')).toHaveLength(2);
    expect(results.filter((r) => r.reason === 'version-already-pushed').length).toBeGreaterThan(0);
    for (const command of commandsFor('prod/db')) {
      expect(command.parameters?.SourceType).toEqual(['secret']);
      for (const invocation of command.invocations.values()) {
        expect(invocation.stdout + invocation.stderr).not.toContain('s3cr3t-for-tests');
      }
    }
    const last = commandsFor('prod/db').at(-1);
    for (const invocation of last?.invocations.values() ?? []) {
      expect(invocation.stdout.trimEnd().split('\n').at(-1)).toBe(
        `secrets-fanout result=updated revision=${rotated}`,
      );
    }
  }, 180_000);

  it('refuses a value to the functions and to another environment’s instances', async () => {
    const asFunction = new SecretsManagerClient({
      ...cloud.clientConfig('secretsmanager'),
      credentials: { accessKeyId: 'ASIA-LOCAL-secretChange', secretAccessKey: 'x' },
    });
    await expect(
      asFunction.send(new GetSecretValueCommand({ SecretId: 'prod/db' })),
    ).rejects.toMatchObject({ name: 'AccessDeniedException' });
    const asDevInstance = new SecretsManagerClient({
      ...cloud.clientConfig('secretsmanager'),
      credentials: { accessKeyId: DEV_1, secretAccessKey: 'x' },
    });
    await expect(
      asDevInstance.send(new GetSecretValueCommand({ SecretId: 'prod/db' })),
    ).rejects.toMatchObject({ name: 'AccessDeniedException' });
  });
});

describe('a file composed from a parameter path', () => {
  const names = Array.from(
    { length: 20 },
    (_, i) => `/prod/app/KEY_${String(i + 1).padStart(2, '0')}`,
  );

  it('coalesces a burst of 20 puts into one rollout and one rewrite per instance', async () => {
    // Act: a deploy puts 20 parameters at once
    for (const [index, name] of names.entries()) {
      cloud.putParameter(name, `v${index}-s3cr3t-for-tests "q" \n2nd line`);
    }
    const [rollout] = await cloud.waitFor(
      async () => {
        const list = await rolloutsOf('/prod/app/');
        return list.length > 0 ? list : undefined;
      },
      { message: 'the path rollout', timeoutMs: 90_000 },
    );
    const view = await settled(rollout.rolloutId);
    // Nothing left that could start another: every change handled, no settle check pending.
    await cloud.waitFor(
      () =>
        cloud.invocations('pathChange').length === 20 &&
        cloud.queue('PathSettleQueue').messages.length === 0,
      { message: 'the burst to close', timeoutMs: 60_000 },
    );

    // Assert
    expect(await rolloutsOf('/prod/app/')).toHaveLength(1);
    const bursts = new Set(
      cloud.invocations('pathChange').map((r) => (r.result as { burstId: string }).burstId),
    );
    expect(bursts.size).toBe(1);
    expect(view.sources).toEqual(names.map((name) => ({ name, version: '1' })));
    expect(view.counts).toMatchObject({ total: 4, success: 3, unreachable: 1, failed: 0 });
    const commands = commandsFor('/prod/app/');
    expect(commands).toHaveLength(1);
    expect(commands[0]?.instanceIds.sort()).toEqual([...PROD].sort());
    for (const invocation of commands[0]?.invocations.values() ?? []) {
      expect(invocation.stdout.trimEnd().split('\n').at(-1)).toBe(
        'secrets-fanout result=updated entries=20',
      );
    }
    for (const id of PROD) {
      const lines = cloud.fleet.get(id).readFile(PATH_FILE).toString('utf8').split('\n');
      expect(lines).toHaveLength(21);
      expect(lines[0]).toBe('KEY_01="v0-s3cr3t-for-tests \\"q\\" \\n2nd line"');
    }
  }, 180_000);

  it('drops the key of a parameter deleted from the path', async () => {
    // Act
    cloud.deleteParameter('/prod/app/KEY_20');
    const rollout = await cloud.waitFor(
      async () => {
        const list = await rolloutsOf('/prod/app/');
        return list.length === 2 ? list[0] : undefined;
      },
      { message: 'the second path rollout', timeoutMs: 90_000 },
    );
    const view = await settled(rollout.rolloutId);
    // Assert
    expect(view.sources).toHaveLength(19);
    for (const id of PROD) {
      const text = cloud.fleet.get(id).readFile(PATH_FILE).toString('utf8');
      expect(text).not.toContain('KEY_20=');
      expect(text.split('\n')).toHaveLength(20);
    }
  }, 180_000);
});

describe('a re-sync', () => {
  it('re-pushes secrets and path files like parameters (dry run)', async () => {
    // Act
    const secret = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: 'prod/db', dryRun: true },
    });
    const all = await cloud.callApi('/environments/prod/resync', { body: { dryRun: true } });
    // Assert: /prod/env.php was never put, so only it is left out of the environment's
    expect(secret.status, JSON.stringify(secret.json)).toBe(200);
    expect(secret.json.parameters).toEqual(['prod/db']);
    expect(all.status, JSON.stringify(all.json)).toBe(200);
    expect([...all.json.parameters].sort()).toEqual(['/prod/app/', 'prod/db']);
  });
});

describe('a deleted secret', () => {
  it('changes no file and alerts once', async () => {
    // Arrange
    const before = PROD.map((id) => cloud.fleet.get(id).readFile(SECRET_FILE));
    const commands = cloud.ssm.commands.size;
    const admin = new SecretsManagerClient(cloud.clientConfig('secretsmanager'));
    // Act
    await admin.send(new DeleteSecretCommand({ SecretId: 'prod/db', RecoveryWindowInDays: 7 }));
    const alert = await cloud.waitFor(
      () =>
        cloud
          .snsMessages()
          .find(
            (m) =>
              m.messageAttributes.kind?.StringValue === 'parameter-not-pushed' &&
              m.messageAttributes.parameter?.StringValue === 'prod/db',
          ),
      { message: 'the deleted-secret alert', timeoutMs: 60_000 },
    );
    // Assert
    expect(alert.subject).toContain('DeleteSecret on prod/db (prod), nothing pushed');
    expect(cloud.ssm.commands.size).toBe(commands);
    expect(PROD.map((id) => cloud.fleet.get(id).readFile(SECRET_FILE))).toEqual(before);
  });
});
