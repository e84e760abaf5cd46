import { SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { expandFiles } from '../../shared/config.ts';
import { documentParameters, rolloutComment, sendInChunks } from '../../shared/send/commands.ts';
import { instanceIds, testConfig } from '../support/fixtures.ts';

const ssmMock = mockClient(SSMClient);
const ssm = new SSMClient({});
const file = expandFiles(testConfig).find((f) => f.environment === 'prod')!;
const request = (ids: string[]) => ({
  documentName: 'ReplaceSecretsFile',
  file,
  instanceIds: ids,
  rolloutId: '20261123T161300000Z-0123abcd',
  rollout: testConfig.rollout,
  outputLogGroup: '/secrets-fanout/test/commands',
});

let sequence = 0;
afterEach(() => {
  ssmMock.reset();
  sequence = 0;
});

function ssmAccepts() {
  ssmMock
    .on(SendCommandCommand)
    .callsFake(async () => ({ Command: { CommandId: `cmd-${++sequence}` } }));
}

describe('sendInChunks', () => {
  it.each([
    [0, 0],
    [1, 1],
    [50, 1],
    [51, 2],
    [1000, 20],
  ])('sends %i instances in exactly %i SendCommand calls of ≤50 ids', async (n, calls) => {
    // Arrange
    ssmAccepts();
    const ids = instanceIds(n);
    // Act
    const result = await sendInChunks(ssm, request(ids));
    // Assert
    const sent = ssmMock.commandCalls(SendCommandCommand);
    expect(sent).toHaveLength(calls);
    expect(sent.map((c) => c.args[0].input.InstanceIds!.length).every((k) => k <= 50)).toBe(true);
    expect(sent.flatMap((c) => c.args[0].input.InstanceIds)).toEqual(ids);
    expect(result.sent.flatMap((c) => c.instanceIds)).toEqual(ids);
    expect(result.failed).toEqual([]);
  });

  it('sends the document, rate controls, output config and a comment with the rollout id', async () => {
    ssmAccepts();
    await sendInChunks(ssm, request(instanceIds(1)));
    expect(ssmMock.commandCalls(SendCommandCommand)[0]?.args[0].input).toEqual({
      DocumentName: 'ReplaceSecretsFile',
      DocumentVersion: '$LATEST',
      InstanceIds: instanceIds(1),
      Parameters: {
        ParameterName: ['/prod/env.php'],
        DestinationPath: ['/var/www/html/env.php'],
        FileOwner: ['apache'],
        FileGroup: ['apache'],
        FileMode: ['0400'],
        Format: ['raw'],
        Backups: ['3'],
      },
      Comment: 'secrets-fanout rollout 20261123T161300000Z-0123abcd attempt 1',
      MaxConcurrency: '25%',
      MaxErrors: '10%',
      TimeoutSeconds: 600,
      CloudWatchOutputConfig: {
        CloudWatchOutputEnabled: true,
        CloudWatchLogGroupName: '/secrets-fanout/test/commands',
      },
    });
  });

  it('keeps a few chunks in flight, never more than configured', async () => {
    let inFlight = 0;
    let peak = 0;
    ssmMock.on(SendCommandCommand).callsFake(async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      return { Command: { CommandId: `cmd-${++sequence}` } };
    });
    await sendInChunks(ssm, request(instanceIds(500)));
    expect(peak).toBe(testConfig.rollout.chunksInFlight);
  });

  it('reports a failed chunk with its instance ids and still sends the others', async () => {
    // Arrange: the second of three chunks is throttled beyond the SDK's retries
    const ids = instanceIds(120);
    ssmMock.on(SendCommandCommand).callsFake(async (input) => {
      if (input.InstanceIds[0] === ids[50]) {
        throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
      }
      return { Command: { CommandId: `cmd-${input.InstanceIds[0]}` } };
    });
    // Act
    const result = await sendInChunks(ssm, request(ids));
    // Assert
    expect(result.sent.map((c) => c.instanceIds)).toEqual([ids.slice(0, 50), ids.slice(100)]);
    expect(result.failed).toEqual([
      {
        parameter: '/prod/env.php',
        path: '/var/www/html/env.php',
        instanceIds: ids.slice(50, 100),
        error: { name: 'ThrottlingException', message: 'Rate exceeded' },
      },
    ]);
  });

  it('treats an answer without a CommandId as a failed chunk', async () => {
    ssmMock.on(SendCommandCommand).resolves({});
    const result = await sendInChunks(ssm, request(instanceIds(3)));
    expect(result.failed[0]?.error.name).toBe('NoCommandId');
    expect(result.sent).toEqual([]);
  });
});

describe('document parameters', () => {
  it('names the parameter and never carries a value', () => {
    const parameters = documentParameters({ ...file, reloadService: 'php-fpm' });
    expect(parameters.ParameterName).toEqual(['/prod/env.php']);
    expect(parameters.ReloadService).toEqual(['php-fpm']);
    expect(Object.keys(parameters)).not.toContain('Value');
  });

  it('leaves ReloadService out when none is configured (document default: none)', () => {
    expect(documentParameters(file)).not.toHaveProperty('ReloadService');
  });

  it('pins a version with the selector, and asks for NeverOlder only for a forward pin', () => {
    expect(documentParameters(file)).not.toHaveProperty('NeverOlder');
    const rollback = documentParameters({ ...file, version: 6 });
    expect(rollback.ParameterName).toEqual(['/prod/env.php:6']);
    expect(rollback).not.toHaveProperty('NeverOlder');
    const stage = documentParameters({ ...file, version: 7, neverOlder: true });
    expect(stage.ParameterName).toEqual(['/prod/env.php:7']);
    expect(stage.NeverOlder).toEqual(['true']);
    // Without a pin there is nothing to compare: never sent.
    expect(documentParameters({ ...file, neverOlder: true })).not.toHaveProperty('NeverOlder');
  });

  it('keeps the comment within the 100 characters SendCommand allows', () => {
    expect(rolloutComment('x'.repeat(200))).toHaveLength(100);
  });
});

describe('an instance that stops being managed between resolution and sending', () => {
  it('reports the ids SSM names as invalid and sends the rest of the chunk once more', async () => {
    // Arrange: SSM refuses a whole call that names an unmanaged instance
    const ids = instanceIds(5);
    const gone = ids[3]!;
    ssmMock.on(SendCommandCommand).callsFake(async (input) => {
      if (input.InstanceIds.includes(gone)) {
        throw Object.assign(
          new Error(`Instances [[${gone}]] not in a valid state for account 123456789012`),
          {
            name: 'InvalidInstanceId',
          },
        );
      }
      return { Command: { CommandId: 'cmd-rest' } };
    });
    // Act
    const result = await sendInChunks(ssm, request(ids));
    // Assert
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(2);
    expect(result.sent).toEqual([
      expect.objectContaining({
        commandId: 'cmd-rest',
        instanceIds: ids.filter((id) => id !== gone),
      }),
    ]);
    expect(result.failed).toEqual([
      expect.objectContaining({
        instanceIds: [gone],
        error: expect.objectContaining({ name: 'InvalidInstanceId' }),
      }),
    ]);
  });

  it('fails the chunk when SSM names none of its ids, without resending', async () => {
    ssmMock.on(SendCommandCommand).rejects(
      Object.assign(new Error('Instances [[i-ffffffffffffffff0]] not in a valid state'), {
        name: 'InvalidInstanceId',
      }),
    );
    const result = await sendInChunks(ssm, request(instanceIds(2)));
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(1);
    expect(result.failed[0]?.instanceIds).toEqual(instanceIds(2));
  });
});
