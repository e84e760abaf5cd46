/**
 * SendCommand's AlarmConfiguration on the local cloud, as ssm.ts models Run Command's alarm
 * monitoring: "if your alarm activates, any pending command invocations do not run"
 * (https://docs.aws.amazon.com/systems-manager/latest/userguide/running-commands-console.html);
 * IgnorePollAlarmFailure decides what an alarm whose state cannot be retrieved does
 * (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_AlarmConfiguration.html);
 * the Command carries AlarmConfiguration and TriggeredAlarms ({Name, State: ALARM | UNKNOWN},
 * API_Command.html, API_AlarmStateInformation.html). The statuses the stopped invocations and
 * command end in (Cancelled / Cancelled) are the local cloud's model, not documented by AWS.
 */
import {
  GetCommandInvocationCommand,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROD_1, PROD_2, PROD_3, startTestCloud } from '../e2e/local-cloud.ts';
import type { AwsEvent, LocalCloud } from './cloud.ts';

const PARAMETER = '/prod/alarm-gate.env';
const PARAMETERS = {
  ParameterName: [PARAMETER],
  DestinationPath: ['/etc/app/alarm-gate.env'],
  FileOwner: ['root'],
  FileGroup: ['root'],
  FileMode: ['0400'],
  Format: ['raw'],
  Backups: ['1'],
};

