/**
 * Issue 11 item 5 and item 7's direct anchor, on the local cloud:
 * - Parameter Store's throughput quota: GetParameter, GetParameters and GetParametersByPath
 *   share one token bucket on the simulated clock and answer as AWS does when it is empty —
 *   HTTP 400, JSON error `ThrottlingException`, message "Rate exceeded"
 *   (https://docs.aws.amazon.com/general/latest/gr/ssm.html; API_GetParameter.html: "If you
 *   experience ThrottlingException: Rate exceeded errors, enable higher throughput"), which the
 *   SDK classifies as throttling (so its retry strategies back off).
 * - SendCommand with Targets (tag:<key> or InstanceIds, never with InstanceIds), and an
 *   EventBridge rule whose target is Run Command (RunCommandParameters.RunCommandTargets).
 */
import {
  GetParameterCommand,
  GetParametersByPathCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { isThrottlingError } from '@smithy/service-error-classification';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROD_1, PROD_2, PROD_3, PROD_STOPPED, startTestCloud } from '../e2e/local-cloud.ts';
import type { LocalCloud } from './cloud.ts';
import { ParameterThroughput } from './ssm.ts';

const PARAMETERS = {
  ParameterName: ['/prod/anchor.env'],
  DestinationPath: ['/etc/app/anchor.env'],
  FileOwner: ['root'],
  FileGroup: ['root'],
  FileMode: ['0400'],
  Format: ['raw'],
  Backups: ['1'],
};

describe('the throughput token bucket', () => {
  it('admits a burst, then tps calls per simulated second', () => {
    // Arrange
    let now = 1_000_000;
    const bucket = new ParameterThroughput(40, 40, () => now);

    // Act
    const burst = Array.from({ length: 41 }, () => bucket.take());
    now += 500; // half a second: 20 tokens
    const afterHalfSecond = Array.from({ length: 21 }, () => bucket.take());
    now += 60_000; // a minute idle saves at most the burst
    const afterIdle = Array.from({ length: 41 }, () => bucket.take());

    // Assert
    expect(burst.filter(Boolean)).toHaveLength(40);
    expect(burst.at(-1)).toBe(false);
    expect(afterHalfSecond.filter(Boolean)).toHaveLength(20);
    expect(afterIdle.filter(Boolean)).toHaveLength(40);
  });

  it('refuses a rate of zero or a burst below one', () => {
    expect(() => new ParameterThroughput(0, 1, () => 0)).toThrow(RangeError);
    expect(() => new ParameterThroughput(1, 0.5, () => 0)).toThrow(RangeError);
  });
});

