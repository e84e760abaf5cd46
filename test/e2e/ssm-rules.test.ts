import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { GetParameterCommand, SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { DEV_1, PROD_1, PROD_UNMANAGED, startTestCloud } from './local-cloud.ts';

const run = promisify(execFile);

/** What SSM says to a SendCommand, as the SDK reports it. */
async function rejection(promise: Promise<unknown>): Promise<{ name: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return { name: (error as Error).name, message: (error as Error).message };
  }
  throw new Error('expected SSM to reject the call');
}

describe('SSM on the local cloud refuses what AWS refuses', () => {
  let cloud: LocalCloud;
  let ssm: SSMClient;
  const valid = { ParameterName: ['/prod/env.php'], DestinationPath: ['/var/www/html/env.php'] };

  beforeAll(async () => {
    cloud = await startTestCloud();
    ssm = new SSMClient({ ...cloud.clientConfig('ssm'), maxAttempts: 1 });
  });

  afterAll(async () => {
    ssm?.destroy();
    await cloud?.stop();
  });

  const send = (input: Partial<ConstructorParameters<typeof SendCommandCommand>[0]>) =>
    ssm.send(
      new SendCommandCommand({
        DocumentName: cloud.documentName,
        InstanceIds: [PROD_1],
        Parameters: valid,
        ...input,
      }),
    );

  it.each([
    [
      'a path with a .. segment',
      { DestinationPath: ['/var/www/../../etc/passwd'] },
      'DestinationPath',
    ],
    ['a command substitution in the name', { ParameterName: ['/prod/$(reboot)'] }, 'ParameterName'],
    ['a shell metacharacter in the owner', { FileOwner: ['root;id'] }, 'FileOwner'],
    ['a mode with setuid', { FileMode: ['4755'] }, 'FileMode'],
    ['a format outside allowedValues', { Format: ['yaml'] }, 'Format'],
    ['a parameter the document does not declare', { Command: ['id'] }, 'Command'],
  ])('rejects %s with InvalidParameters and sends nothing', async (_, override, parameter) => {
    const error = await rejection(send({ Parameters: { ...valid, ...override } }));
    expect(error.name).toBe('InvalidParameters');
    expect(error.message).toContain(parameter);
    expect(cloud.ssm.commands.size).toBe(0);
  });

  it('rejects a missing required parameter', async () => {
    const error = await rejection(
      send({ Parameters: { DestinationPath: ['/var/www/html/env.php'] } }),
    );
    expect(error).toMatchObject({ name: 'InvalidParameters' });
    expect(error.message).toContain('ParameterName');
  });

  it('rejects more than 50 instance ids, bad rate controls and an unknown document', async () => {
    const ids = Array.from({ length: 51 }, (_, i) => `i-${(i + 1).toString(16).padStart(17, '0')}`);
    expect(await rejection(send({ InstanceIds: ids }))).toMatchObject({
      name: 'ValidationException',
    });
    expect(await rejection(send({ MaxConcurrency: '0' }))).toMatchObject({
      name: 'ValidationException',
    });
    expect(await rejection(send({ MaxErrors: '101%' }))).toMatchObject({
      name: 'ValidationException',
    });
    expect(await rejection(send({ TimeoutSeconds: 10 }))).toMatchObject({
      name: 'ValidationException',
    });
    expect(await rejection(send({ Comment: 'x'.repeat(101) }))).toMatchObject({
      name: 'ValidationException',
    });
    expect(await rejection(send({ DocumentName: 'NoSuchDocument' }))).toMatchObject({
      name: 'InvalidDocument',
    });
    expect(cloud.ssm.commands.size).toBe(0);
  });

  it('rejects the whole call for an instance SSM does not manage, naming it', async () => {
    const error = await rejection(send({ InstanceIds: [PROD_1, PROD_UNMANAGED] }));
    expect(error.name).toBe('InvalidInstanceId');
    expect(error.message).toBe(
      `Instances [[${PROD_UNMANAGED}]] not in a valid state for account 123456789012`,
    );
  });

  it('lets no function read a value, and an instance only its own environment', async () => {
    // Arrange
    cloud.putParameter('/prod/env.php', 'DB_PASSWORD=prod\n');
    cloud.putParameter('/dev/env.php', 'DB_PASSWORD=dev\n');
    const asFunction = new SSMClient({
      endpoint: cloud.endpoints.ssm,
      region: cloud.region,
      credentials: {
        accessKeyId: 'ASIA-LOCAL-secrets-fanout-test-propagate',
        secretAccessKey: 'x',
      },
      maxAttempts: 1,
    });
    const aws = `${cloud.fleet.bin}/aws`;
    const asInstance = (id: string, name: string) =>
      run(
        aws,
        [
          'ssm',
          'get-parameter',
          '--name',
          name,
          '--with-decryption',
          '--query',
          'Parameter.[Version,Value]',
          '--output',
          'text',
        ],
        {
          env: {
            PATH: '/usr/bin:/bin',
            AWS_ACCESS_KEY_ID: id,
            AWS_SECRET_ACCESS_KEY: 'x',
            AWS_ENDPOINT_URL_SSM: cloud.endpoints.ssm,
            AWS_DEFAULT_REGION: cloud.region,
          },
        },
      ).then(
        ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
        (error: { code: number; stdout: string; stderr: string }) => ({
          code: error.code,
          stdout: error.stdout,
          stderr: error.stderr,
        }),
      );
    try {
      // Act / Assert
      const denied = await rejection(
        asFunction.send(new GetParameterCommand({ Name: '/prod/env.php', WithDecryption: true })),
      );
      expect(denied.name).toBe('AccessDeniedException');
      expect(await asInstance(PROD_1, '/prod/env.php')).toEqual({
        code: 0,
        stdout: '1\tDB_PASSWORD=prod\n\n',
        stderr: '',
      });
      const other = await asInstance(PROD_1, '/dev/env.php');
      expect(other.code).toBe(254);
      expect(other.stdout).toBe('');
      expect(other.stderr).toMatch(
        /^\nAn error occurred \(AccessDeniedException\) when calling the GetParameter operation: User: .*prod-instance-role\/i-0a00000000000f001 is not authorized to perform: ssm:GetParameter on resource: arn:aws:ssm:eu-west-1:123456789012:parameter\/dev\/env.php/,
      );
      expect((await asInstance(DEV_1, '/dev/env.php')).stdout).toBe('1\tDB_PASSWORD=dev\n\n');
      const missing = await asInstance(DEV_1, '/dev/nothing');
      expect(missing).toEqual({
        code: 254,
        stdout: '',
        stderr:
          '\nAn error occurred (ParameterNotFound) when calling the GetParameter operation: \n',
      });
    } finally {
      asFunction.destroy();
    }
  });
});
