/**
 * CloudWatch alarms, as far as the staged rollouts and the template need them: PutMetricAlarm
 * (single-metric, static-threshold alarms), DescribeAlarms, SetAlarmState and DeleteAlarms.
 * Nothing evaluates metrics here: an alarm changes state only through SetAlarmState (or the
 * tests' `cloud.setAlarmState`). In AWS a metric alarm set by SetAlarmState "returns to its
 * actual state quickly, often within seconds" (API_SetAlarmState.html); locally it stays where
 * it was put until it is set again, which is what a test of an alarm-gated rollout wants.
 *
 * Wire protocols, all three answered on one endpoint (the model's metadata: "protocols":
 * ["smithy-rpc-v2-cbor", "json", "query"], awsQueryCompatible, targetPrefix
 * GraniteServiceVersion20100801, xmlNamespace http://monitoring.amazonaws.com/doc/2010-08-01/):
 * - AWS JSON 1.0, what @aws-sdk/client-cloudwatch 3.1164 (runtimeConfig.shared.js:
 *   AwsJson1_0Protocol, awsQueryCompatible) and botocore 1.43 send (probed): POST /,
 *   X-Amz-Target: GraniteServiceVersion20100801.<Op>, application/x-amz-json-1.0,
 *   x-amzn-query-mode: true. Timestamps are epoch seconds. Errors are
 *   `{"__type": "com.amazonaws.cloudwatch#<Shape>", "message": …}` with the header
 *   `x-amzn-query-error: <Query code>;Sender`, from which the awsQueryCompatible clients take
 *   the Query error code (@aws-sdk/core ProtocolLib.setQueryCompatError; botocore
 *   parsers.py _do_query_compatible_error_parse).
 * - The Query protocol, what aws-cli 2.9 (Debian's; its botocore model says "protocol":
 *   "query") sends (probed): form-encoded `Action=DescribeAlarms&Version=2010-08-01&
 *   AlarmNames.member.1=…`, XML answers in the 2010-08-01 namespace, errors as
 *   `<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error>…`.
 * - Smithy RPC v2 CBOR (https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html):
 *   POST /service/GraniteServiceVersion20100801/operation/<Op>, `smithy-protocol: rpc-v2-cbor`,
 *   application/cbor bodies, timestamps as CBOR tag 1; errors with `__type` and the same
 *   x-amzn-query-error header. Encoded with @smithy/core's own CBOR codec.
 *
 * Shapes, limits and errors: the API reference, from the service model —
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DeleteAlarms.html
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CommonErrors.html
 * Constraint violations are Coral's ValidationError ("1 validation error detected: Value 'X'
 * at 'stateValue' failed to satisfy constraint: Member must satisfy enum value set: […]").
 * SetAlarmState on an unknown alarm is ResourceNotFound (HTTP 404) with no message: the AWS CLI
 * prints "An error occurred (ResourceNotFound) when calling the SetAlarmState operation:
 * Unknown" (botocore's placeholder for a missing message).
 *
 * State changes emit "CloudWatch Alarm State Change" (source aws.cloudwatch, resources [alarm
 * ARN], detail { alarmName, state, previousState, configuration })
 * (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html).
 * Not modelled: alarm actions (nothing is published to AlarmActions), the configuration-change
 * events, composite alarms, metric-math and anomaly-detection alarms (refused, naming them).
 */
import { cbor, tag } from '@smithy/core/cbor';
import type { Clock } from './clock.ts';
import {
  ACCOUNT_ID,
  decodeToken,
  encodeToken,
  parseForm,
  type Reply,
  type Request,
  ServiceError,
  type ServiceFaults,
  shouldThrottle,
  xmlEscape,
} from './http.ts';

type Json = Record<string, any>;

export type AlarmStateValue = 'OK' | 'ALARM' | 'INSUFFICIENT_DATA';

export interface MetricAlarm {
  AlarmName: string;
  AlarmArn: string;
  AlarmDescription?: string;
  AlarmConfigurationUpdatedTimestamp: Date;
  ActionsEnabled: boolean;
  OKActions: string[];
  AlarmActions: string[];
  InsufficientDataActions: string[];
  StateValue: AlarmStateValue;
  StateReason: string;
  StateReasonData?: string;
  StateUpdatedTimestamp: Date;
  StateTransitionedTimestamp: Date;
  MetricName: string;
  Namespace: string;
  Statistic?: string;
  ExtendedStatistic?: string;
  Dimensions: Array<{ Name: string; Value: string }>;
  Period: number;
  Unit?: string;
  EvaluationPeriods: number;
  DatapointsToAlarm?: number;
  Threshold: number;
  ComparisonOperator: string;
  TreatMissingData?: string;
  EvaluateLowSampleCountPercentile?: string;
}

