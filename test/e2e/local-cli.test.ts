import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { describeCloud, writeConsoleInfo } from '../local-cloud/console.ts';
import { signedFetch } from '../local-cloud/sigv4.ts';
import { repoRoot } from '../support/package.ts';
import {
  alertsOf,
  PROD_1,
  PROD_2,
  PROD_UNMANAGED,
  rolloutOfChange,
  SECRETS_FILE,
  settledView,
  startTestCloud,
} from './local-cloud.ts';

const CLI = join(repoRoot, 'test', 'local-cloud', 'cli.ts');
const SECRET_V1 = 'DB_PASSWORD=s3cr3t-for-tests\n';
const SECRET_V2 = 'DB_PASSWORD=s3cr3t-for-tests-2\n';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `npm run local -- <args>` against the test's cloud, as a child process (asynchronously: the
 * cloud answers from this process). `shell` runs a sh command line with `$CLI` standing for it.
 */
describe('npm run local -- env / invoke / info / status, end to end on the local cloud', () => {
  let cloud: LocalCloud;
  let dir: string;
  let infoFile: string;
  let rolloutV1: string;
  let rolloutV2: string;
  const outputs: string[] = [];

  const run = (file: string, args: string[], env: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        file,
        args,
        {
          cwd: repoRoot,
          env: { ...process.env, LOCAL_CLOUD_INFO: infoFile, CLI, NODE: process.execPath, ...env },
          maxBuffer: 1 << 24,
        },
        (error, stdout, stderr) => {
          outputs.push(stdout, stderr);
          resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
        },
      );
    });
  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args]);
  const shell = (line: string, env: Record<string, string> = {}) =>
    run('/bin/sh', ['-c', line], env);

  beforeAll(async () => {
    cloud = await startTestCloud();
    dir = mkdtempSync(join(tmpdir(), 'local-cli-'));
    infoFile = join(dir, 'endpoints.json');
    writeConsoleInfo(infoFile, describeCloud(cloud));
    cloud.putParameter('/prod/env.php', SECRET_V1);
    rolloutV1 = await rolloutOfChange(cloud, 0);
    await settledView(cloud, rolloutV1);
    // PROD_2 cannot fetch on any attempt: v2 reaches the others, PROD_2 keeps v1 on disk.
    cloud.fleet.setFaults(PROD_2, { fetchFailures: 3 });
    cloud.putParameter('/prod/env.php', SECRET_V2);
    rolloutV2 = await rolloutOfChange(cloud, 1);
    await settledView(cloud, rolloutV2);
  });

  afterAll(async () => {
    await cloud?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('info lists the document, queues, topic, tables, functions, API URL and credentials', async () => {
    const { code, stdout } = await cli('info');
    expect(code).toBe(0);
    expect(stdout).toContain(cloud.documentName);
    for (const [logicalId] of cloud.stack.resources('AWS::SQS::Queue'))
      expect(stdout).toContain(cloud.queue(logicalId).url);
    for (const [logicalId] of cloud.stack.resources('AWS::SNS::Topic'))
      expect(stdout).toContain(cloud.stack.ref(logicalId));
    for (const [logicalId] of cloud.stack.resources('AWS::DynamoDB::Table'))
      expect(stdout).toContain(cloud.stack.physicalName(logicalId));
    expect(stdout).toContain(cloud.fn('status').name);
    expect(stdout).toContain(cloud.endpoints.api);
    expect(stdout).toContain(`AWS_SECRET_ACCESS_KEY=${cloud.clientEnv.AWS_SECRET_ACCESS_KEY}`);
  });

  it('env exports credentials that sign the HTTP API and per-service endpoints', async () => {
    const { code, stdout } = await cli('env');
    expect(code).toBe(0);
    // What `eval "$(npm run -s local -- env)"` leaves in the shell.
    const exported = await run('/bin/sh', ['-c', 'eval "$1" && env', 'sh', stdout]);
    const env = Object.fromEntries(
      exported.stdout
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    expect(env).toMatchObject({
      AWS_REGION: cloud.region,
      AWS_DEFAULT_REGION: cloud.region,
      AWS_ENDPOINT_URL_SSM: cloud.endpoints.ssm,
      AWS_ENDPOINT_URL_EC2: cloud.endpoints.ec2,
      AWS_ENDPOINT_URL_SQS: cloud.endpoints.sqs,
      AWS_ENDPOINT_URL_SNS: cloud.endpoints.sns,
      AWS_ENDPOINT_URL_DYNAMODB: cloud.endpoints.dynamodb,
      AWS_ENDPOINT_URL_AUTO_SCALING: cloud.endpoints.autoscaling,
      AWS_ENDPOINT_URL_LAMBDA: cloud.endpoints.lambda,
    });
    // The exported keys are the ones the SigV4-checking HTTP API accepts.
    const response = await signedFetch(
      `${cloud.endpoints.api}/environments/prod/rollouts/${rolloutV1}`,
      {
        credentials: {
          accessKeyId: env.AWS_ACCESS_KEY_ID ?? '',
          secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? '',
        },
        region: env.AWS_REGION ?? '',
      },
    );
    expect(response.status).toBe(200);
    // For CLIs before 2.13: every runbook command carries its service's --endpoint-url.
    const commands = stdout
      .split('\n')
      .map((line) => /^#\s+(aws \S+ .*)$/.exec(line)?.[1])
      .filter((line): line is string => line !== undefined);
    expect(commands.length).toBeGreaterThan(8);
    const endpointOf: Record<string, string> = {
      ssm: cloud.endpoints.ssm,
      ec2: cloud.endpoints.ec2,
      sqs: cloud.endpoints.sqs,
      sns: cloud.endpoints.sns,
      dynamodb: cloud.endpoints.dynamodb,
      autoscaling: cloud.endpoints.autoscaling,
      lambda: cloud.endpoints.lambda,
    };
    for (const command of commands) {
      const service = command.split(' ')[1] ?? '';
      expect(command, command).toContain(`--endpoint-url ${endpointOf[service]}`);
    }
    expect(commands.some((command) => command.includes(cloud.documentName))).toBe(true);
  });

  it('invoke runs the commands an alert prints, with npm run local -- invoke in place of npx serverless invoke', async () => {
    const [alert] = alertsOf(cloud, rolloutV1);
    expect(alert?.message).toContain('npx serverless invoke -f status');
    const printed = (alert?.message ?? '')
      .split('\n')
      .map((line) => line.trim())
      .find((line) => line.startsWith('npx serverless invoke -f status'));
    expect(printed).toBeDefined();
    const local = (printed ?? '').replace('npx serverless invoke', '"$NODE" "$CLI" invoke');
    const { code, stdout, stderr } = await shell(local);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    // As serverless prints it: the JSON of what the function returned, 4-space indented.
    const direct = await cloud.fn('status').invoke({ rolloutId: rolloutV1 });
    expect(stdout).toBe(`${JSON.stringify(direct.result, null, 4)}\n`);
    expect(stdout).toContain(rolloutV1);
    // The function-first form too, and a dry-run resync's answer.
    const dryRun = await cli(
      'invoke',
      'resync',
      '--data',
      JSON.stringify({ environment: 'prod', dryRun: true }),
    );
    expect(dryRun.code).toBe(0);
    expect(JSON.parse(dryRun.stdout)).toMatchObject({ dryRun: true, environment: 'prod' });
  });

  it('with the env exports, the serverless invoke an alert prints works as printed', async () => {
    const printed = (alertsOf(cloud, rolloutV1)[0]?.message ?? '')
      .split('\n')
      .map((line) => line.trim())
      .find((line) => line.startsWith('npx serverless invoke -f status'));
    expect(printed).toBeDefined();
    const line = `eval "$("$NODE" "$CLI" env)" && ${(printed ?? '').replace('npx serverless', join(repoRoot, 'node_modules', '.bin', 'serverless'))}`;
    const { code, stdout } = await shell(line, { SLS_TELEMETRY_DISABLED: '1' });
    expect(code).toBe(0);
    const direct = await cloud.fn('status').invoke({ rolloutId: rolloutV1 });
    expect(JSON.parse(stdout)).toEqual(direct.result);
  });

  it('invoke refuses an unknown function or another stage, and fails when the function fails', async () => {
    const unknown = await cli('invoke', 'nope', '--data', '{}');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('Function "nope" doesn\'t exist');
    const stage = await cli('invoke', '-f', 'status', '--stage', 'prod-nope', '--data', '{}');
    expect(stage.code).toBe(1);
    expect(stage.stderr).toContain('--stage');
    // propagate given something that is not an EventBridge event throws: serverless's message.
    const failed = await cli('invoke', 'propagate', '--data', '"not an event"');
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('Invoked function failed');
    expect(JSON.parse(failed.stdout)).toHaveProperty('errorType');
  });

  it("status shows each instance's file: path, version written, owner, mode, size, mtime", async () => {
    const { code, stdout } = await cli('status');
    expect(code).toBe(0);
    const fileLine = (instanceId: string) => {
      const lines = stdout.split('\n');
      const at = lines.findIndex((line) => line.startsWith(instanceId));
      expect(at, `${instanceId} in\n${stdout}`).toBeGreaterThanOrEqual(0);
      return lines[at + 1] ?? '';
    };
    const expectFile = (instanceId: string, version: number, content: string) => {
      const line = fileLine(instanceId);
      const stat = statSync(cloud.fleet.get(instanceId).path(SECRETS_FILE));
      expect(line.trim().split(/\s+/).slice(0, 6)).toEqual([
        SECRETS_FILE,
        `v${version}`,
        'apache:apache',
        '0400',
        String(Buffer.byteLength(content)),
        'B',
      ]);
      expect(line).toContain(new Date(stat.mtimeMs).toISOString());
      expect(line).toContain('parameter /prod/env.php');
    };
    expectFile(PROD_1, 2, SECRET_V2);
    // The failed v2 left PROD_2's file as v1 wrote it; the latest run's failure is named.
    expectFile(PROD_2, 1, SECRET_V1);
    expect(fileLine(PROD_2)).toMatch(/latest run Failed \(fetch-failed/);
    expect(fileLine(PROD_1)).toContain('backup');
    expect(stdout).toMatch(new RegExp(`${PROD_UNMANAGED}.*no command yet`));
  });

  it('resync and rollouts find the environment route of a parameter by themselves', async () => {
    // Act
    const dryRun = await cli('resync', '/prod/env.php', '--dry-run');
    const list = await cli('rollouts', '/prod/env.php', '5');

    // Assert: answered by the per-environment routes (the HTTP status is printed first)
    expect(dryRun.code).toBe(0);
    expect(dryRun.stdout).toMatch(/^HTTP 200\n/);
    expect(dryRun.stdout).toContain('"environment": "prod"');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^HTTP 200\n/);
    expect(list.stdout).toContain(rolloutV1);
  });

  it('never prints a secret value', () => {
    expect(outputs.length).toBeGreaterThan(0);
    for (const output of outputs) expect(output).not.toContain('s3cr3t-for-tests');
  });
});
