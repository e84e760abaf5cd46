/**
 * The local CloudWatch alarms as real clients see them: the JS SDK (AWS JSON 1.0 with the
 * awsQueryCompatible error header, and Smithy RPC v2 CBOR), and every AWS CLI on the machine
 * (Debian's 2.9 speaks the Query protocol; a newer botocore speaks JSON).
 * PutMetricAlarm, DescribeAlarms, SetAlarmState, DeleteAlarms — API reference:
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html,
 * API_DescribeAlarms.html, API_SetAlarmState.html, API_DeleteAlarms.html; the state-change
 * event: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html
 */
import {
  CloudWatchClient,
  DeleteAlarmsCommand,
  DescribeAlarmsCommand,
  PutMetricAlarmCommand,
  PutMetricDataCommand,
  paginateDescribeAlarms,
  SetAlarmStateCommand,
} from '@aws-sdk/client-cloudwatch';
import { AwsSmithyRpcV2CborProtocol } from '@aws-sdk/core/protocols';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCode, findClis, runCli } from '../conformance/clients.ts';
import { startTestCloud } from '../e2e/local-cloud.ts';
import type { LocalCloud } from './cloud.ts';

const clis = findClis();

/** A valid single-metric alarm, as PutMetricAlarm takes it. */
function alarmInput(name: string) {
  return {
    AlarmName: name,
    Namespace: 'SecretsFanout',
    MetricName: 'StageFailures',
    Dimensions: [{ Name: 'service', Value: 'secrets-fanout' }],
    Statistic: 'Sum' as const,
    Period: 60,
    EvaluationPeriods: 1,
    Threshold: 0,
    ComparisonOperator: 'GreaterThanThreshold' as const,
  };
}