/**
 * A stand-in alarm on a placeholder metric (`LocalCloud/<name>`): what `cloud.createAlarm` and
 * `npm run local -- alarm` create when a test or a person names an alarm that does not exist.
 * Nothing ever publishes the metric; its state is set by hand (SetAlarmState).
 */
export function placeholderAlarm(name: string) {
  return {
    AlarmName: name,
    Namespace: 'LocalCloud',
    MetricName: name,
    Statistic: 'Sum' as const,
    Period: 60,
    EvaluationPeriods: 1,
    Threshold: 0,
    ComparisonOperator: 'GreaterThanThreshold' as const,
  };
}

export interface AlarmStateChange {
  alarm: MetricAlarm;
  previous: AlarmStateValue;
}

export interface CloudWatchOptions {
  region: string;
  clock?: Clock;
  /** Emits an event on the default bus (source aws.cloudwatch). */
  emit?: (detailType: string, detail: Json, resources: string[]) => void;
}

const XMLNS = 'http://monitoring.amazonaws.com/doc/2010-08-01/';
const TARGET_PREFIX = 'GraniteServiceVersion20100801';
const CBOR_PATH = new RegExp(`^/service/${TARGET_PREFIX}/operation/([A-Za-z]+)$`);
const OPERATIONS = new Set(['PutMetricAlarm', 'DescribeAlarms', 'SetAlarmState', 'DeleteAlarms']);

const STATE_VALUES = ['INSUFFICIENT_DATA', 'ALARM', 'OK'];
const STATISTICS = ['SampleCount', 'Average', 'Sum', 'Minimum', 'Maximum'];
const COMPARISON_OPERATORS = [
  'GreaterThanOrEqualToThreshold',
  'GreaterThanThreshold',
  'LessThanThreshold',
  'LessThanOrEqualToThreshold',
  'LessThanLowerOrGreaterThanUpperThreshold',
  'LessThanLowerThreshold',
  'GreaterThanUpperThreshold',
];
// Used only with anomaly detection models (API_PutMetricAlarm.html, ComparisonOperator).
const ANOMALY_OPERATORS = new Set(COMPARISON_OPERATORS.slice(4));
const UNITS = [
  'Seconds',
  'Microseconds',
  'Milliseconds',
  'Bytes',
  'Kilobytes',
  'Megabytes',
  'Gigabytes',
  'Terabytes',
  'Bits',
  'Kilobits',
  'Megabits',
  'Gigabits',
  'Terabits',
  'Percent',
  'Count',
  'Bytes/Second',
  'Kilobytes/Second',
  'Megabytes/Second',
  'Gigabytes/Second',
  'Terabytes/Second',
  'Bits/Second',
  'Kilobits/Second',
  'Megabits/Second',
  'Gigabits/Second',
  'Terabits/Second',
  'Count/Second',
  'None',
];
const ALARM_TYPES = ['CompositeAlarm', 'MetricAlarm'];

// The error shapes of the model and the Query codes they carry (awsQueryError), for the JSON
// and CBOR `__type`; ResourceNotFound and InvalidNextToken are spelled the same in both.
const SHAPE_OF_CODE: Record<string, string> = {
  ValidationError: 'ValidationException',
  InvalidParameterValue: 'InvalidParameterValueException',
  MissingParameter: 'MissingRequiredParameterException',
  InvalidParameterCombination: 'InvalidParameterCombinationException',
  LimitExceeded: 'LimitExceededFault',
  InvalidFormat: 'InvalidFormatFault',
};

// The initial state of a new alarm: "When this operation creates an alarm, the alarm state is
// immediately set to INSUFFICIENT_DATA" (API_PutMetricAlarm.html); the reason is the one AWS
// shows for an alarm not evaluated yet.
const INITIAL_REASON = 'Unchecked: Initial alarm creation';

/** Coral's constraint-violation error: "N validation error(s) detected: a; b". */
function validation(errors: string[]): ServiceError {
  const count = errors.length;
  return new ServiceError(
    'ValidationError',
    `${count} validation error${count === 1 ? '' : 's'} detected: ${errors.join('; ')}`,
  );
}

const quote = (value: unknown) => (value === null ? 'null' : `'${String(value)}'`);

/** Constraint checks on one input, collecting Coral's messages (member names camelCased). */
class Checks {
  readonly errors: string[] = [];

  private at(member: string): string {
    return member.charAt(0).toLowerCase() + member.slice(1);
  }

  required(input: Json, member: string): boolean {
    if (input[member] !== undefined && input[member] !== null) return true;
    this.errors.push(
      `Value null at '${this.at(member)}' failed to satisfy constraint: Member must not be null`,
    );
    return false;
  }

  string(input: Json, member: string, min: number, max: number): void {
    const value = input[member];
    if (value === undefined || value === null) return;
    const text = String(value);
    if (text.length < min)
      this.errors.push(
        `Value ${quote(text)} at '${this.at(member)}' failed to satisfy constraint: Member must have length greater than or equal to ${min}`,
      );
    else if (text.length > max)
      this.errors.push(
        `Value ${quote(text)} at '${this.at(member)}' failed to satisfy constraint: Member must have length less than or equal to ${max}`,
      );
  }

