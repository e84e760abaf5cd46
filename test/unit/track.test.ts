import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DocumentExitCode } from '../../shared/document-contract.ts';
import type { Transition } from '../../shared/rollout/model.ts';
import { rolloutComment } from '../../shared/send/commands.ts';
import { instanceIds, lambdaContext } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { nextRolloutId } from '../support/rollouts.ts';
import { commandEvent, sqsBatch, statusEvent } from '../support/status-events.ts';

// The rollouts table is a real DynamoDB (dynalite); Run Command, EC2, SQS and SNS are mocked.
const ssmMock = mockClient(SSMClient);
const ec2Mock = mockClient(EC2Client);
const sqsMock = mockClient(SQSClient);
const snsMock = mockClient(SNSClient);

const table = withRolloutsTable(() => import('../../functions/track.ts'));

const parameter = '/prod/env.php';
const path = '/var/www/html/env.php';
const ref = (instanceId: string) => ({ instanceId, parameter, path });
const retryFrom = (instanceId: string, fromAttempt: number): Transition => ({
  ...ref(instanceId),
  fromAttempt,
  to: 'Retry',
  retryAt: new Date().toISOString(),
});

type Result = {
  exitCode: number;
  stdout?: string;
  stderr?: string;
  status?: string;
  details?: string;
};
/** What Run Command reports for each instance of each command. */
let invocations: Map<string, Map<string, Result>>;
/** EC2 state of instances (running unless listed). */
let ec2States: Map<string, string>;

beforeEach(() => {
  invocations = new Map();
  ec2States = new Map();
  ssmMock.on(ListCommandInvocationsCommand).callsFake(({ CommandId }) => ({
    CommandInvocations: [...(invocations.get(CommandId)?.entries() ?? [])].map(
      ([InstanceId, r]) => ({
        CommandId,
        InstanceId,
        Comment: commentOf.get(CommandId),
        Status: r.status ?? (r.exitCode === 0 ? 'Success' : 'Failed'),
        StatusDetails: r.details ?? (r.exitCode === 0 ? 'Success' : 'Failed'),
        CommandPlugins: [
          { Name: 'replaceSecretsFile', ResponseCode: r.exitCode, Output: r.stdout ?? '' },
        ],
      }),
    ),
  }));
  ssmMock.on(GetCommandInvocationCommand).callsFake(({ CommandId, InstanceId }) => {
    const r = invocations.get(CommandId)?.get(InstanceId);
    return {
      CommandId,
      InstanceId,
      Comment: commentOf.get(CommandId),
      ResponseCode: r?.exitCode,
      Status: r?.status ?? 'Failed',
      StatusDetails: r?.details ?? 'Failed',
      StandardOutputContent: r?.stdout ?? '',
      StandardErrorContent: r?.stderr ?? '',
    };
  });
  ec2Mock.on(DescribeInstancesCommand).callsFake(({ Filters }) => ({
    Reservations: [
      {
        Instances: (Filters?.[0]?.Values ?? [])
          .filter((id: string) => ec2States.get(id) !== 'missing')
          .map((InstanceId: string) => ({
            InstanceId,
            State: { Name: ec2States.get(InstanceId) ?? 'running' },
          })),
      },
    ],
  }));
  sqsMock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
  snsMock.on(PublishCommand).resolves({ MessageId: 'm' });
});
afterEach(() => {
  ssmMock.reset();
  ec2Mock.reset();
  sqsMock.reset();
  snsMock.reset();
});

const commentOf = new Map<string, string>();
let commandSequence = 0;

