/**
 * Independent clients read back what the handlers wrote: the AWS SDK's own paginators, the
 * plain Get/Describe calls, and — when the machine has it — the real AWS CLI, pointed at the
 * local endpoints with --endpoint-url.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { EC2Client, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import {
  DescribeParametersCommand,
  GetCommandInvocationCommand,
  paginateDescribeInstanceInformation,
  paginateListCommandInvocations,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import {
  DEV_1,
  DEV_2,
  PROD_1,
  PROD_2,
  PROD_3,
  PROD_STOPPED,
  PROD_UNMANAGED,
  propagateResults,
  startTestCloud,
  testFleet,
} from './local-cloud.ts';

const run = promisify(execFile);

/** The AWS CLI on this machine, if there is a working one. */
async function findAwsCli(): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await run('aws', ['--version'], { timeout: 20_000 });
    return /aws-cli\/\d/.test(stdout + stderr) ? 'aws' : undefined;
  } catch {
    return undefined;
  }
}

describe('what the handlers wrote, read by independent clients', () => {
  let cloud: LocalCloud;
  let ssm: SSMClient;
  let ec2: EC2Client;
  let commandId: string;

  beforeAll(async () => {
    cloud = await startTestCloud();
    ssm = new SSMClient(cloud.clientConfig('ssm'));
    ec2 = new EC2Client(cloud.clientConfig('ec2'));
    cloud.putParameter('/prod/env.php', 'DB_PASSWORD=conformance\n');
    await cloud.waitFor(() => propagateResults(cloud).length === 1, { message: 'propagate' });
    await cloud.commandsSettled();
    commandId = propagateResults(cloud)[0].rollout.commandIds[0];
  });

  afterAll(async () => {
    ssm?.destroy();
    ec2?.destroy();
    await cloud?.stop();
  });

  it('paginateDescribeInstances pages through every instance with its tags and state', async () => {
    const seen = new Map<string, { state?: string; env?: string }>();
    let pages = 0;
    for await (const page of paginateDescribeInstances(
      { client: ec2, pageSize: 5 },
      { MaxResults: 5 },
    )) {
      pages += 1;
      for (const instance of (page.Reservations ?? []).flatMap(
        (reservation) => reservation.Instances ?? [],
      )) {
        seen.set(instance.InstanceId ?? '', {
          state: instance.State?.Name,
          env: instance.Tags?.find((tag) => tag.Key === 'Environment')?.Value,
        });
      }
    }
    expect(pages).toBe(2);
    expect([...seen.keys()].sort()).toEqual(
      testFleet()
        .map((spec) => spec.id)
        .sort(),
    );
    expect(seen.get(PROD_STOPPED)).toEqual({ state: 'stopped', env: 'prod' });
    expect(seen.get(DEV_1)).toEqual({ state: 'running', env: 'dev' });
  });

  it('paginateDescribeInstanceInformation lists the managed, not stopped instances, 5 a page', async () => {
    const ids: string[] = [];
    let pages = 0;
    for await (const page of paginateDescribeInstanceInformation(
      { client: ssm, pageSize: 5 },
      {},
    )) {
      pages += 1;
      for (const info of page.InstanceInformationList ?? []) {
        expect(info.PingStatus).toBe('Online');
        ids.push(info.InstanceId ?? '');
      }
    }
    expect(pages).toBe(1);
    expect(ids.sort()).toEqual([PROD_1, PROD_2, PROD_3, DEV_1, DEV_2].sort());
    expect(ids).not.toContain(PROD_UNMANAGED);
  });

  it('paginateListCommandInvocations returns one invocation per targeted instance, with output', async () => {
    const invocations = [];
    for await (const page of paginateListCommandInvocations(
      { client: ssm, pageSize: 1 },
      { CommandId: commandId, Details: true },
    )) {
      expect(page.CommandInvocations?.length).toBeLessThanOrEqual(1);
      invocations.push(...(page.CommandInvocations ?? []));
    }
    expect(invocations.map((invocation) => invocation.InstanceId).sort()).toEqual(
      [PROD_1, PROD_2, PROD_3].sort(),
    );
    for (const invocation of invocations) {
      expect(invocation).toMatchObject({
        Status: 'Success',
        StatusDetails: 'Success',
        DocumentName: cloud.documentName,
      });
      expect(invocation.Comment).toMatch(/^secrets-fanout rollout /);
      const [plugin] = invocation.CommandPlugins ?? [];
      expect(plugin).toMatchObject({
        Name: 'replaceSecretsFile',
        ResponseCode: 0,
        Status: 'Success',
      });
      expect(plugin?.Output).toContain('secrets-fanout result=updated version=1');
      expect(plugin?.Output).not.toContain('conformance');
    }
  });

  it('GetCommandInvocation and DescribeParameters agree with the handler', async () => {
    const invocation = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: PROD_2 }),
    );
    expect(invocation).toMatchObject({
      Status: 'Success',
      ResponseCode: 0,
      PluginName: 'replaceSecretsFile',
      StandardErrorContent: '',
    });
    expect(invocation.StandardOutputContent?.trimEnd().split('\n').at(-1)).toBe(
      'secrets-fanout result=updated version=1',
    );
    const { Parameters } = await ssm.send(
      new DescribeParametersCommand({
        ParameterFilters: [{ Key: 'Name', Option: 'Equals', Values: ['/prod/env.php'] }],
      }),
    );
    expect(Parameters).toEqual([
      expect.objectContaining({ Name: '/prod/env.php', Type: 'SecureString', Version: 1 }),
    ]);
    expect(JSON.stringify(Parameters)).not.toContain('conformance');
  });

  it('the AWS CLI, when installed, reads the same through --endpoint-url', async () => {
    const aws = await findAwsCli();
    if (aws === undefined) return; // no CLI here: the SDK assertions above stand alone
    const cli = async (args: string[], env: Record<string, string> = cloud.clientEnv) =>
      JSON.parse(
        (
          await run(aws, [...args, '--output', 'json'], {
            env: { ...process.env, ...env, AWS_PAGER: '' },
            timeout: 60_000,
          })
        ).stdout,
      );
    const invocations = await cli([
      'ssm',
      'list-command-invocations',
      '--command-id',
      commandId,
      '--details',
      '--endpoint-url',
      cloud.endpoints.ssm,
    ]);
    expect(
      invocations.CommandInvocations.map((invocation: any) => invocation.InstanceId).sort(),
    ).toEqual([PROD_1, PROD_2, PROD_3].sort());
    const instances = await cli([
      'ec2',
      'describe-instances',
      '--filters',
      'Name=tag:Environment,Values=prod',
      'Name=instance-state-name,Values=running',
      '--endpoint-url',
      cloud.endpoints.ec2,
    ]);
    const ids = instances.Reservations.flatMap((reservation: any) =>
      reservation.Instances.map((instance: any) => instance.InstanceId),
    );
    expect(ids.sort()).toEqual([PROD_1, PROD_2, PROD_3, PROD_UNMANAGED].sort());
    // The instance's `aws` prints what the real CLI prints for the document's call.
    const call = [
      'ssm',
      'get-parameter',
      '--name',
      '/prod/env.php',
      '--with-decryption',
      '--query',
      'Parameter.[Version,Value]',
      '--output',
      'text',
      '--endpoint-url',
      cloud.endpoints.ssm,
    ];
    const asInstance = { ...cloud.clientEnv, AWS_ACCESS_KEY_ID: PROD_1, AWS_PAGER: '' };
    const real = await run(aws, call, { env: { ...process.env, ...asInstance } });
    const shim = await run(`${cloud.fleet.bin}/aws`, call, {
      env: { ...process.env, ...asInstance },
    });
    expect(shim.stdout).toBe(real.stdout);
  });
});