  pattern(input: Json, member: string, pattern: RegExp, shown: string): void {
    const value = input[member];
    if (value === undefined || value === null || pattern.test(String(value))) return;
    this.errors.push(
      `Value ${quote(value)} at '${this.at(member)}' failed to satisfy constraint: Member must satisfy regular expression pattern: ${shown}`,
    );
  }

  enumeration(input: Json, member: string, values: string[]): void {
    const value = input[member];
    if (value === undefined || value === null || values.includes(String(value))) return;
    this.errors.push(
      `Value ${quote(value)} at '${this.at(member)}' failed to satisfy constraint: Member must satisfy enum value set: [${values.join(', ')}]`,
    );
  }

  integer(input: Json, member: string, min: number, max?: number): void {
    const value = input[member];
    if (value === undefined || value === null) return;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      this.errors.push(
        `Value ${quote(value)} at '${this.at(member)}' failed to satisfy constraint: Member must be an integer`,
      );
    } else if (value < min) {
      this.errors.push(
        `Value ${quote(value)} at '${this.at(member)}' failed to satisfy constraint: Member must have value greater than or equal to ${min}`,
      );
    } else if (max !== undefined && value > max) {
      this.errors.push(
        `Value ${quote(value)} at '${this.at(member)}' failed to satisfy constraint: Member must have value less than or equal to ${max}`,
      );
    }
  }

  number(input: Json, member: string): void {
    const value = input[member];
    if (value === undefined || value === null) return;
    if (typeof value !== 'number' || !Number.isFinite(value))
      this.errors.push(
        `Value ${quote(value)} at '${this.at(member)}' failed to satisfy constraint: Member must be a number`,
      );
  }

  /** A list of strings: its length, and each member's length (and enum, when given). */
  stringList(
    input: Json,
    member: string,
    limits: { max?: number; memberMin?: number; memberMax?: number; memberEnum?: string[] },
  ): void {
    const value = input[member];
    if (value === undefined || value === null) return;
    if (!Array.isArray(value)) {
      this.errors.push(
        `Value ${quote(value)} at '${this.at(member)}' failed to satisfy constraint: Member must be a list`,
      );
      return;
    }
    const shown = `'[${value.join(', ')}]'`;
    if (limits.max !== undefined && value.length > limits.max)
      this.errors.push(
        `Value ${shown} at '${this.at(member)}' failed to satisfy constraint: Member must have length less than or equal to ${limits.max}`,
      );
    const memberErrors: string[] = [];
    if (
      limits.memberMax !== undefined &&
      value.some((item) => String(item).length > (limits.memberMax as number))
    )
      memberErrors.push(`Member must have length less than or equal to ${limits.memberMax}`);
    if (
      limits.memberMin !== undefined &&
      value.some((item) => String(item).length < (limits.memberMin as number))
    )
      memberErrors.push(`Member must have length greater than or equal to ${limits.memberMin}`);
    if (limits.memberEnum && value.some((item) => !limits.memberEnum?.includes(String(item))))
      memberErrors.push(`Member must satisfy enum value set: [${limits.memberEnum.join(', ')}]`);
    if (memberErrors.length > 0)
      this.errors.push(
        `Value ${shown} at '${this.at(member)}' failed to satisfy constraint: Member must satisfy constraint: [${memberErrors.join(', ')}]`,
      );
  }

  throwIfAny(): void {
    if (this.errors.length > 0) throw validation(this.errors);
  }
}

/** The names of the Query parameters that are lists (`Name.member.N`), to read `Name=` as []. */
const QUERY_LISTS = new Set([
  'AlarmNames',
  'AlarmTypes',
  'OKActions',
  'AlarmActions',
  'InsufficientDataActions',
  'Dimensions',
  'Metrics',
  'Tags',
]);
const QUERY_INTEGERS = new Set([
  'Period',
  'EvaluationPeriods',
  'DatapointsToAlarm',
  'MaxRecords',
  'EvaluationInterval',
]);
const QUERY_DOUBLES = new Set(['Threshold']);
const QUERY_BOOLEANS = new Set(['ActionsEnabled']);

/**
 * The Query protocol's form as the JSON input the operations take: `A.member.N` lists,
 * `A.member.N.Field` lists of structures, numbers and booleans by the model's types.
 */