/** A rollout sent to `ids` as one command; returns its id and the command id. */
async function sentRollout(ids: string[], attempt = 1) {
  const rolloutId = nextRolloutId();
  await table.store.create(
    {
      rolloutId,
      trigger: { type: 'event', eventId: 'e' },
      environment: 'prod',
      parameters: [parameter],
      files: [{ parameter, path }],
      version: 7,
    },
    ids.map((instanceId) => ({ instanceId, parameter, path, status: 'Pending' })),
  );
  const commandId = `0000000${++commandSequence}-aaaa-bbbb-cccc-000000000000`.slice(-36);
  commentOf.set(commandId, rolloutComment(rolloutId, attempt));
  await table.store.recordCommand(rolloutId, {
    commandId,
    parameter,
    path,
    attempt,
    instanceIds: ids,
  });
  invocations.set(commandId, new Map());
  return { rolloutId, commandId };
}

const updated = {
  exitCode: 0,
  stdout: 'secrets-fanout: wrote\nsecrets-fanout result=updated version=7\n',
};
const invalid = {
  exitCode: DocumentExitCode.ContentInvalid,
  stdout: 'secrets-fanout result=failed reason=content-invalid version=7\n',
  stderr:
    'secrets-fanout: error: version 7 of /prod/env.php is not dotenv: line 2 is not KEY=value\n',
};
const fetchFailed = {
  exitCode: DocumentExitCode.FetchFailed,
  stderr: 'secrets-fanout: error: aws ssm get-parameter exited with status 255\n',
};

async function deliver(commandId: string, ids: string[], status = 'Success') {
  return table.handler.handler(
    sqsBatch(ids.map((id) => statusEvent(commandId, id, status))),
    lambdaContext(),
  );
}
const published = () => snsMock.commandCalls(PublishCommand).map((c) => c.args[0].input);

