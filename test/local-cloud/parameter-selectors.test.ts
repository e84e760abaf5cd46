/**
 * The local cloud's Parameter Store answers version and label selectors as AWS does, through the
 * JS SDK over its wire protocol:
 * - GetParameter `Name: "name:version"` / `"name:label"` (or an ARN with one) returns that
 *   version: its Version and Value, `Selector` ":7", Name and ARN without the selector
 *   (API_GetParameter.html; awscli examples/ssm/get-parameter.rst, "using versions/labels");
 * - a version never created or no longer kept is ParameterVersionNotFound, HTTP 400
 *   (API_GetParameter.html, Errors); Parameter Store keeps the last 100 versions, and refuses a
 *   101st while the oldest has a label: ParameterMaxVersionLimitExceeded
 *   (sysman-paramstore-versions.html);
 * - GetParameters takes selectors too; what it cannot find comes back in InvalidParameters;
 * - the instance policy is evaluated on the parameter a selector belongs to
 *   (ps-retrieval-authorization.html: GetParameter is authorized against the requested parameter).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GetParameterCommand,
  GetParameterHistoryCommand,
  GetParametersCommand,
  LabelParameterVersionCommand,
  PutParameterCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet } from './fleet.ts';
import { ACCOUNT_ID, ADMIN_ACCESS_KEY_ID, type LocalServer, startServer } from './http.ts';
import { MAX_KEPT_VERSIONS, SsmService } from './ssm.ts';

const REGION = 'eu-west-1';
const PROD_INSTANCE = 'i-0a00000000000f001';
const DEV_INSTANCE = 'i-0b00000000000d001';
const ARN_PREFIX = `arn:aws:ssm:${REGION}:${ACCOUNT_ID}:parameter`;

/** What a rejected call answered: its error name, message and HTTP status. */
async function failure(
  call: Promise<unknown>,
): Promise<{ name: string; message: string; status?: number }> {
  try {
    await call;
  } catch (error) {
    const caught = error as Error & { $metadata?: { httpStatusCode?: number } };
    return {
      name: caught.name,
      message: caught.message,
      status: caught.$metadata?.httpStatusCode,
    };
  }
  throw new Error('the call succeeded');
}