export function queryInput(form: Map<string, string>): Json {
  const input: Json = {};
  for (const [key, raw] of form) {
    if (key === 'Action' || key === 'Version') continue;
    const parts = key.split('.');
    const top = parts[0] as string;
    if (parts.length === 1) {
      if (QUERY_LISTS.has(top) && raw === '') input[top] = [];
      else if (QUERY_INTEGERS.has(top) || QUERY_DOUBLES.has(top))
        input[top] = raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
      else if (QUERY_BOOLEANS.has(top))
        input[top] = raw === 'true' ? true : raw === 'false' ? false : raw;
      else input[top] = raw;
      continue;
    }
    if (parts[1] !== 'member' || !/^\d+$/.test(parts[2] ?? '')) {
      input[key] = raw;
      continue;
    }
    const index = Number(parts[2]) - 1;
    const list: unknown[] = Array.isArray(input[top]) ? input[top] : [];
    input[top] = list;
    if (parts.length === 3) {
      list[index] = raw;
    } else {
      const item = (list[index] ?? {}) as Json;
      item[parts.slice(3).join('.')] = raw;
      list[index] = item;
    }
  }
  for (const [key, value] of Object.entries(input)) {
    if (Array.isArray(value)) input[key] = value.filter((item) => item !== undefined);
  }
  return input;
}

export class CloudWatchService {
  readonly alarms = new Map<string, MetricAlarm>();
  faults: ServiceFaults = {};
  private readonly options: CloudWatchOptions;
  private readonly changeListeners = new Set<(change: AlarmStateChange) => void>();
  private readonly deleteListeners = new Set<(alarm: MetricAlarm) => void>();

  constructor(options: CloudWatchOptions) {
    this.options = options;
  }

  now(): Date {
    return this.options.clock?.now() ?? new Date();
  }

  alarmArn(name: string): string {
    return `arn:aws:cloudwatch:${this.options.region}:${ACCOUNT_ID}:alarm:${name}`;
  }

  /** The state of an alarm, or undefined when there is no alarm of that name. */
  stateOf(name: string): AlarmStateValue | undefined {
    return this.alarms.get(name)?.StateValue;
  }

  /** Calls `listener` after every change of an alarm's StateValue; returns an unsubscribe. */
  onStateChange(listener: (change: AlarmStateChange) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Calls `listener` after an alarm is deleted; returns an unsubscribe. */
  onDelete(listener: (alarm: MetricAlarm) => void): () => void {
    this.deleteListeners.add(listener);
    return () => this.deleteListeners.delete(listener);
  }

  async handle(request: Request): Promise<Reply> {
    const cborOperation = CBOR_PATH.exec(request.path)?.[1];
    if (String(request.headers['smithy-protocol'] ?? '') === 'rpc-v2-cbor')
      return this.handleCbor(request, cborOperation ?? '');
    const target = request.headers['x-amz-target'];
    if (target !== undefined) return this.handleJson(request, String(target));
    return this.handleQuery(request);
  }

  // ---- Protocols ----

  private handleJson(request: Request, target: string): Reply {
    const operation = target.startsWith(`${TARGET_PREFIX}.`)
      ? target.slice(TARGET_PREFIX.length + 1)
      : '';
    try {
      if (shouldThrottle(this.faults)) throw new ServiceError('Throttling', 'Rate exceeded');
      if (!OPERATIONS.has(operation)) throw unknownOperation(operation || target);
      let input: unknown;
      try {
        input = request.body ? JSON.parse(request.body) : {};
      } catch {
        throw new ServiceError('SerializationException', 'Malformed JSON request body.');
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input))
        throw new ServiceError(
          'SerializationException',
          'Start of structure or map found where not expected.',
        );
      const output = this.call(operation, input as Json);
      return {
        status: 200,
        headers: { 'content-type': 'application/x-amz-json-1.0' },
        // Timestamps as epoch seconds (AWS JSON 1.0).
        body: JSON.stringify(mapDates(output, (date) => date.getTime() / 1000)),
      };
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return {
        status: error.status,
        headers: {
          'content-type': 'application/x-amz-json-1.0',
          ...queryErrorHeader(error),
        },
        body: JSON.stringify({
          __type: errorType(error),
          ...(error.message === '' ? {} : { message: error.message }),
        }),
      };
    }
  }

