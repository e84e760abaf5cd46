import { readdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
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
  SECRETS_FILE,
  startTestCloud,
} from './local-cloud.ts';

// Multi-line, quotes of both kinds, `$`, a backslash, a tab, a `$(...)`, and a trailing newline:
// every byte must arrive exactly as stored.
const VALUE = `<?php\n$db_password = 'p@ss"wo$rd\\n';\n$token = "$(touch /tmp/pwned)\t\`id\`";\n`;

describe('a parameter update, end to end on the local cloud', () => {
  let cloud: LocalCloud;

  beforeAll(async () => {
    cloud = await startTestCloud();
    cloud.putParameter('/prod/env.php', VALUE);
    await cloud.waitFor(() => propagateResults(cloud).length === 1, {
      message: 'propagate to finish',
    });
    await cloud.commandsSettled();
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('reaches every running, managed instance of its environment and no other', () => {
    // Arrange
    const prod = [PROD_1, PROD_2, PROD_3];
    // Assert
    for (const id of prod) expect(cloud.fleet.get(id).exists(SECRETS_FILE), id).toBe(true);
    for (const id of [DEV_1, DEV_2, PROD_UNMANAGED, PROD_STOPPED]) {
      expect(cloud.fleet.get(id).exists(SECRETS_FILE), id).toBe(false);
    }
    const [command] = [...cloud.ssm.commands.values()];
    expect([...cloud.ssm.commands.values()]).toHaveLength(1);
    expect(command?.instanceIds.sort()).toEqual(prod.sort());
    expect(
      [...(command?.invocations.values() ?? [])].map((invocation) => invocation.statusDetails),
    ).toEqual(['Success', 'Success', 'Success']);
  });

  it('writes the exact bytes, mode 0400 and the configured owner', () => {
    for (const id of [PROD_1, PROD_2, PROD_3]) {
      const instance = cloud.fleet.get(id);
      expect(instance.readFile(SECRETS_FILE).equals(Buffer.from(VALUE)), id).toBe(true);
      expect(instance.mode(SECRETS_FILE).toString(8)).toBe('400');
      expect(instance.ownerOf(SECRETS_FILE)).toEqual({ owner: 'apache', group: 'apache' });
      // The hostile value was written, never run.
      expect(readdirSync(dirname(instance.path(SECRETS_FILE)))).toEqual(['env.php']);
    }
  });

  it('reports the version it wrote on each instance, never the value', () => {
    const [command] = [...cloud.ssm.commands.values()];
    for (const invocation of command?.invocations.values() ?? []) {
      expect(invocation.stdout.trimEnd().split('\n').at(-1)).toBe(
        'secrets-fanout result=updated version=1',
      );
      expect(invocation.stdout + invocation.stderr).not.toContain('p@ss');
    }
  });

  it('reports the unmanaged instance as unreachable, in the summary and the logs', () => {
    const [result] = propagateResults(cloud);
    expect(result.status).toBe('sent');
    expect(result.rollout).toMatchObject({
      environment: 'prod',
      parameters: ['/prod/env.php'],
      version: 1,
      targeted: 3,
      unreachable: [{ instanceId: PROD_UNMANAGED, reason: 'NotManagedBySSM' }],
    });
    const logs = cloud.invocations('propagate')[0]?.logs.join('') ?? '';
    expect(logs).toContain(PROD_UNMANAGED);
    expect(logs).toContain('NotManagedBySSM');
    expect(logs).not.toContain('p@ss');
  });

  it('sends once for a duplicate delivery of the same event', async () => {
    // Arrange: EventBridge delivers at least once; replay the exact event.
    const event = cloud
      .events()
      .find((candidate) => candidate['detail-type'] === 'Parameter Store Change');
    const commandsBefore = cloud.ssm.commands.size;
    // Act
    cloud.bus.putEvent(structuredClone(event!));
    await cloud.waitFor(() => cloud.invocations('propagate').length === 2, {
      message: 'the duplicate to be handled',
    });
    // Assert
    const second = cloud.invocations('propagate')[1];
    expect(second?.error).toBeUndefined();
    expect(second?.result).toEqual(propagateResults(cloud)[0]);
    expect(cloud.ssm.commands.size).toBe(commandsBefore);
  });

  it('rewrites nothing when the next event finds the content unchanged', async () => {
    // Arrange
    const before = statSync(cloud.fleet.get(PROD_1).path(SECRETS_FILE));
    // Act: the same value again is a new version with identical bytes.
    cloud.putParameter('/prod/env.php', VALUE);
    await cloud.waitFor(() => propagateResults(cloud).length === 3, {
      message: 'the second rollout',
    });
    await cloud.commandsSettled();
    // Assert
    const after = statSync(cloud.fleet.get(PROD_1).path(SECRETS_FILE));
    expect(after.ino).toBe(before.ino);
    const latest = [...cloud.ssm.commands.values()].at(-1);
    for (const invocation of latest?.invocations.values() ?? []) {
      expect(invocation.stdout.trimEnd().split('\n').at(-1)).toBe(
        'secrets-fanout result=unchanged version=2',
      );
    }
  });
});