describe('Parameter Store selectors on the local cloud', () => {
  let root: string;
  let ssm: SsmService;
  let server: LocalServer;
  const clients: SSMClient[] = [];

  /** An SDK client signing as `accessKeyId`: the admin, an instance (its id) or a function role. */
  function client(accessKeyId: string): SSMClient {
    const created = new SSMClient({
      endpoint: server.endpoint,
      region: REGION,
      credentials: { accessKeyId, secretAccessKey: 'local-cloud-test-secret' },
      maxAttempts: 1,
    });
    clients.push(created);
    return created;
  }

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'sfsel'));
    const fleet = new Fleet(root);
    fleet.add({ id: PROD_INSTANCE, tags: { Environment: 'prod' } });
    fleet.add({ id: DEV_INSTANCE, tags: { Environment: 'dev' } });
    ssm = new SsmService({
      region: REGION,
      fleet,
      environmentOf: (instance) => instance.tags.Environment,
      emit: () => undefined,
    });
    server = await startServer((request) => ssm.handle(request));
    const admin = client(ADMIN_ACCESS_KEY_ID);
    for (const value of ['one', 'two', 'three']) {
      await admin.send(
        new PutParameterCommand({
          Name: '/prod/env.php',
          Value: `${value}-s3cr3t-for-tests`,
          Type: 'SecureString',
          Overwrite: true,
        }),
      );
    }
    await admin.send(
      new PutParameterCommand({
        Name: '/dev/env.php',
        Value: 'dev-s3cr3t-for-tests',
        Type: 'SecureString',
      }),
    );
    await admin.send(
      new LabelParameterVersionCommand({
        Name: '/prod/env.php',
        ParameterVersion: 2,
        Labels: ['Production'],
      }),
    );
  });

  afterAll(async () => {
    for (const created of clients) created.destroy();
    await server?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  describe('GetParameter', () => {
    it('returns the version a "name:N" selector names, with Selector, Name and ARN without it', async () => {
      // Act
      const { Parameter } = await client(ADMIN_ACCESS_KEY_ID).send(
        new GetParameterCommand({ Name: '/prod/env.php:2', WithDecryption: true }),
      );

      // Assert
      expect(Parameter).toMatchObject({
        Name: '/prod/env.php',
        Type: 'SecureString',
        Value: 'two-s3cr3t-for-tests',
        Version: 2,
        Selector: ':2',
        ARN: `${ARN_PREFIX}/prod/env.php`,
        DataType: 'text',
      });
      expect(Parameter?.LastModifiedDate).toBeInstanceOf(Date);
    });

    it('takes the selector on an ARN too', async () => {
      const { Parameter } = await client(ADMIN_ACCESS_KEY_ID).send(
        new GetParameterCommand({ Name: `${ARN_PREFIX}/prod/env.php:1`, WithDecryption: true }),
      );

      expect(Parameter).toMatchObject({
        Name: '/prod/env.php',
        Value: 'one-s3cr3t-for-tests',
        Version: 1,
        Selector: ':1',
        ARN: `${ARN_PREFIX}/prod/env.php`,
      });
    });

    it('answers the latest without a selector, and no Selector field', async () => {
      const { Parameter } = await client(ADMIN_ACCESS_KEY_ID).send(
        new GetParameterCommand({ Name: '/prod/env.php', WithDecryption: true }),
      );

      expect(Parameter).toMatchObject({ Version: 3, Value: 'three-s3cr3t-for-tests' });
      expect(Parameter).not.toHaveProperty('Selector');
    });

    it('returns the version a label names, with the label as Selector', async () => {
      const { Parameter } = await client(ADMIN_ACCESS_KEY_ID).send(
        new GetParameterCommand({ Name: '/prod/env.php:Production', WithDecryption: true }),
      );

      expect(Parameter).toMatchObject({ Version: 2, Selector: ':Production' });
    });

    it('keeps a selected SecureString encrypted without WithDecryption', async () => {
      const { Parameter } = await client(ADMIN_ACCESS_KEY_ID).send(
        new GetParameterCommand({ Name: '/prod/env.php:1' }),
      );

      expect(Parameter?.Version).toBe(1);
      expect(Parameter?.Value).not.toContain('s3cr3t-for-tests');
    });

    it('answers ParameterVersionNotFound (400) for a version that does not exist, never the latest', async () => {
      const missing = await failure(
        client(ADMIN_ACCESS_KEY_ID).send(
          new GetParameterCommand({ Name: '/prod/env.php:4', WithDecryption: true }),
        ),
      );
      const label = await failure(
        client(ADMIN_ACCESS_KEY_ID).send(new GetParameterCommand({ Name: '/prod/env.php:Nope' })),
      );

      expect(missing).toEqual({
        name: 'ParameterVersionNotFound',
        message:
          'Systems Manager could not find version 4 of /prod/env.php. Verify the version and try again.',
        status: 400,
      });
      expect(label.name).toBe('ParameterVersionNotFound');
    });

    it('answers ParameterNotFound for a selector on a parameter that does not exist', async () => {
      const missing = await failure(
        client(ADMIN_ACCESS_KEY_ID).send(new GetParameterCommand({ Name: '/prod/nothing:1' })),
      );

      expect(missing).toMatchObject({ name: 'ParameterNotFound', status: 400 });
    });
  });

  describe('GetParameters', () => {
    it('takes selectors, sorts by name and returns what it cannot find in InvalidParameters', async () => {
      const result = await client(ADMIN_ACCESS_KEY_ID).send(
        new GetParametersCommand({
          Names: ['/prod/env.php:2', '/prod/env.php:9', '/dev/env.php:1', '/prod/nothing'],
          WithDecryption: true,
        }),
      );

      expect(
        result.Parameters?.map(({ Name, Version, Selector }) => ({ Name, Version, Selector })),
      ).toEqual([
        { Name: '/dev/env.php', Version: 1, Selector: ':1' },
        { Name: '/prod/env.php', Version: 2, Selector: ':2' },
      ]);
      expect(result.InvalidParameters).toEqual(['/prod/env.php:9', '/prod/nothing']);
    });

    it('refuses more than 10 names', async () => {
      const names = Array.from({ length: 11 }, (_, index) => `/prod/env.php:${index + 1}`);

      const refused = await failure(
        client(ADMIN_ACCESS_KEY_ID).send(new GetParametersCommand({ Names: names })),
      );

      expect(refused).toMatchObject({ name: 'ValidationException', status: 400 });
    });
  });

  describe('the instance policy', () => {
    it('lets an instance read any kept version of its own parameters', async () => {
      const prod = client(PROD_INSTANCE);

      const byName = await prod.send(
        new GetParameterCommand({ Name: '/prod/env.php:1', WithDecryption: true }),
      );
      const byArn = await prod.send(
        new GetParameterCommand({ Name: `${ARN_PREFIX}/prod/env.php:2`, WithDecryption: true }),
      );
      const many = await prod.send(
        new GetParametersCommand({ Names: ['/prod/env.php:1', '/prod/env.php'] }),
      );

      expect(byName.Parameter?.Value).toBe('one-s3cr3t-for-tests');
      expect(byArn.Parameter?.Value).toBe('two-s3cr3t-for-tests');
      expect(many.Parameters?.map((parameter) => parameter.Version).sort()).toEqual([1, 3]);
    });

    it('refuses another environment, naming the parameter without the selector', async () => {
      const prod = client(PROD_INSTANCE);

      const one = await failure(prod.send(new GetParameterCommand({ Name: '/dev/env.php:1' })));
      const many = await failure(
        prod.send(new GetParametersCommand({ Names: ['/prod/env.php:1', '/dev/env.php:1'] })),
      );

      for (const refused of [one, many]) {
        expect(refused.name).toBe('AccessDeniedException');
        expect(refused.message).toContain(`assumed-role/prod-instance-role/${PROD_INSTANCE}`);
        expect(refused.message).toContain(`on resource: ${ARN_PREFIX}/dev/env.php because`);
      }
      // A selector never smuggles another environment's name past the check.
      const smuggled = await failure(
        client(DEV_INSTANCE).send(new GetParameterCommand({ Name: '/prod/env.php:/dev/' })),
      );
      expect(smuggled.name).toBe('AccessDeniedException');
    });

    it('still lets no function role read a value, pinned or not', async () => {
      const refused = await failure(
        client('ASIA-LOCAL-propagate').send(new GetParameterCommand({ Name: '/prod/env.php:1' })),
      );

      expect(refused.name).toBe('AccessDeniedException');
      expect(refused.message).toContain(`on resource: ${ARN_PREFIX}/prod/env.php because`);
    });
  });

  describe('the history', () => {
    it(`keeps the last ${MAX_KEPT_VERSIONS} versions: the oldest is gone once the next is made`, async () => {
      // Arrange
      const admin = client(ADMIN_ACCESS_KEY_ID);
      for (let version = 1; version <= MAX_KEPT_VERSIONS + 1; version += 1) {
        await admin.send(
          new PutParameterCommand({
            Name: '/prod/long.env',
            Value: `v${version}`,
            Type: 'String',
            Overwrite: true,
          }),
        );
      }

      // Act
      const gone = await failure(admin.send(new GetParameterCommand({ Name: '/prod/long.env:1' })));
      const oldestKept = await admin.send(new GetParameterCommand({ Name: '/prod/long.env:2' }));
      const first = await admin.send(new GetParameterHistoryCommand({ Name: '/prod/long.env' }));
      const second = await admin.send(
        new GetParameterHistoryCommand({ Name: '/prod/long.env', NextToken: first.NextToken }),
      );

      // Assert
      expect(gone.name).toBe('ParameterVersionNotFound');
      expect(oldestKept.Parameter).toMatchObject({ Version: 2, Value: 'v2', Selector: ':2' });
      const versions = [...(first.Parameters ?? []), ...(second.Parameters ?? [])].map(
        (parameter) => parameter.Version,
      );
      expect(versions).toEqual(Array.from({ length: MAX_KEPT_VERSIONS }, (_, index) => index + 2));
      expect(second.NextToken).toBeUndefined();
    });

    it('refuses a new version while the oldest of 100 has a label, and changes nothing', async () => {
      // Arrange
      const admin = client(ADMIN_ACCESS_KEY_ID);
      for (let version = 1; version <= MAX_KEPT_VERSIONS; version += 1) {
        await admin.send(
          new PutParameterCommand({
            Name: '/prod/labelled.env',
            Value: `v${version}`,
            Type: 'String',
            Overwrite: true,
          }),
        );
      }
      await admin.send(
        new LabelParameterVersionCommand({
          Name: '/prod/labelled.env',
          ParameterVersion: 1,
          Labels: ['Golden'],
        }),
      );

      // Act
      const refused = await failure(
        admin.send(
          new PutParameterCommand({
            Name: '/prod/labelled.env',
            Value: 'v101',
            Type: 'String',
            Overwrite: true,
          }),
        ),
      );

      // Assert
      expect(refused).toEqual({
        name: 'ParameterMaxVersionLimitExceeded',
        message:
          "You attempted to create a new version of /prod/labelled.env by calling the PutParameter API with the overwrite flag. Version 1, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
        status: 400,
      });
      const latest = await admin.send(new GetParameterCommand({ Name: '/prod/labelled.env' }));
      const golden = await admin.send(new GetParameterCommand({ Name: '/prod/labelled.env:1' }));
      expect(latest.Parameter?.Version).toBe(MAX_KEPT_VERSIONS);
      expect(golden.Parameter?.Value).toBe('v1');
    });
  });
});