  private handleCbor(request: Request, operation: string): Reply {
    const headers = { 'content-type': 'application/cbor', 'smithy-protocol': 'rpc-v2-cbor' };
    try {
      if (shouldThrottle(this.faults)) throw new ServiceError('Throttling', 'Rate exceeded');
      if (!OPERATIONS.has(operation)) throw unknownOperation(operation || request.path);
      let input: unknown = {};
      if (request.rawBody.length > 0) {
        try {
          input = cbor.deserialize(new Uint8Array(request.rawBody));
        } catch {
          throw new ServiceError('SerializationException', 'Malformed CBOR request body.');
        }
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input))
        throw new ServiceError('SerializationException', 'Expected a CBOR map.');
      const output = this.call(operation, input as Json);
      return {
        status: 200,
        headers,
        body: '',
        rawBody: Buffer.from(
          cbor.serialize(mapDates(output, (date) => tag({ tag: 1, value: date.getTime() / 1000 }))),
        ),
      };
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return {
        status: error.status,
        headers: { ...headers, ...queryErrorHeader(error) },
        body: '',
        rawBody: Buffer.from(
          cbor.serialize({
            __type: errorType(error),
            ...(error.message === '' ? {} : { message: error.message }),
          }),
        ),
      };
    }
  }

  private handleQuery(request: Request): Reply {
    const form =
      request.method === 'GET' ? new Map(request.query.entries()) : parseForm(request.body);
    const operation = form.get('Action') ?? '';
    const xml = (status: number, body: string): Reply => ({
      status,
      headers: { 'content-type': 'text/xml' },
      body,
    });
    try {
      if (shouldThrottle(this.faults)) throw new ServiceError('Throttling', 'Rate exceeded');
      if (!OPERATIONS.has(operation)) {
        // CommonErrors.html: InvalidAction, HTTP 400.
        throw new ServiceError(
          'InvalidAction',
          `The action or operation requested is invalid. Verify that the action is typed correctly.`,
        );
      }
      const output = mapDates(this.call(operation, queryInput(form)), (date) => date.toISOString());
      const result = Object.keys(output).length === 0 ? '' : toXml(output);
      return xml(
        200,
        `<${operation}Response xmlns="${XMLNS}">${
          result === '' ? '' : `<${operation}Result>${result}</${operation}Result>`
        }<ResponseMetadata><RequestId>${request.requestId}</RequestId></ResponseMetadata></${operation}Response>`,
      );
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return xml(
        error.status,
        `<ErrorResponse xmlns="${XMLNS}"><Error><Type>Sender</Type><Code>${error.code}</Code>${
          error.message === '' ? '' : `<Message>${xmlEscape(error.message)}</Message>`
        }</Error><RequestId>${request.requestId}</RequestId></ErrorResponse>`,
      );
    }
  }

  private call(operation: string, input: Json): Json {
    switch (operation) {
      case 'PutMetricAlarm':
        this.putMetricAlarm(input);
        return {};
      case 'DescribeAlarms':
        return this.describeAlarms(input);
      case 'SetAlarmState':
        this.setAlarmState(input);
        return {};
      case 'DeleteAlarms':
        this.deleteAlarms(input);
        return {};
      default:
        throw unknownOperation(operation);
    }
  }

  // ---- Operations ----

  /**
   * PutMetricAlarm: creates an alarm in INSUFFICIENT_DATA, or overwrites an existing alarm's
   * configuration leaving its state unchanged (API_PutMetricAlarm.html). Returns the alarm.
   */
  putMetricAlarm(input: Json): MetricAlarm {
    const checks = new Checks();
    if (checks.required(input, 'AlarmName')) checks.string(input, 'AlarmName', 1, 255);
    checks.string(input, 'AlarmDescription', 0, 1024);
    checks.string(input, 'MetricName', 1, 255);
    checks.string(input, 'Namespace', 1, 255);
    checks.pattern(input, 'Namespace', /^[^:][\s\S]*$/, '[^:].*');
    checks.enumeration(input, 'Statistic', STATISTICS);
    checks.integer(input, 'Period', 1);
    checks.enumeration(input, 'Unit', UNITS);
    checks.integer(input, 'EvaluationPeriods', 1);
    checks.integer(input, 'DatapointsToAlarm', 1);
    checks.number(input, 'Threshold');
    checks.enumeration(input, 'ComparisonOperator', COMPARISON_OPERATORS);
    checks.string(input, 'TreatMissingData', 1, 255);
    checks.string(input, 'EvaluateLowSampleCountPercentile', 1, 255);
    for (const actions of ['OKActions', 'AlarmActions', 'InsufficientDataActions'])
      checks.stringList(input, actions, { max: 5, memberMin: 1, memberMax: 1024 });
    if (Array.isArray(input.Dimensions) && input.Dimensions.length > 30)
      checks.errors.push(
        "Value at 'dimensions' failed to satisfy constraint: Member must have length less than or equal to 30",
      );
    checks.throwIfAny();

    const name = String(input.AlarmName);
    // "The name must contain only UTF-8 characters, and can't contain ASCII control characters."
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the rule is about control characters
    if (/[\u0000-\u001f\u007f]/.test(name))
      throw new ServiceError(
        'InvalidParameterValue',
        'The parameter AlarmName must not contain ASCII control characters.',
      );
    for (const unsupported of ['Metrics', 'ThresholdMetricId', 'EvaluationCriteria']) {
      if (input[unsupported] !== undefined)
        throw new ServiceError(
          'ValidationError',
          `The local cloud implements single-metric alarms (MetricName) only, not ${unsupported}.`,
        );
    }
    if (ANOMALY_OPERATORS.has(String(input.ComparisonOperator)))
      throw new ServiceError(
        'ValidationError',
        `The local cloud does not implement anomaly detection alarms (ComparisonOperator ${input.ComparisonOperator}).`,
      );
    // "For each PutMetricAlarm operation, you must specify either MetricName, a Metrics array,
    // or an EvaluationCriteria"; Period and Threshold are "required for alarms based on static
    // thresholds"; EvaluationPeriods and ComparisonOperator for every metric alarm.
    for (const member of [
      'MetricName',
      'Namespace',
      'Period',
      'EvaluationPeriods',
      'Threshold',
      'ComparisonOperator',
    ]) {
      if (input[member] === undefined || input[member] === null)
        throw new ServiceError('MissingParameter', `The parameter ${member} is required.`);
    }
    // "you must specify either Statistic or ExtendedStatistic, but not both".
    if ((input.Statistic === undefined) === (input.ExtendedStatistic === undefined))
      throw new ServiceError(
        'InvalidParameterCombination',
        'Exactly one of the parameters Statistic and ExtendedStatistic must be specified.',
      );
    // "Valid values are 10, 20, 30, and any multiple of 60."
    const period = Number(input.Period);
    if (![10, 20, 30].includes(period) && period % 60 !== 0)
      throw new ServiceError(
        'InvalidParameterValue',
        'The parameter Period must be 10, 20, 30, or a multiple of 60.',
      );
    if (
      input.DatapointsToAlarm !== undefined &&
      Number(input.DatapointsToAlarm) > Number(input.EvaluationPeriods)
    )
      throw new ServiceError(
        'ValidationError',
        'DatapointsToAlarm must be less than or equal to EvaluationPeriods.',
      );
    if (
      input.TreatMissingData !== undefined &&
      !['breaching', 'notBreaching', 'ignore', 'missing'].includes(String(input.TreatMissingData))
    )
      throw new ServiceError(
        'ValidationError',
        `Option ${input.TreatMissingData} is not supported. Supported options for parameter TreatMissingData are missing, ignore, breaching and notBreaching.`,
      );
    const dimensions = ((input.Dimensions ?? []) as Json[]).map((dimension) => ({
      Name: String(dimension.Name ?? ''),
      Value: String(dimension.Value ?? ''),
    }));
    if (dimensions.some((dimension) => dimension.Name === '' || dimension.Value === ''))
      throw new ServiceError(
        'MissingParameter',
        'The parameters Dimensions.member.N.Name and Dimensions.member.N.Value are required.',
      );

    const now = this.now();
    const existing = this.alarms.get(name);
    const alarm: MetricAlarm = {
      AlarmName: name,
      AlarmArn: this.alarmArn(name),
      ...(input.AlarmDescription === undefined
        ? {}
        : { AlarmDescription: String(input.AlarmDescription) }),
      AlarmConfigurationUpdatedTimestamp: now,
      ActionsEnabled: input.ActionsEnabled !== false,
      OKActions: ((input.OKActions ?? []) as unknown[]).map(String),
      AlarmActions: ((input.AlarmActions ?? []) as unknown[]).map(String),
      InsufficientDataActions: ((input.InsufficientDataActions ?? []) as unknown[]).map(String),
      // "When you update an existing alarm, its state is left unchanged."
      StateValue: existing?.StateValue ?? 'INSUFFICIENT_DATA',
      StateReason: existing?.StateReason ?? INITIAL_REASON,
      ...(existing?.StateReasonData === undefined
        ? {}
        : { StateReasonData: existing.StateReasonData }),
      StateUpdatedTimestamp: existing?.StateUpdatedTimestamp ?? now,
      StateTransitionedTimestamp: existing?.StateTransitionedTimestamp ?? now,
      MetricName: String(input.MetricName),
      Namespace: String(input.Namespace),
      ...(input.Statistic === undefined ? {} : { Statistic: String(input.Statistic) }),
      ...(input.ExtendedStatistic === undefined
        ? {}
        : { ExtendedStatistic: String(input.ExtendedStatistic) }),
      Dimensions: dimensions,
      Period: period,
      ...(input.Unit === undefined ? {} : { Unit: String(input.Unit) }),
      EvaluationPeriods: Number(input.EvaluationPeriods),
      ...(input.DatapointsToAlarm === undefined
        ? {}
        : { DatapointsToAlarm: Number(input.DatapointsToAlarm) }),
      Threshold: Number(input.Threshold),
      ComparisonOperator: String(input.ComparisonOperator),
      ...(input.TreatMissingData === undefined
        ? {}
        : { TreatMissingData: String(input.TreatMissingData) }),
      ...(input.EvaluateLowSampleCountPercentile === undefined
        ? {}
        : { EvaluateLowSampleCountPercentile: String(input.EvaluateLowSampleCountPercentile) }),
    };
    this.alarms.set(name, alarm);
    return alarm;
  }

  /**
   * DescribeAlarms (API_DescribeAlarms.html): AlarmNames (up to 100) or AlarmNamePrefix (not
   * both), StateValue, ActionPrefix, AlarmTypes (metric alarms only when omitted), sorted by
   * name, paged by MaxRecords (1-100, default 50) and NextToken.
   */
  describeAlarms(input: Json): Json {
    const checks = new Checks();
    checks.stringList(input, 'AlarmNames', { max: 100, memberMin: 1, memberMax: 255 });
    checks.string(input, 'AlarmNamePrefix', 1, 255);
    checks.stringList(input, 'AlarmTypes', { memberEnum: ALARM_TYPES });
    checks.string(input, 'ChildrenOfAlarmName', 1, 255);
    checks.string(input, 'ParentsOfAlarmName', 1, 255);
    checks.enumeration(input, 'StateValue', STATE_VALUES);
    checks.string(input, 'ActionPrefix', 1, 1024);
    checks.integer(input, 'MaxRecords', 1, 100);
    checks.throwIfAny();
    for (const member of ['ChildrenOfAlarmName', 'ParentsOfAlarmName']) {
      if (input[member] !== undefined)
        throw new ServiceError(
          'ValidationError',
          `The local cloud does not implement composite alarms, so not ${member}.`,
        );
    }
    const names = input.AlarmNames as string[] | undefined;
    if (names !== undefined && names.length > 0 && input.AlarmNamePrefix !== undefined)
      throw new ServiceError(
        'InvalidParameterCombination',
        'AlarmNamePrefix and AlarmNames cannot be used together.',
      );
    const types = (input.AlarmTypes as string[] | undefined) ?? [];
    const metricAlarms = types.length === 0 || types.includes('MetricAlarm');
    let alarms = metricAlarms
      ? [...this.alarms.values()].sort((a, b) =>
          a.AlarmName < b.AlarmName ? -1 : a.AlarmName > b.AlarmName ? 1 : 0,
        )
      : [];
    if (names !== undefined && names.length > 0)
      alarms = alarms.filter((alarm) => names.includes(alarm.AlarmName));
    if (input.AlarmNamePrefix !== undefined)
      alarms = alarms.filter((alarm) => alarm.AlarmName.startsWith(String(input.AlarmNamePrefix)));
    if (input.StateValue !== undefined)
      alarms = alarms.filter((alarm) => alarm.StateValue === input.StateValue);
    if (input.ActionPrefix !== undefined) {
      const prefix = String(input.ActionPrefix);
      alarms = alarms.filter((alarm) =>
        [...alarm.OKActions, ...alarm.AlarmActions, ...alarm.InsufficientDataActions].some(
          (action) => action.startsWith(prefix),
        ),
      );
    }
    const fingerprint = JSON.stringify([
      names ?? [],
      input.AlarmNamePrefix,
      types,
      input.StateValue,
      input.ActionPrefix,
    ]);
    let offset = 0;
    if (input.NextToken !== undefined) {
      const decoded = decodeToken(String(input.NextToken), fingerprint);
      if (decoded === undefined)
        throw new ServiceError('InvalidNextToken', 'The next token specified is invalid.');
      offset = decoded;
    }
    const size = typeof input.MaxRecords === 'number' ? input.MaxRecords : 50;
    const page = alarms.slice(offset, offset + size);
    return {
      MetricAlarms: page.map((alarm) => alarmWire(alarm)),
      CompositeAlarms: [],
      ...(offset + size < alarms.length
        ? { NextToken: encodeToken(offset + size, fingerprint) }
        : {}),
    };
  }

  /**
   * SetAlarmState (API_SetAlarmState.html): ResourceNotFound for an unknown alarm, InvalidFormat
   * when StateReasonData is not JSON. A change of StateValue emits "CloudWatch Alarm State
   * Change" and tells the listeners (Run Command's alarm monitoring among them).
   */
  setAlarmState(input: Json): MetricAlarm {
    const checks = new Checks();
    if (checks.required(input, 'AlarmName')) checks.string(input, 'AlarmName', 1, 255);
    if (checks.required(input, 'StateValue')) checks.enumeration(input, 'StateValue', STATE_VALUES);
    if (checks.required(input, 'StateReason')) checks.string(input, 'StateReason', 0, 1023);
    checks.string(input, 'StateReasonData', 0, 4000);
    checks.throwIfAny();
    if (input.StateReasonData !== undefined) {
      try {
        JSON.parse(String(input.StateReasonData));
      } catch {
        // InvalidFormatFault: "Data was not syntactically valid JSON."
        throw new ServiceError('InvalidFormat', 'Data was not syntactically valid JSON.');
      }
    }
    const alarm = this.alarms.get(String(input.AlarmName));
    if (!alarm) throw new ServiceError('ResourceNotFound', '', 404);
    const previous = {
      value: alarm.StateValue,
      reason: alarm.StateReason,
      reasonData: alarm.StateReasonData,
      timestamp: alarm.StateUpdatedTimestamp,
    };
    const now = this.now();
    const value = input.StateValue as AlarmStateValue;
    alarm.StateReason = String(input.StateReason);
    if (input.StateReasonData === undefined) delete alarm.StateReasonData;
    else alarm.StateReasonData = String(input.StateReasonData);
    if (value === previous.value) return alarm;
    alarm.StateValue = value;
    alarm.StateUpdatedTimestamp = now;
    alarm.StateTransitionedTimestamp = now;
    this.options.emit?.(
      'CloudWatch Alarm State Change',
      {
        alarmName: alarm.AlarmName,
        state: {
          value,
          reason: alarm.StateReason,
          ...(alarm.StateReasonData === undefined ? {} : { reasonData: alarm.StateReasonData }),
          timestamp: eventTimestamp(now),
        },
        previousState: {
          value: previous.value,
          reason: previous.reason,
          ...(previous.reasonData === undefined ? {} : { reasonData: previous.reasonData }),
          timestamp: eventTimestamp(previous.timestamp),
        },
        configuration: {
          ...(alarm.AlarmDescription === undefined ? {} : { description: alarm.AlarmDescription }),
          metrics: [
            {
              id: alarm.AlarmArn,
              metricStat: {
                metric: {
                  dimensions: Object.fromEntries(
                    alarm.Dimensions.map((dimension) => [dimension.Name, dimension.Value]),
                  ),
                  name: alarm.MetricName,
                  namespace: alarm.Namespace,
                },
                period: alarm.Period,
                stat: alarm.Statistic ?? alarm.ExtendedStatistic,
              },
              returnData: true,
            },
          ],
        },
      },
      [alarm.AlarmArn],
    );
    for (const listener of [...this.changeListeners]) listener({ alarm, previous: previous.value });
    return alarm;
  }

  /**
   * DeleteAlarms (API_DeleteAlarms.html): up to 100 names; "If you specify any incorrect alarm
   * names, the alarms you specify with correct names are still deleted" — unknown names are
   * skipped without an error.
   */
  deleteAlarms(input: Json): void {
    const checks = new Checks();
    if (checks.required(input, 'AlarmNames'))
      checks.stringList(input, 'AlarmNames', { max: 100, memberMin: 1, memberMax: 255 });
    checks.throwIfAny();
    for (const name of input.AlarmNames as string[]) {
      const alarm = this.alarms.get(name);
      if (!alarm) continue;
      this.alarms.delete(name);
      for (const listener of [...this.deleteListeners]) listener(alarm);
    }
  }
}