describe('Parameter Store throttling and Run Command targets on the local cloud', () => {
  let cloud: LocalCloud;
  let ssm: SSMClient;

  beforeAll(async () => {
    cloud = await startTestCloud();
    // One attempt: the test sees the service's answer, not the SDK's retries.
    ssm = new SSMClient({ ...cloud.clientConfig('ssm'), maxAttempts: 1 });
    cloud.putParameter('/prod/anchor.env', 's3cr3t-for-tests-anchor');
  });

  afterAll(async () => {
    ssm?.destroy();
    await cloud?.stop();
  });

  it('answers ThrottlingException "Rate exceeded" (HTTP 400) once the shared bucket is empty', async () => {
    // Arrange: two tokens, refilled so slowly that none comes back during the test.
    cloud.ssm.throttleParameterReads(0.000_01, 2);
    const before = { ...cloud.ssm.parameterReads };
    try {
      // Act
      await ssm.send(new GetParameterCommand({ Name: '/prod/anchor.env' }));
      await ssm.send(new GetParametersByPathCommand({ Path: '/prod' }));
      const error = await ssm
        .send(new GetParameterCommand({ Name: '/prod/anchor.env', WithDecryption: true }))
        .then(
          () => undefined,
          (caught: unknown) => caught as Error & { $metadata: { httpStatusCode?: number } },
        );

      // Assert
      expect(error?.name).toBe('ThrottlingException');
      expect(error?.message).toBe('Rate exceeded');
      expect(error?.$metadata.httpStatusCode).toBe(400);
      expect(isThrottlingError(error as never)).toBe(true);
      expect(cloud.ssm.parameterReads.accepted - before.accepted).toBe(2);
      expect(cloud.ssm.parameterReads.throttled - before.throttled).toBe(1);
    } finally {
      cloud.ssm.throttleParameterReads(undefined);
    }
  });

  it('sends to the managed instances a tag target selects, echoing Targets', async () => {
    // Act
    const { Command } = await ssm.send(
      new SendCommandCommand({
        DocumentName: cloud.documentName,
        Targets: [{ Key: 'tag:Environment', Values: ['prod'] }],
        Parameters: PARAMETERS,
      }),
    );

    // Assert: the unmanaged prod instance is not a target; the stopped one is (it waits).
    const sent = cloud.ssm.commands.get(Command?.CommandId ?? '');
    expect(new Set(sent?.instanceIds)).toEqual(new Set([PROD_1, PROD_2, PROD_3, PROD_STOPPED]));
    expect(Command?.InstanceIds).toEqual([]);
    expect(Command?.Targets).toEqual([{ Key: 'tag:Environment', Values: ['prod'] }]);
    expect(Command?.TargetCount).toBe(4);
  });

  it('takes the InstanceIds key as a target, and refuses InstanceIds beside Targets', async () => {
    // Act
    const { Command } = await ssm.send(
      new SendCommandCommand({
        DocumentName: cloud.documentName,
        Targets: [{ Key: 'InstanceIds', Values: [PROD_1, PROD_2] }],
        Parameters: PARAMETERS,
      }),
    );
    const both = await ssm
      .send(
        new SendCommandCommand({
          DocumentName: cloud.documentName,
          InstanceIds: [PROD_1],
          Targets: [{ Key: 'tag:Environment', Values: ['prod'] }],
          Parameters: PARAMETERS,
        }),
      )
      .then(
        () => undefined,
        (caught: Error) => caught,
      );
    const unknownKey = await ssm
      .send(
        new SendCommandCommand({
          DocumentName: cloud.documentName,
          Targets: [{ Key: 'resource-groups:Name', Values: ['web'] }],
          Parameters: PARAMETERS,
        }),
      )
      .then(
        () => undefined,
        (caught: Error) => caught,
      );

    // Assert
    expect(new Set(cloud.ssm.commands.get(Command?.CommandId ?? '')?.instanceIds)).toEqual(
      new Set([PROD_1, PROD_2]),
    );
    expect(both?.name).toBe('ValidationException');
    expect(unknownKey?.name).toBe('ValidationException');
  });

  it('lets an EventBridge rule run the document by tag, with no function in between', async () => {
    // Arrange: the direct anchor of the benchmark.
    const commandsBefore = cloud.ssm.commands.size;
    cloud.bus.addRule({
      name: 'direct-anchor',
      arn: 'arn:aws:events:eu-west-1:123456789012:rule/direct-anchor',
      pattern: {
        source: ['aws.ssm'],
        'detail-type': ['Parameter Store Change'],
        detail: { name: ['/prod/anchor.env'] },
      },
      enabled: true,
      targets: [
        {
          id: 'run-command',
          arn: `arn:aws:ssm:eu-west-1:123456789012:document/${cloud.documentName}`,
          input: JSON.stringify(PARAMETERS),
          runCommandTargets: [{ Key: 'tag:Environment', Values: ['prod'] }],
        },
      ],
    });

    // Act
    cloud.putParameter('/prod/anchor.env', 's3cr3t-for-tests-anchor-2');
    const command = await cloud.waitFor(
      () => [...cloud.ssm.commands.values()].slice(commandsBefore).at(0),
      { message: 'the rule to send the command' },
    );

    // Assert
    expect(command.targets).toEqual([{ Key: 'tag:Environment', Values: ['prod'] }]);
    expect(command.parameters.ParameterName).toEqual(['/prod/anchor.env']);
    expect(command.instanceIds).toHaveLength(4);
    expect(cloud.invocations('propagate')).toHaveLength(0);
  });
});