/** The error a promise rejects with (undefined when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<any> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('CloudWatch alarms on the local cloud', () => {
  let cloud: LocalCloud;
  let cloudwatch: CloudWatchClient;

  beforeAll(async () => {
    cloud = await startTestCloud();
    // One attempt: the test sees the service's answer, not the SDK's retries.
    cloudwatch = new CloudWatchClient({ ...cloud.clientConfig('cloudwatch'), maxAttempts: 1 });
  });

  afterAll(async () => {
    cloudwatch?.destroy();
    await cloud?.stop();
  });

  describe('wiring', () => {
    it('gives the functions and clients the endpoint through AWS_ENDPOINT_URL_CLOUDWATCH', () => {
      expect(cloud.clientEnv.AWS_ENDPOINT_URL_CLOUDWATCH).toBe(cloud.endpoints.cloudwatch);
      expect(cloud.fn('propagate').options.environment.AWS_ENDPOINT_URL_CLOUDWATCH).toBe(
        cloud.endpoints.cloudwatch,
      );
    });

    it('creates the template’s AWS::CloudWatch::Alarm resources, INSUFFICIENT_DATA as new alarms are', async () => {
      // Arrange
      const names = cloud.stack
        .resources('AWS::CloudWatch::Alarm')
        .map(([logicalId]) => cloud.stack.physicalName(logicalId));

      // Act
      const { MetricAlarms = [] } = await cloudwatch.send(
        new DescribeAlarmsCommand({ AlarmNames: names }),
      );

      // Assert
      expect(names.length).toBeGreaterThan(0);
      expect(MetricAlarms.map((alarm) => alarm.AlarmName)).toEqual([...names].sort());
      for (const alarm of MetricAlarms) {
        expect(alarm.StateValue).toBe('INSUFFICIENT_DATA');
        expect(alarm.AlarmArn).toBe(
          `arn:aws:cloudwatch:${cloud.region}:123456789012:alarm:${alarm.AlarmName}`,
        );
      }
    });
  });

  describe('with the JS SDK (AWS JSON 1.0)', () => {
    it('creates an alarm INSUFFICIENT_DATA and describes it with the fields the rollout reads', async () => {
      // Act
      await cloudwatch.send(new PutMetricAlarmCommand(alarmInput('sdk-created')));
      const { MetricAlarms = [] } = await cloudwatch.send(
        new DescribeAlarmsCommand({ AlarmNames: ['sdk-created'] }),
      );

      // Assert
      expect(MetricAlarms).toHaveLength(1);
      const [alarm] = MetricAlarms;
      expect(alarm).toMatchObject({
        AlarmName: 'sdk-created',
        AlarmArn: `arn:aws:cloudwatch:${cloud.region}:123456789012:alarm:sdk-created`,
        StateValue: 'INSUFFICIENT_DATA',
        StateReason: 'Unchecked: Initial alarm creation',
        MetricName: 'StageFailures',
        Namespace: 'SecretsFanout',
        Dimensions: [{ Name: 'service', Value: 'secrets-fanout' }],
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
      });
      expect(alarm?.StateUpdatedTimestamp).toBeInstanceOf(Date);
      expect(
        Math.abs((alarm?.StateUpdatedTimestamp?.getTime() ?? 0) - cloud.clock.nowMs()),
      ).toBeLessThan(60_000);
    });

    it('sets a state with its reason, emits "CloudWatch Alarm State Change", and filters by StateValue', async () => {
      // Arrange
      await cloudwatch.send(new PutMetricAlarmCommand(alarmInput('sdk-state')));
      const events: any[] = [];
      const unsubscribe = cloud.bus.onEvent((event) => {
        if (event.source === 'aws.cloudwatch') events.push(event);
      });

      // Act
      await cloudwatch.send(
        new SetAlarmStateCommand({
          AlarmName: 'sdk-state',
          StateValue: 'ALARM',
          StateReason: 'stage 2 error rate',
          StateReasonData: '{"version":"1.0"}',
        }),
      );
      // The same state again is no change: no second event.
      await cloudwatch.send(
        new SetAlarmStateCommand({
          AlarmName: 'sdk-state',
          StateValue: 'ALARM',
          StateReason: 'still failing',
        }),
      );
      unsubscribe();
      const inAlarm = await cloudwatch.send(
        new DescribeAlarmsCommand({
          AlarmNames: ['sdk-state', 'sdk-created'],
          StateValue: 'ALARM',
        }),
      );

      // Assert
      expect(
        inAlarm.MetricAlarms?.map((alarm) => [
          alarm.AlarmName,
          alarm.StateValue,
          alarm.StateReason,
        ]),
      ).toEqual([['sdk-state', 'ALARM', 'still failing']]);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        'detail-type': 'CloudWatch Alarm State Change',
        source: 'aws.cloudwatch',
        resources: [`arn:aws:cloudwatch:${cloud.region}:123456789012:alarm:sdk-state`],
        detail: {
          alarmName: 'sdk-state',
          state: { value: 'ALARM', reason: 'stage 2 error rate', reasonData: '{"version":"1.0"}' },
          previousState: {
            value: 'INSUFFICIENT_DATA',
            reason: 'Unchecked: Initial alarm creation',
          },
          configuration: {
            metrics: [
              {
                metricStat: {
                  metric: {
                    name: 'StageFailures',
                    namespace: 'SecretsFanout',
                    dimensions: { service: 'secrets-fanout' },
                  },
                  period: 60,
                  stat: 'Sum',
                },
              },
            ],
          },
        },
      });
      expect(events[0].detail.state.timestamp).toMatch(
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$/,
      );
    });

    it('keeps an alarm’s state when PutMetricAlarm updates it', async () => {
      // Arrange
      await cloudwatch.send(new PutMetricAlarmCommand(alarmInput('sdk-update')));
      cloud.setAlarmState('sdk-update', 'OK', 'healthy');

      // Act
      await cloudwatch.send(
        new PutMetricAlarmCommand({
          ...alarmInput('sdk-update'),
          Threshold: 5,
          AlarmDescription: 'v2',
        }),
      );
      const { MetricAlarms = [] } = await cloudwatch.send(
        new DescribeAlarmsCommand({ AlarmNames: ['sdk-update'] }),
      );

      // Assert
      expect(MetricAlarms[0]).toMatchObject({
        StateValue: 'OK',
        StateReason: 'healthy',
        Threshold: 5,
        AlarmDescription: 'v2',
      });
    });

    it('refuses SetAlarmState on an unknown alarm with ResourceNotFound (HTTP 404), and bad reason data with InvalidFormat', async () => {
      // Act
      const unknown = await rejection(
        cloudwatch.send(
          new SetAlarmStateCommand({
            AlarmName: 'no-such-alarm',
            StateValue: 'ALARM',
            StateReason: 'x',
          }),
        ),
      );
      const badData = await rejection(
        cloudwatch.send(
          new SetAlarmStateCommand({
            AlarmName: 'sdk-created',
            StateValue: 'ALARM',
            StateReason: 'x',
            StateReasonData: 'not json',
          }),
        ),
      );

      // Assert
      expect(unknown?.name).toBe('ResourceNotFound');
      expect(unknown?.$metadata.httpStatusCode).toBe(404);
      expect(unknown?.Code).toBe('ResourceNotFound');
      expect(badData?.name).toBe('InvalidFormatFault');
      expect(badData?.Code).toBe('InvalidFormat');
      expect(cloud.cloudwatch.stateOf('sdk-created')).toBe('INSUFFICIENT_DATA');
    });

    it('validates inputs against the API reference limits with ValidationError', async () => {
      // Act
      const badState = await rejection(
        cloudwatch.send(
          new SetAlarmStateCommand({
            AlarmName: 'sdk-created',
            StateValue: 'BROKEN' as never,
            StateReason: 'x',
          }),
        ),
      );
      const noReason = await rejection(
        cloudwatch.send(
          new SetAlarmStateCommand({ AlarmName: 'sdk-created', StateValue: 'OK' } as never),
        ),
      );
      const longReason = await rejection(
        cloudwatch.send(
          new SetAlarmStateCommand({
            AlarmName: 'sdk-created',
            StateValue: 'OK',
            StateReason: 'r'.repeat(1024),
          }),
        ),
      );
      const tooManyNames = await rejection(
        cloudwatch.send(
          new DescribeAlarmsCommand({
            AlarmNames: Array.from({ length: 101 }, (_, index) => `alarm-${index}`),
          }),
        ),
      );
      const maxRecords = await rejection(
        cloudwatch.send(new DescribeAlarmsCommand({ MaxRecords: 101 })),
      );
      const longName = await rejection(
        cloudwatch.send(new PutMetricAlarmCommand(alarmInput('n'.repeat(256)))),
      );
      const badPeriod = await rejection(
        cloudwatch.send(new PutMetricAlarmCommand({ ...alarmInput('bad-period'), Period: 45 })),
      );
      const bothStatistics = await rejection(
        cloudwatch.send(
          new PutMetricAlarmCommand({ ...alarmInput('both-stats'), ExtendedStatistic: 'p99' }),
        ),
      );

      // Assert
      expect(badState?.Code).toBe('ValidationError');
      expect(badState?.message).toBe(
        "1 validation error detected: Value 'BROKEN' at 'stateValue' failed to satisfy constraint: Member must satisfy enum value set: [INSUFFICIENT_DATA, ALARM, OK]",
      );
      expect(noReason?.message).toBe(
        "1 validation error detected: Value null at 'stateReason' failed to satisfy constraint: Member must not be null",
      );
      expect(longReason?.message).toContain('Member must have length less than or equal to 1023');
      expect(tooManyNames?.message).toContain(
        "at 'alarmNames' failed to satisfy constraint: Member must have length less than or equal to 100",
      );
      expect(maxRecords?.message).toContain(
        "Value '101' at 'maxRecords' failed to satisfy constraint: Member must have value less than or equal to 100",
      );
      expect(longName?.message).toContain('Member must have length less than or equal to 255');
      for (const error of [badState, noReason, longReason, tooManyNames, maxRecords, longName]) {
        expect(error?.name).toBe('ValidationException');
        expect(error?.$metadata.httpStatusCode).toBe(400);
      }
      expect(badPeriod?.Code).toBe('InvalidParameterValue');
      expect(bothStatistics?.Code).toBe('InvalidParameterCombination');
      expect(cloud.cloudwatch.alarms.has('bad-period')).toBe(false);
    });

    it('pages by MaxRecords and NextToken, sorted by name, and refuses a token it did not issue', async () => {
      // Arrange
      const names = ['page-c', 'page-a', 'page-e', 'page-b', 'page-d'];
      for (const name of names) await cloudwatch.send(new PutMetricAlarmCommand(alarmInput(name)));

      // Act
      const pages: string[][] = [];
      for await (const page of paginateDescribeAlarms(
        { client: cloudwatch, pageSize: 2 },
        { AlarmNames: names },
      ))
        pages.push((page.MetricAlarms ?? []).map((alarm) => alarm.AlarmName ?? ''));
      const badToken = await rejection(
        cloudwatch.send(new DescribeAlarmsCommand({ AlarmNames: names, NextToken: 'forged' })),
      );

      // Assert
      expect(pages).toEqual([['page-a', 'page-b'], ['page-c', 'page-d'], ['page-e']]);
      expect(badToken?.name).toBe('InvalidNextToken');
    });

    it('returns metric alarms only when AlarmTypes is omitted or names MetricAlarm', async () => {
      // Act
      const composite = await cloudwatch.send(
        new DescribeAlarmsCommand({ AlarmNames: ['sdk-created'], AlarmTypes: ['CompositeAlarm'] }),
      );
      const both = await cloudwatch.send(
        new DescribeAlarmsCommand({
          AlarmNames: ['sdk-created'],
          AlarmTypes: ['CompositeAlarm', 'MetricAlarm'],
        }),
      );
      const prefixAndNames = await rejection(
        cloudwatch.send(
          new DescribeAlarmsCommand({ AlarmNames: ['sdk-created'], AlarmNamePrefix: 'sdk-' }),
        ),
      );

      // Assert
      expect(composite.MetricAlarms ?? []).toEqual([]);
      expect(composite.CompositeAlarms ?? []).toEqual([]);
      expect(both.MetricAlarms?.map((alarm) => alarm.AlarmName)).toEqual(['sdk-created']);
      expect(prefixAndNames?.Code).toBe('InvalidParameterCombination');
    });

    it('deletes alarms, skipping names that do not exist', async () => {
      // Arrange
      await cloudwatch.send(new PutMetricAlarmCommand(alarmInput('sdk-delete')));

      // Act
      await cloudwatch.send(
        new DeleteAlarmsCommand({ AlarmNames: ['sdk-delete', 'never-existed'] }),
      );

      // Assert
      expect(cloud.cloudwatch.alarms.has('sdk-delete')).toBe(false);
    });

    it('refuses an operation it does not implement as an unknown operation', async () => {
      // Act
      const error = await rejection(
        cloudwatch.send(
          new PutMetricDataCommand({
            Namespace: 'SecretsFanout',
            MetricData: [{ MetricName: 'StageFailures', Value: 1 }],
          }),
        ),
      );

      // Assert
      expect(error?.name).toBe('UnknownOperationException');
      expect(error?.$metadata.httpStatusCode).toBe(400);
    });
  });

  describe('with the JS SDK over Smithy RPC v2 CBOR', () => {
    it('answers the same operations and errors in CBOR', async () => {
      // Arrange: the protocol the service model lists first.
      const cborClient = new CloudWatchClient({
        ...cloud.clientConfig('cloudwatch'),
        maxAttempts: 1,
        protocol: AwsSmithyRpcV2CborProtocol as never,
      });
      try {
        // Act
        await cborClient.send(new PutMetricAlarmCommand(alarmInput('cbor-alarm')));
        await cborClient.send(
          new SetAlarmStateCommand({
            AlarmName: 'cbor-alarm',
            StateValue: 'ALARM',
            StateReason: 'cbor',
          }),
        );
        const { MetricAlarms = [] } = await cborClient.send(
          new DescribeAlarmsCommand({ AlarmNames: ['cbor-alarm'] }),
        );
        const unknown = await rejection(
          cborClient.send(
            new SetAlarmStateCommand({
              AlarmName: 'cbor-missing',
              StateValue: 'OK',
              StateReason: 'x',
            }),
          ),
        );

        // Assert
        expect(MetricAlarms[0]).toMatchObject({ AlarmName: 'cbor-alarm', StateValue: 'ALARM' });
        expect(MetricAlarms[0]?.StateUpdatedTimestamp).toBeInstanceOf(Date);
        expect(unknown?.name).toBe('ResourceNotFound');
        expect(unknown?.$metadata.httpStatusCode).toBe(404);
      } finally {
        cborClient.destroy();
      }
    });
  });

  describe.each(clis)('with the AWS CLI $version ($path)', (cli) => {
    const cw = (...args: string[]) =>
      runCli(cli, cloud.endpoints.cloudwatch, cloud.clientEnv, ['cloudwatch', ...args]);
    const name = (suffix: string) => `cli-${cli.version}-${suffix}`;

    it('puts an alarm, sets and describes its state, pages and deletes', async () => {
      // Act
      const put = await cw(
        'put-metric-alarm',
        '--alarm-name',
        name('a'),
        '--namespace',
        'SecretsFanout',
        '--metric-name',
        'StageFailures',
        '--statistic',
        'Sum',
        '--period',
        '60',
        '--evaluation-periods',
        '1',
        '--threshold',
        '0',
        '--comparison-operator',
        'GreaterThanThreshold',
        '--dimensions',
        'Name=service,Value=secrets-fanout',
      );
      const created = await cw('describe-alarms', '--alarm-names', name('a'));
      const set = await cw(
        'set-alarm-state',
        '--alarm-name',
        name('a'),
        '--state-value',
        'ALARM',
        '--state-reason',
        'from the CLI',
      );
      const inAlarm = await cw(
        'describe-alarms',
        '--alarm-names',
        name('a'),
        'sdk-created',
        '--state-value',
        'ALARM',
        '--query',
        'MetricAlarms[].[AlarmName,StateValue,StateReason]',
      );
      // --page-size: the CLI sends MaxRecords and follows NextToken itself.
      const paged = await cw(
        'describe-alarms',
        '--alarm-names',
        'page-a',
        'page-b',
        'page-c',
        'page-d',
        'page-e',
        '--page-size',
        '2',
        '--query',
        'MetricAlarms[].AlarmName',
      );
      const deleted = await cw('delete-alarms', '--alarm-names', name('a'));

      // Assert
      expect(put.code, put.stderr).toBe(0);
      expect(created.json.MetricAlarms).toHaveLength(1);
      expect(created.json.MetricAlarms[0]).toMatchObject({
        AlarmName: name('a'),
        StateValue: 'INSUFFICIENT_DATA',
        Dimensions: [{ Name: 'service', Value: 'secrets-fanout' }],
        Period: 60,
        Threshold: 0,
      });
      expect(set.code, set.stderr).toBe(0);
      expect(inAlarm.json).toEqual([[name('a'), 'ALARM', 'from the CLI']]);
      expect(paged.json).toEqual(['page-a', 'page-b', 'page-c', 'page-d', 'page-e']);
      expect(deleted.code, deleted.stderr).toBe(0);
      expect(cloud.cloudwatch.alarms.has(name('a'))).toBe(false);
    });

    it('prints ResourceNotFound for SetAlarmState on an unknown alarm', async () => {
      // Act
      const result = await cw(
        'set-alarm-state',
        '--alarm-name',
        name('missing'),
        '--state-value',
        'OK',
        '--state-reason',
        'x',
      );

      // Assert: 254 for a service error in v2; v1 exits 255.
      expect([254, 255]).toContain(result.code);
      expect(errorCode(result)).toBe('ResourceNotFound');
      expect(result.stderr).toContain('when calling the SetAlarmState operation');
    });

    it('refuses an operation it does not implement in the CLI’s protocol', async () => {
      // Act
      const result = await cw(
        'put-metric-data',
        '--namespace',
        'SecretsFanout',
        '--metric-name',
        'StageFailures',
        '--value',
        '1',
      );

      // Assert: Query clients read InvalidAction, JSON clients UnknownOperationException.
      expect(result.code).not.toBe(0);
      expect(['InvalidAction', 'UnknownOperationException']).toContain(errorCode(result));
    });
  });
});
