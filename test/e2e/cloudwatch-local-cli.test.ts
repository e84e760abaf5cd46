/**
 * `npm run local -- alarm <name> <state> [--reason text]` and `npm run local -- alarms` against
 * a test cloud, as a child process reading the endpoints file `npm start` writes. SetAlarmState
 * refuses an alarm CloudWatch does not have (ResourceNotFound,
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html), so
 * `alarm` creates a missing one first with PutMetricAlarm (new alarms start INSUFFICIENT_DATA,
 * API_PutMetricAlarm.html) and says so.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { describeCloud, writeConsoleInfo } from '../local-cloud/console.ts';
import { repoRoot } from '../support/package.ts';
import { startTestCloud } from './local-cloud.ts';

const CLI = join(repoRoot, 'test', 'local-cloud', 'cli.ts');

describe('npm run local -- alarm / alarms', () => {
  let cloud: LocalCloud;
  let dir: string;
  let infoFile: string;

  const cli = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [CLI, ...args],
        { cwd: repoRoot, env: { ...process.env, LOCAL_CLOUD_INFO: infoFile } },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
      );
    });

  beforeAll(async () => {
    cloud = await startTestCloud();
    dir = mkdtempSync(join(tmpdir(), 'cloudwatch-cli-'));
    infoFile = join(dir, 'endpoints.json');
    writeConsoleInfo(infoFile, describeCloud(cloud));
  });

  afterAll(async () => {
    await cloud?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes the CloudWatch endpoint into endpoints.json and exports it in env', async () => {
    // Act
    const { code, stdout } = await cli('env');

    // Assert
    expect(describeCloud(cloud).endpoints.cloudwatch).toBe(cloud.endpoints.cloudwatch);
    expect(code).toBe(0);
    expect(stdout).toContain(`export AWS_ENDPOINT_URL_CLOUDWATCH=${cloud.endpoints.cloudwatch}`);
  });

  it('creates a missing alarm, says so, and sets its state', async () => {
    // Act
    const result = await cli('alarm', 'stage-gate', 'ALARM', '--reason', 'canary errors');

    // Assert
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('stage-gate did not exist: created it with PutMetricAlarm');
    expect(result.stdout).toContain('stage-gate: INSUFFICIENT_DATA -> ALARM (canary errors)');
    expect(cloud.cloudwatch.alarms.get('stage-gate')).toMatchObject({
      StateValue: 'ALARM',
      StateReason: 'canary errors',
    });
  });

  it('sets an existing alarm without creating it again', async () => {
    // Arrange
    cloud.createAlarm('stage-gate-2');

    // Act
    const result = await cli('alarm', 'stage-gate-2', 'OK');

    // Assert
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toContain('did not exist');
    expect(result.stdout).toContain('stage-gate-2: INSUFFICIENT_DATA -> OK');
    expect(cloud.cloudwatch.stateOf('stage-gate-2')).toBe('OK');
  });

  it('refuses a state CloudWatch does not have, changing nothing', async () => {
    // Act
    const result = await cli('alarm', 'stage-gate-3', 'RED');

    // Assert
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(
      'usage: npm run local -- alarm <name> <OK|ALARM|INSUFFICIENT_DATA>',
    );
    expect(cloud.cloudwatch.alarms.has('stage-gate-3')).toBe(false);
  });

  it('lists every alarm with its state and reason, the template’s among them', async () => {
    // Arrange
    cloud.createAlarm('listed-alarm');
    cloud.setAlarmState('listed-alarm', 'ALARM', 'listed for the test');
    const templateAlarms = cloud.stack
      .resources('AWS::CloudWatch::Alarm')
      .map(([logicalId]) => cloud.stack.physicalName(logicalId));

    // Act
    const result = await cli('alarms');

    // Assert
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(cloud.cloudwatch.alarms.size);
    const listed = lines.find((line) => line.startsWith('listed-alarm'));
    expect(listed).toMatch(/^listed-alarm\s+ALARM\s+\d{4}-\d\d-\d\dT\S+Z\s+listed for the test$/);
    for (const name of templateAlarms)
      expect(
        lines.some((line) => line.startsWith(name) && line.includes('INSUFFICIENT_DATA')),
      ).toBe(true);
  });
});