describe('Run Command stopped by a CloudWatch alarm (SendCommand AlarmConfiguration)', () => {
  let cloud: LocalCloud;
  let ssm: SSMClient;

  beforeAll(async () => {
    cloud = await startTestCloud();
    ssm = new SSMClient({ ...cloud.clientConfig('ssm'), maxAttempts: 1 });
    cloud.putParameter(PARAMETER, 's3cr3t-for-tests-alarm-gate');
  });

  afterAll(async () => {
    ssm?.destroy();
    await cloud?.stop();
  });

  /** The Run Command events of one command, in order. */
  const eventsOf = (events: AwsEvent[], commandId: string) =>
    events
      .filter((event) => event.source === 'aws.ssm' && event.detail['command-id'] === commandId)
      .map((event) => [
        event['detail-type'] === 'EC2 Command Status-change Notification'
          ? 'command'
          : event.detail['instance-id'],
        event.detail.status,
      ]);

  const send = (alarmName: string, options: { ignorePollAlarmFailure?: boolean } = {}) =>
    ssm.send(
      new SendCommandCommand({
        DocumentName: cloud.documentName,
        InstanceIds: [PROD_1, PROD_2, PROD_3],
        // One at a time: the alarm finds one invocation running and two not yet delivered.
        MaxConcurrency: '1',
        // A file of its own per alarm: what one command wrote says nothing about another.
        Parameters: { ...PARAMETERS, DestinationPath: [`/etc/app/${alarmName}.env`] },
        AlarmConfiguration: {
          Alarms: [{ Name: alarmName }],
          ...(options.ignorePollAlarmFailure === undefined
            ? {}
            : { IgnorePollAlarmFailure: options.ignorePollAlarmFailure }),
        },
      }),
    );

  const settled = (commandId: string) =>
    cloud.waitFor(
      () =>
        [...(cloud.ssm.commands.get(commandId)?.invocations.values() ?? [])].every((invocation) =>
          cloud.ssm.isTerminal(invocation),
        ),
      { message: `command ${commandId} to settle` },
    );

  it('runs to Success while the alarm stays OK, listing AlarmConfiguration and no TriggeredAlarms', async () => {
    // Arrange
    cloud.createAlarm('gate-ok');
    cloud.setAlarmState('gate-ok', 'OK', 'healthy');

    // Act
    const { Command } = await send('gate-ok');
    await settled(Command?.CommandId ?? '');
    const { Commands = [] } = await ssm.send(
      new ListCommandsCommand({ CommandId: Command?.CommandId }),
    );

    // Assert
    expect(Command?.AlarmConfiguration).toEqual({
      IgnorePollAlarmFailure: false,
      Alarms: [{ Name: 'gate-ok' }],
    });
    expect(Commands[0]).toMatchObject({
      Status: 'Success',
      StatusDetails: 'Success',
      CompletedCount: 3,
      AlarmConfiguration: { IgnorePollAlarmFailure: false, Alarms: [{ Name: 'gate-ok' }] },
      TriggeredAlarms: [],
    });
  });

  it('lets the running invocation finish and cancels the pending ones when the alarm goes to ALARM', async () => {
    // Arrange: the alarm fires the moment the first invocation starts running.
    cloud.createAlarm('gate-fires');
    const events: AwsEvent[] = [];
    let commandId = '';
    let firstInstance = '';
    const unsubscribe = cloud.bus.onEvent((event) => {
      events.push(event);
      if (
        firstInstance === '' &&
        event['detail-type'] === 'EC2 Command Invocation Status-change Notification' &&
        event.detail['command-id'] === commandId &&
        event.detail.status === 'InProgress'
      ) {
        firstInstance = event.detail['instance-id'];
        queueMicrotask(() => cloud.setAlarmState('gate-fires', 'ALARM', 'stage errors'));
      }
    });

    try {
      // Act
      const { Command } = await send('gate-fires');
      commandId = Command?.CommandId ?? '';
      await settled(commandId);
      const { Commands = [] } = await ssm.send(new ListCommandsCommand({ CommandId: commandId }));
      const ran = await ssm.send(
        new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: firstInstance }),
      );
      const others = [PROD_1, PROD_2, PROD_3].filter((id) => id !== firstInstance);
      const stopped = await Promise.all(
        others.map((id) =>
          ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: id })),
        ),
      );

      // Assert
      expect(Command?.Status).toBe('Pending');
      expect(Command?.TriggeredAlarms).toEqual([]);
      expect(Commands[0]).toMatchObject({
        Status: 'Cancelled',
        StatusDetails: 'Cancelled',
        TriggeredAlarms: [{ Name: 'gate-fires', State: 'ALARM' }],
        CompletedCount: 3,
      });
      expect(ran).toMatchObject({ Status: 'Success', StatusDetails: 'Success', ResponseCode: 0 });
      for (const invocation of stopped) {
        expect(invocation).toMatchObject({
          Status: 'Cancelled',
          StatusDetails: 'Cancelled',
          ResponseCode: -1,
          ExecutionStartDateTime: '',
        });
      }
      // What EventBridge saw: the stopped invocations never went InProgress.
      const seen = eventsOf(events, commandId);
      for (const id of others) {
        expect(seen).toContainEqual([id, 'Cancelled']);
        expect(seen).not.toContainEqual([id, 'InProgress']);
      }
      expect(seen).toContainEqual([firstInstance, 'Success']);
      expect(seen.filter(([who]) => who === 'command').at(-1)).toEqual(['command', 'Cancelled']);
      // The stopped instances never got the file.
      for (const id of others)
        expect(cloud.fleet.get(id).exists('/etc/app/gate-fires.env')).toBe(false);
      expect(cloud.fleet.get(firstInstance).exists('/etc/app/gate-fires.env')).toBe(true);
    } finally {
      unsubscribe();
    }
  });

  it('runs nothing when the alarm is already in ALARM at send time', async () => {
    // Arrange
    cloud.createAlarm('gate-red');
    cloud.setAlarmState('gate-red', 'ALARM', 'already failing');
    const before = cloud.events().length;

    // Act
    const { Command } = await send('gate-red');
    const commandId = Command?.CommandId ?? '';
    await settled(commandId);
    const { Commands = [] } = await ssm.send(new ListCommandsCommand({ CommandId: commandId }));

    // Assert: SendCommand itself succeeds (Pending); the command then stops before delivery.
    expect(Command?.Status).toBe('Pending');
    expect(Commands[0]).toMatchObject({
      Status: 'Cancelled',
      StatusDetails: 'Cancelled',
      TriggeredAlarms: [{ Name: 'gate-red', State: 'ALARM' }],
      CompletedCount: 3,
      ErrorCount: 0,
    });
    const seen = eventsOf(cloud.events().slice(before), commandId);
    expect(seen.filter(([, status]) => status === 'InProgress')).toEqual([]);
    expect(
      seen.filter(([who, status]) => who !== 'command' && status === 'Cancelled'),
    ).toHaveLength(3);
  });

  it('treats an alarm CloudWatch does not have as a poll failure unless IgnorePollAlarmFailure', async () => {
    // Act
    const strict = await send('gate-missing');
    const lenient = await send('gate-missing', { ignorePollAlarmFailure: true });
    await settled(strict.Command?.CommandId ?? '');
    await settled(lenient.Command?.CommandId ?? '');
    const { Commands = [] } = await ssm.send(new ListCommandsCommand({}));
    const byId = new Map(Commands.map((command) => [command.CommandId, command]));

    // Assert
    expect(byId.get(strict.Command?.CommandId)).toMatchObject({
      Status: 'Cancelled',
      TriggeredAlarms: [{ Name: 'gate-missing', State: 'UNKNOWN' }],
    });
    expect(byId.get(lenient.Command?.CommandId)).toMatchObject({
      Status: 'Success',
      AlarmConfiguration: { IgnorePollAlarmFailure: true, Alarms: [{ Name: 'gate-missing' }] },
      TriggeredAlarms: [],
    });
  });

  it('validates AlarmConfiguration as the API model does: exactly one alarm, a non-blank name', async () => {
    // Act
    const refuse = (configuration: unknown) =>
      ssm
        .send(
          new SendCommandCommand({
            DocumentName: cloud.documentName,
            InstanceIds: [PROD_1],
            Parameters: PARAMETERS,
            AlarmConfiguration: configuration as never,
          }),
        )
        .then(
          () => undefined,
          (error: Error) => error,
        );
    const commandsBefore = cloud.ssm.commands.size;
    const two = await refuse({ Alarms: [{ Name: 'a' }, { Name: 'b' }] });
    const none = await refuse({ Alarms: [] });
    const blank = await refuse({ Alarms: [{ Name: '   ' }] });
    const long = await refuse({ Alarms: [{ Name: 'n'.repeat(256) }] });

    // Assert
    expect(two?.name).toBe('ValidationException');
    expect(two?.message).toContain(
      "at 'alarmConfiguration.alarms' failed to satisfy constraint: Member must have length less than or equal to 1",
    );
    expect(none?.message).toContain('Member must have length greater than or equal to 1');
    expect(blank?.message).toContain(
      "at 'alarmConfiguration.alarms.1.member.name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(?!\\s*$).+",
    );
    expect(long?.message).toContain('Member must have length less than or equal to 255');
    expect(cloud.ssm.commands.size).toBe(commandsBefore);
  });

  it('lists an empty AlarmConfiguration and TriggeredAlarms for a command sent without one', async () => {
    // Act
    const { Command } = await ssm.send(
      new SendCommandCommand({
        DocumentName: cloud.documentName,
        InstanceIds: [PROD_1],
        Parameters: PARAMETERS,
      }),
    );
    await settled(Command?.CommandId ?? '');

    // Assert: as real SendCommand answers show them.
    expect(Command?.AlarmConfiguration).toEqual({ IgnorePollAlarmFailure: false, Alarms: [] });
    expect(Command?.TriggeredAlarms).toEqual([]);
  });
});