/** A MetricAlarm as the operations return it (the protocols write its dates). */
function alarmWire(alarm: MetricAlarm): Json {
  return { ...alarm, Dimensions: alarm.Dimensions.map((dimension) => ({ ...dimension })) };
}

/** "2019-10-01T13:56:40.987+0000", the state timestamps of the alarm events. */
function eventTimestamp(date: Date): string {
  return date.toISOString().replace('Z', '+0000');
}

function unknownOperation(operation: string): ServiceError {
  return new ServiceError(
    'UnknownOperationException',
    `The local cloud does not implement CloudWatch ${operation}.`,
  );
}

function errorType(error: ServiceError): string {
  if (error.code === 'UnknownOperationException' || error.code === 'SerializationException')
    return `com.amazon.coral.service#${error.code}`;
  return `com.amazonaws.cloudwatch#${SHAPE_OF_CODE[error.code] ?? error.code}`;
}

function queryErrorHeader(error: ServiceError): Record<string, string> {
  if (error.code === 'UnknownOperationException' || error.code === 'SerializationException')
    return {};
  return { 'x-amzn-query-error': `${error.code};Sender` };
}

/** `value` with every Date replaced by `write(date)`: each protocol's timestamp format. */
function mapDates(value: any, write: (date: Date) => unknown): any {
  if (value instanceof Date) return write(value);
  if (Array.isArray(value)) return value.map((item) => mapDates(item, write));
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, mapDates(item, write)]),
    );
  return value;
}

/** A JSON output as the Query protocol's XML: lists as `<member>`, doubles with a decimal point. */
function toXml(output: Json): string {
  let out = '';
  for (const [key, value] of Object.entries(output)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) {
      out += `<${key}>${value
        .map((item) =>
          typeof item === 'object' && item !== null
            ? `<member>${toXml(item as Json)}</member>`
            : `<member>${xmlEscape(String(item))}</member>`,
        )
        .join('')}</${key}>`;
    } else if (typeof value === 'object' && value !== null) {
      out += `<${key}>${toXml(value as Json)}</${key}>`;
    } else {
      const text =
        key === 'Threshold' && Number.isInteger(value) ? `${value}.0` : xmlEscape(String(value));
      out += `<${key}>${text}</${key}>`;
    }
  }
  return out;
}