describe('track', () => {
  it('records each instance that wrote the file, with the version, and settles without alerting', async () => {
    // Arrange
    const ids = instanceIds(3);
    const { rolloutId, commandId } = await sentRollout(ids);
    for (const id of ids) invocations.get(commandId)!.set(id, updated);
    // Act
    const response = await deliver(commandId, ids);
    // Assert
    expect(response.batchItemFailures).toEqual([]);
    const loaded = await table.store.load(rolloutId);
    expect(loaded?.targets.map((t) => [t.status, t.versionWritten])).toEqual(
      ids.map(() => ['Success', 7]),
    );
    expect(loaded?.rollout).toMatchObject({
      state: 'Settled',
      alert: 'None',
      counts: { success: 3, pending: 0 },
    });
    expect(published()).toEqual([]);
  });

  it('reads the listing once per command, not once per instance', async () => {
    const ids = instanceIds(40);
    const { commandId } = await sentRollout(ids);
    for (const id of ids) invocations.get(commandId)!.set(id, updated);
    await deliver(commandId, ids);
    expect(ssmMock.commandCalls(ListCommandInvocationsCommand)).toHaveLength(1);
    expect(ssmMock.commandCalls(GetCommandInvocationCommand)).toHaveLength(0);
  });

  it('tracks a command by its completion: one listing for all its successes, each failure read alone', async () => {
    // Arrange: 50 instances, one of them fails; the rule sends the command's own event and
    // the failed invocation's event, no event per success
    const ids = instanceIds(50);
    const { rolloutId, commandId } = await sentRollout(ids);
    for (const id of ids) invocations.get(commandId)!.set(id, updated);
    invocations.get(commandId)!.set(ids[7]!, invalid);
    // Act
    const response = await table.handler.handler(
      sqsBatch([commandEvent(commandId, 'Failed'), statusEvent(commandId, ids[7]!, 'Failed')]),
      lambdaContext(),
    );
    // Assert
    expect(response.batchItemFailures).toEqual([]);
    expect(ssmMock.commandCalls(ListCommandInvocationsCommand)).toHaveLength(1);
    // the failure's full stderr (the listing has only its first 2,500 characters of output)
    expect(ssmMock.commandCalls(GetCommandInvocationCommand)).toHaveLength(1);
    const loaded = await table.store.load(rolloutId);
    expect(loaded?.rollout.counts).toMatchObject({ success: 49, failed: 1, pending: 0 });
  });

  it('reads a failed invocation alone when only failures are in the batch, never the listing', async () => {
    const ids = instanceIds(30);
    const { rolloutId, commandId } = await sentRollout(ids);
    for (const id of ids) invocations.get(commandId)!.set(id, updated);
    invocations.get(commandId)!.set(ids[3]!, invalid);
    const response = await deliver(commandId, [ids[3]!], 'Failed');
    expect(response.batchItemFailures).toEqual([]);
    expect(ssmMock.commandCalls(ListCommandInvocationsCommand)).toHaveLength(0);
    expect(ssmMock.commandCalls(GetCommandInvocationCommand)).toHaveLength(1);
    expect(await table.store.getTarget(rolloutId, ref(ids[3]!))).toMatchObject({
      status: 'Failed',
      lastError: { exitCode: 65 },
    });
  });

  it('reads the listing when a failed invocation cannot be read alone (never delivered)', async () => {
    // Arrange: the instance went offline before the agent took the command; GetCommandInvocation
    // knows no such invocation, the listing says Undeliverable
    const ids = instanceIds(3);
    const { rolloutId, commandId } = await sentRollout(ids);
    for (const id of ids) invocations.get(commandId)!.set(id, updated);
    invocations
      .get(commandId)!
      .set(ids[1]!, { exitCode: -1, status: 'Failed', details: 'Undeliverable' });
    ssmMock
      .on(GetCommandInvocationCommand, { CommandId: commandId, InstanceId: ids[1] })
      .rejects(Object.assign(new Error('no such invocation'), { name: 'InvocationDoesNotExist' }));
    // Act
    const response = await deliver(commandId, [ids[1]!], 'Failed');
    // Assert: not dropped as "not ours", not put back forever: judged from the listing
    expect(response.batchItemFailures).toEqual([]);
    expect(ssmMock.commandCalls(ListCommandInvocationsCommand)).toHaveLength(1);
    const target = await table.store.getTarget(rolloutId, ref(ids[1]!));
    expect(target?.status === 'Pending' && target.attempt === 1).toBe(false);
  });

  it('puts a completion back while the listing still shows an invocation unfinished', async () => {
    const ids = instanceIds(2);
    const { rolloutId, commandId } = await sentRollout(ids);
    invocations
      .get(commandId)!
      .set(ids[0]!, updated)
      .set(ids[1]!, { ...updated, status: 'InProgress' });
    const response = await table.handler.handler(
      sqsBatch([commandEvent(commandId)]),
      lambdaContext(),
    );
    expect(response.batchItemFailures).toHaveLength(1);
    expect((await table.store.getRollout(rolloutId))?.counts.pending).toBe(2);
  });

  it('fails an instance whose content is invalid, without retrying, and alerts once with why', async () => {
    // Arrange
    const [good, bad] = instanceIds(2);
    const { rolloutId, commandId } = await sentRollout([good!, bad!]);
    invocations.get(commandId)!.set(good!, updated).set(bad!, invalid);
    // Act
    await deliver(commandId, [good!]);
    await deliver(commandId, [bad!], 'Failed');
    // Assert
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
    expect(await table.store.getTarget(rolloutId, ref(bad!))).toMatchObject({
      status: 'Failed',
      lastError: {
        status: 'Failed',
        exitCode: 65,
        meaning: 'ContentInvalid',
        stderr: expect.stringContaining('line 2 is not KEY=value'),
      },
    });
    const alerts = published();
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.Subject).toBe(
      'secrets-fanout: prod /prod/env.php v7: 1 failed, 0 unreachable',
    );
    expect(alerts[0]?.Message).toContain(
      `${bad} /var/www/html/env.php: Failed, exit 65 ContentInvalid`,
    );
    expect(alerts[0]?.Message).toContain('npx serverless invoke -f resync --stage test');
    expect(alerts[0]?.Message).toContain(`"instanceIds":["${bad}"]`);
    expect((await table.store.getRollout(rolloutId))?.alert).toBe('Sent');
  });

  it('sends one alert for a rollout whose many failures arrive in several batches', async () => {
    const ids = instanceIds(30);
    const { commandId } = await sentRollout(ids);
    for (const id of ids) invocations.get(commandId)!.set(id, invalid);
    await deliver(commandId, ids.slice(0, 10), 'Failed');
    await deliver(commandId, ids.slice(10, 25), 'Failed');
    await deliver(commandId, ids.slice(25), 'Failed');
    expect(published()).toHaveLength(1);
    expect(published()[0]?.Subject).toContain('30 failed');
  });

  it('queues a retry with backoff for a retryable failure and keeps the instance pending', async () => {
    // Arrange
    const [id] = instanceIds(1);
    const { rolloutId, commandId } = await sentRollout([id!]);
    invocations.get(commandId)!.set(id!, fetchFailed);
    // Act
    await deliver(commandId, [id!], 'Failed');
    // Assert
    const entries = sqsMock
      .commandCalls(SendMessageBatchCommand)
      .flatMap((c) => c.args[0].input.Entries ?? []);
    expect(entries.map((e) => JSON.parse(e.MessageBody!))).toEqual([
      { rolloutId, instanceIds: [id], parameter, path, attempt: 2 },
    ]);
    expect(entries[0]?.DelaySeconds).toBeGreaterThanOrEqual(15);
    expect(entries[0]?.DelaySeconds).toBeLessThanOrEqual(30);
    expect(sqsMock.commandCalls(SendMessageBatchCommand)[0]?.args[0].input.QueueUrl).toBe(
      process.env.RETRY_QUEUE_URL,
    );
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Pending',
      attempt: 2,
    });
    expect((await table.store.getRollout(rolloutId))?.counts).toMatchObject({
      pending: 1,
      retries: 1,
    });
    expect(published()).toEqual([]);
  });

  it('fails the instance once its attempts are used up', async () => {
    // Arrange: the third and last attempt (maxAttempts 3) fails again
    const [id] = instanceIds(1);
    const { rolloutId } = await sentRollout([id!]);
    await table.store.commit(rolloutId, [retryFrom(id!, 1)]);
    await table.store.commit(rolloutId, [retryFrom(id!, 2)]);
    const last = 'ffffffff-aaaa-bbbb-cccc-000000000003';
    // The retrier's command names its attempt in its Comment, as every command of ours does.
    commentOf.set(last, rolloutComment(rolloutId, 3));
    await table.store.recordAttemptCommands(rolloutId, [ref(id!)], 3, last);
    invocations.set(last, new Map([[id!, fetchFailed]]));
    // Act
    await deliver(last, [id!], 'Failed');
    // Assert
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Failed',
      lastError: { status: 'Failed (after 3 attempts)', meaning: 'FetchFailed' },
    });
    expect(published()).toHaveLength(1);
  });

  it('counts an event delivered twice, in one batch or two, once', async () => {
    const [id] = instanceIds(1);
    const { rolloutId, commandId } = await sentRollout([id!, 'i-0fffffffffffffff0']);
    invocations.get(commandId)!.set(id!, updated);
    await deliver(commandId, [id!, id!]);
    await deliver(commandId, [id!]);
    expect((await table.store.getRollout(rolloutId))?.counts).toMatchObject({
      success: 1,
      pending: 1,
    });
  });

  it('marks a terminated instance unreachable instead of retrying it', async () => {
    const [id] = instanceIds(1);
    const { rolloutId, commandId } = await sentRollout([id!]);
    invocations
      .get(commandId)!
      .set(id!, { exitCode: -1, status: 'Failed', details: 'Undeliverable' });
    ec2States.set(id!, 'terminated');
    await deliver(commandId, [id!], 'Failed');
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Unreachable',
      reason: 'InstanceTerminated',
    });
    // A scale-in during a rollout is normal: settled, counted, nobody paged.
    expect(await table.store.getRollout(rolloutId)).toMatchObject({
      state: 'Settled',
      alert: 'None',
      counts: { unreachable: 1, terminated: 1 },
    });
    expect(published()).toEqual([]);
  });

  it('retries a message whose invocation Run Command does not list as finished yet', async () => {
    const [id] = instanceIds(1);
    const { rolloutId, commandId } = await sentRollout([id!]);
    invocations
      .get(commandId)!
      .set(id!, { exitCode: -1, status: 'InProgress', details: 'In Progress' });
    const batch = sqsBatch([statusEvent(commandId, id!)]);
    const response = await table.handler.handler(batch, lambdaContext());
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: batch.Records[0]?.messageId }]);
    expect((await table.store.getTarget(rolloutId, ref(id!)))?.status).toBe('Pending');
  });

  it('reports a malformed message as a batch failure and still processes the rest', async () => {
    const [id] = instanceIds(1);
    const { rolloutId, commandId } = await sentRollout([id!]);
    invocations.get(commandId)!.set(id!, updated);
    const batch = sqsBatch(['{"not":"an event"}', statusEvent(commandId, id!)]);
    const response = await table.handler.handler(batch, lambdaContext());
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: batch.Records[0]?.messageId }]);
    expect((await table.store.getTarget(rolloutId, ref(id!)))?.status).toBe('Success');
  });

  it('ignores status events of commands that are not ours', async () => {
    const foreign = 'abababab-aaaa-bbbb-cccc-000000000000';
    invocations.set(foreign, new Map([['i-0aaaaaaaaaaaaaaa1', updated]]));
    commentOf.set(foreign, 'someone else');
    const response = await deliver(foreign, ['i-0aaaaaaaaaaaaaaa1']);
    expect(response.batchItemFailures).toEqual([]);
  });

  it('reads the attempt from the comment when a retry command was never recorded', async () => {
    // Arrange: attempt 2 was sent, but the retrier stopped before recording its command
    const [id] = instanceIds(1);
    const { rolloutId } = await sentRollout([id!]);
    await table.store.commit(rolloutId, [retryFrom(id!, 1)]);
    const unrecorded = 'efefefef-aaaa-bbbb-cccc-000000000000';
    commentOf.set(unrecorded, rolloutComment(rolloutId, 2));
    invocations.set(unrecorded, new Map([[id!, updated]]));
    ssmMock.on(ListCommandsCommand).resolves({
      Commands: [
        {
          CommandId: unrecorded,
          Parameters: { ParameterName: [parameter], DestinationPath: [path] },
        },
      ],
    });
    // Act
    await deliver(unrecorded, [id!]);
    // Assert
    expect(await table.store.getTarget(rolloutId, ref(id!))).toMatchObject({
      status: 'Success',
      attempt: 2,
    });
  });

  it('finds the parameter from the command itself when the sender stopped before recording it', async () => {
    // Arrange: a rollout whose command record is missing
    const [id] = instanceIds(1);
    const rolloutId = nextRolloutId();
    await table.store.create(
      {
        rolloutId,
        trigger: { type: 'event', eventId: 'e' },
        environment: 'prod',
        parameters: [parameter],
        files: [{ parameter, path }],
      },
      [{ instanceId: id!, parameter, path, status: 'Pending' }],
    );
    const unrecorded = 'cdcdcdcd-aaaa-bbbb-cccc-000000000000';
    commentOf.set(unrecorded, rolloutComment(rolloutId));
    invocations.set(unrecorded, new Map([[id!, updated]]));
    ssmMock.on(ListCommandsCommand).resolves({
      Commands: [
        {
          CommandId: unrecorded,
          Parameters: { ParameterName: [parameter], DestinationPath: [path] },
        },
      ],
    });
    // Act
    await deliver(unrecorded, [id!]);
    // Assert
    expect((await table.store.getTarget(rolloutId, ref(id!)))?.status).toBe('Success');
  });
});
