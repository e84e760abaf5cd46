/**
 * SSM over the JSON 1.1 protocol (POST /, X-Amz-Target: AmazonSSM.<Op>,
 * application/x-amz-json-1.1; errors `{"__type": "<Code>", "message": "..."}` with HTTP 400),
 * for the operations the service, its instances and the tests call. Shapes, limits and error
 * codes follow the API reference (https://docs.aws.amazon.com/systems-manager/latest/APIReference/)
 * and the research notes (/tmp/research/aws-facts.md §3-§5, from botocore's ssm service model).
 *
 * Identity (from the SigV4 Authorization header's access key id):
 * - an instance of the fleet (its agent and its `aws` sign with key id = instance id) may call
 *   GetParameter/GetParameters on the parameters of its own environment only (names under
 *   `/<its environment tag>/`), mirroring the per-environment instance policy the stack outputs;
 * - ADMIN_ACCESS_KEY_ID (tests, `npm run local`) may do anything;
 * - anything else is the service (a Lambda role): everything except reading a value
 *   (GetParameter*), which no function role may do (AccessDeniedException).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Clock } from './clock.ts';
import type { Fleet, Instance } from './fleet.ts';
import {
  ACCOUNT_ID,
  ADMIN_ACCESS_KEY_ID,
  decodeToken,
  encodeToken,
  type Reply,
  type Request,
  ServiceError,
  type ServiceFaults,
  shouldThrottle,
} from './http.ts';
import {
  type CommandDocument,
  parseCommandDocument,
  type ResolvedParameters,
  SsmServiceError,
  validateDocumentDefaults,
  validateSendCommandParameters,
} from './ssm-document.ts';

type Json = Record<string, any>;

export interface ParameterVersion {
  Name: string;
  Type: 'String' | 'StringList' | 'SecureString';
  Value: string;
  Version: number;
  LastModifiedDate: Date;
  LastModifiedUser: string;
  Description?: string;
  KeyId?: string;
  AllowedPattern?: string;
  DataType: string;
  Tier: 'Standard';
  Labels: string[];
}

export type InvocationStatus =
  | 'Pending'
  | 'InProgress'
  | 'Delayed'
  | 'Success'
  | 'Cancelled'
  | 'TimedOut'
  | 'Failed'
  | 'Cancelling';

export interface InvocationState {
  commandId: string;
  instanceId: string;
  requestedDateTime: Date;
  status: InvocationStatus;
  /** StatusDetails, the API's spelling without spaces (e.g. DeliveryTimedOut), as the CLI shows it. */
  statusDetails: string;
  responseCode: number;
  pluginName: string;
  executionStart?: Date;
  executionEnd?: Date;
  stdout: string;
  stderr: string;
}

/** SendCommand's AlarmConfiguration (API_AlarmConfiguration.html). */
export interface CommandAlarmConfiguration {
  IgnorePollAlarmFailure: boolean;
  Alarms: Array<{ Name: string }>;
}

/** A Command's TriggeredAlarms entry (API_AlarmStateInformation.html; State UNKNOWN | ALARM). */
export interface TriggeredAlarm {
  Name: string;
  State: 'ALARM' | 'UNKNOWN';
}

export interface CommandState {
  commandId: string;
  documentName: string;
  document: CommandDocument;
  parameters: Record<string, string[]>;
  resolved: ResolvedParameters;
  comment: string;
  requestedDateTime: Date;
  expiresAfter: Date;
  instanceIds: string[];
  /** The Targets it was sent with (then InstanceIds on the wire is empty), if any. */
  targets?: Json[];
  maxConcurrency: string;
  maxErrors: string;
  timeoutSeconds: number;
  cloudWatchOutputConfig: Json;
  status: string;
  statusDetails: string;
  invocations: Map<string, InvocationState>;
  /** As sent; `{ IgnorePollAlarmFailure: false, Alarms: [] }` when not (as AWS lists it). */
  alarmConfiguration: CommandAlarmConfiguration;
  /** The alarm that stopped the command, once one did. */
  triggeredAlarms: TriggeredAlarm[];
  /** Invocations the alarm kept from running (they ended Cancelled). */
  cancelledByAlarm: Set<string>;
}

export interface SsmEvent {
  detailType: string;
  resources: string[];
  detail: Json;
}

export interface SsmOptions {
  region: string;
  fleet: Fleet;
  /** The environment of an instance (its environment tag), for the GetParameter policy. */
  environmentOf: (instance: Instance) => string | undefined;
  /** Emits an event on the default bus (Parameter Store Change, Run Command status changes). */
  emit: (event: SsmEvent) => void;
  /** The local cloud's clock: command and parameter dates are simulated time. */
  clock?: Clock;
  /**
   * CloudWatch, for the commands sent with an AlarmConfiguration: an alarm's state, undefined
   * when there is no such alarm (Run Command then cannot retrieve its state). Without it every
   * alarm is unknown.
   */
  alarms?: { stateOf(name: string): 'OK' | 'ALARM' | 'INSUFFICIENT_DATA' | undefined };
}

const TERMINAL_DETAILS = new Set([
  'Success',
  'Failed',
  'DeliveryTimedOut',
  'ExecutionTimedOut',
  'Undeliverable',
  'Terminated',
  'Cancelled',
  'InvalidPlatform',
  'AccessDenied',
]);

const INSTANCE_ID = /(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)/;
const MAX_CONCURRENCY = /^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$/;
const MAX_ERRORS = /^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$/;
const DOCUMENT_NAME = /^[a-zA-Z0-9_\-.:/]{3,128}$/;
const PARAMETER_NAME_CHARS = /^[a-zA-Z0-9_.\-/]+$/;
/** Versions of a parameter Parameter Store keeps (sysman-paramstore-versions.html). */
export const MAX_KEPT_VERSIONS = 100;
// API_Alarm.html: Name, length 1-255, pattern ^(?!\s*$).+ (not blank, one line).
const ALARM_NAME = /^(?!\s*$).+$/;

// The operations that share Parameter Store's throughput quota (GetParameter: "Parameter Store
// throughput … applies to GetParameter, GetParameters" — API_GetParameter.html; the quotas page
// https://docs.aws.amazon.com/general/latest/gr/ssm.html lists GetParametersByPath in the same
// default 40 TPS).
const PARAMETER_READS = new Set(['GetParameter', 'GetParameters', 'GetParametersByPath']);

/**
 * A token bucket on the local cloud's (simulated) clock: `tps` tokens a simulated second, at
 * most `burst` saved up; a call takes one or is throttled. Starts full.
 */
export class ParameterThroughput {
  readonly tps: number;
  readonly burst: number;
  private readonly nowMs: () => number;
  private tokens: number;
  private lastMs: number;

  constructor(tps: number, burst: number, nowMs: () => number) {
    if (!(tps > 0) || !(burst >= 1)) {
      throw new RangeError(`throughput needs tps > 0 and burst >= 1, got ${tps} / ${burst}`);
    }
    this.tps = tps;
    this.burst = burst;
    this.nowMs = nowMs;
    this.tokens = burst;
    this.lastMs = nowMs();
  }

  /** Takes a token if one is there. */
  take(): boolean {
    const now = this.nowMs();
    if (now > this.lastMs) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.lastMs) / 1000) * this.tps);
      this.lastMs = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

const epoch = (date: Date) => date.getTime() / 1000;

function validation(errors: string[]): ServiceError {
  const count = errors.length;
  return new ServiceError(
    'ValidationException',
    `${count} validation error${count === 1 ? '' : 's'} detected: ${errors.join('; ')}`,
  );
}

/**
 * SendCommand's AlarmConfiguration against the API model: Alarms required, exactly 1 item
 * ("Array Members: Fixed number of 1 item", API_AlarmConfiguration.html); each Name 1-255
 * characters matching ^(?!\s*$).+ (API_Alarm.html); IgnorePollAlarmFailure a boolean.
 */
function checkAlarmConfiguration(configuration: unknown, errors: string[]): void {
  if (configuration === undefined) return;
  const config = (configuration ?? {}) as Json;
  const alarms = config.Alarms;
  if (alarms === undefined || alarms === null) {
    errors.push(
      "Value null at 'alarmConfiguration.alarms' failed to satisfy constraint: Member must not be null",
    );
  } else if (!Array.isArray(alarms) || alarms.length !== 1) {
    const count = Array.isArray(alarms) ? alarms.length : 0;
    errors.push(
      `Value '${JSON.stringify(alarms)}' at 'alarmConfiguration.alarms' failed to satisfy constraint: Member must have length ${count < 1 ? 'greater than or equal to 1' : 'less than or equal to 1'}`,
    );
  } else {
    alarms.forEach((alarm: Json, index: number) => {
      const name = alarm?.Name;
      const at = `alarmConfiguration.alarms.${index + 1}.member.name`;
      if (typeof name !== 'string') {
        errors.push(`Value null at '${at}' failed to satisfy constraint: Member must not be null`);
      } else if (name.length < 1) {
        errors.push(
          `Value '' at '${at}' failed to satisfy constraint: Member must have length greater than or equal to 1`,
        );
      } else if (name.length > 255) {
        errors.push(
          `Value '${name}' at '${at}' failed to satisfy constraint: Member must have length less than or equal to 255`,
        );
      } else if (!ALARM_NAME.test(name)) {
        errors.push(
          `Value '${name}' at '${at}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(?!\\s*$).+`,
        );
      }
    });
  }
  if (
    config.IgnorePollAlarmFailure !== undefined &&
    typeof config.IgnorePollAlarmFailure !== 'boolean'
  ) {
    errors.push(
      `Value '${String(config.IgnorePollAlarmFailure)}' at 'alarmConfiguration.ignorePollAlarmFailure' failed to satisfy constraint: Member must be a boolean`,
    );
  }
}

function checkMaxResults(value: unknown, min: number, max: number, errors: string[]): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || value < min) {
    errors.push(
      `Value '${String(value)}' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to ${min}`,
    );
  } else if (value > max) {
    errors.push(
      `Value '${value}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to ${max}`,
    );
  }
}

/** Pages `items` by MaxResults/NextToken; `fingerprint` ties a token to its query. */
function page<T>(
  items: T[],
  input: Json,
  defaultSize: number,
  fingerprint: string,
): { items: T[]; next?: string } {
  let offset = 0;
  if (input.NextToken !== undefined) {
    const decoded = decodeToken(String(input.NextToken), fingerprint);
    if (decoded === undefined)
      throw new ServiceError('InvalidNextToken', "The specified token isn't valid.");
    offset = decoded;
  }
  const size = typeof input.MaxResults === 'number' ? input.MaxResults : defaultSize;
  const slice = items.slice(offset, offset + size);
  const nextOffset = offset + size;
  return nextOffset < items.length
    ? { items: slice, next: encodeToken(nextOffset, fingerprint) }
    : { items: slice };
}

export class SsmService {
  readonly parameters = new Map<string, ParameterVersion[]>();
  readonly documents = new Map<
    string,
    { document: CommandDocument; content: string; created: Date }
  >();
  readonly commands = new Map<string, CommandState>();
  faults: ServiceFaults = {};
  /**
   * Parameter Store's throughput quota: GetParameter, GetParameters and GetParametersByPath
   * share one token bucket (off when undefined). See `ParameterThroughput`.
   */
  parameterThroughput: ParameterThroughput | undefined;
  /** Value reads (GetParameter*) answered and refused with ThrottlingException, by caller. */
  readonly parameterReads = { accepted: 0, throttled: 0, throttledBy: new Map<string, number>() };
  /** Called once per accepted SendCommand: the agent side takes it from here. */
  onSendCommand: (command: CommandState) => void = () => undefined;
  private readonly options: SsmOptions;

  constructor(options: SsmOptions) {
    this.options = options;
  }

  /**
   * Sets Parameter Store's throughput quota (`undefined`: unlimited). AWS's default is 40 TPS
   * shared by GetParameter, GetParameters and GetParametersByPath; higher throughput raises it
   * (https://docs.aws.amazon.com/general/latest/gr/ssm.html, "Parameter Store max throughput").
   */
  throttleParameterReads(tps: number | undefined, burst?: number): void {
    this.parameterThroughput =
      tps === undefined
        ? undefined
        : new ParameterThroughput(tps, burst ?? tps, () => this.now().getTime());
  }

  /**
   * One GetParameter* call against the throughput quota: true when admitted, false (counted)
   * when Parameter Store would answer ThrottlingException. The stub agent calls it too.
   */
  admitParameterRead(caller: string): boolean {
    if (this.parameterThroughput === undefined || this.parameterThroughput.take()) {
      this.parameterReads.accepted += 1;
      return true;
    }
    this.parameterReads.throttled += 1;
    const by = this.parameterReads.throttledBy;
    by.set(caller, (by.get(caller) ?? 0) + 1);
    return false;
  }

  /** The simulated time (real time without a clock). */
  now(): Date {
    return this.options.clock?.now() ?? new Date();
  }

  // ---- Documents (from AWS::SSM::Document resources) ----------------------------------------

  registerDocument(name: string, content: unknown): void {
    const text = typeof content === 'string' ? content : JSON.stringify(content);
    const document = parseCommandDocument(text);
    validateDocumentDefaults(document);
    this.documents.set(name, { document, content: text, created: this.now() });
  }

  // ---- Parameters -------------------------------------------------------------------------

  /** PutParameter as the admin would; returns the new version. Throws ServiceError like the API. */
  putParameter(input: Json, user = 'arn:aws:iam::123456789012:user/local-admin'): number {
    const name = String(input.Name ?? '');
    this.checkParameterName(name);
    // API_PutParameter.html, Tags: "You can't use Tags with Overwrite"; tags of an existing
    // parameter change through AddTagsToResource.
    if (input.Overwrite === true && Array.isArray(input.Tags) && input.Tags.length > 0) {
      throw new ServiceError(
        'ValidationException',
        "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
      );
    }
    if (input.Policies !== undefined) {
      throw new ServiceError(
        'ValidationException',
        'The local cloud does not implement parameter Policies (Advanced tier only).',
      );
    }
    if (typeof input.Value !== 'string')
      throw validation([
        "Value null at 'value' failed to satisfy constraint: Member must not be null",
      ]);
    const value = input.Value as string;
    if (value.length === 0)
      throw validation([
        "Value at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1",
      ]);
    // Standard tier: at most 4 KB (https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html).
    if (Buffer.byteLength(value) > 4096) {
      throw validation([
        "Value at 'value' failed to satisfy constraint: Member must have length less than or equal to 4096",
      ]);
    }
    if (input.Tier !== undefined && input.Tier !== 'Standard') {
      throw new ServiceError(
        'ValidationException',
        'The local cloud models the Standard tier only.',
      );
    }
    const versions = this.parameters.get(name);
    const type = input.Type ?? versions?.at(-1)?.Type;
    if (type === undefined)
      throw new ServiceError(
        'ValidationException',
        'A parameter type is required when you create a parameter.',
      );
    if (!['String', 'StringList', 'SecureString'].includes(type)) {
      throw validation([
        `Value '${type}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]`,
      ]);
    }
    if (versions && input.Overwrite !== true) {
      throw new ServiceError(
        'ParameterAlreadyExists',
        'The parameter already exists. To overwrite this value, set the overwrite option in the request to true.',
      );
    }
    if (
      versions &&
      input.Type !== undefined &&
      input.Type !== versions.at(-1)?.Type &&
      type === 'SecureString'
    ) {
      // Changing to SecureString is allowed; nothing else to check locally.
    }
    const pattern = input.AllowedPattern ?? versions?.at(-1)?.AllowedPattern;
    if (pattern !== undefined && !new RegExp(pattern).test(value)) {
      throw new ServiceError(
        'ParameterPatternMismatchException',
        `Parameter value, cannot be validated against allowedPattern: ${pattern}`,
      );
    }
    const previous = versions?.at(-1);
    const version: ParameterVersion = {
      Name: name,
      Type: type,
      Value: value,
      Version: (previous?.Version ?? 0) + 1,
      LastModifiedDate: this.now(),
      LastModifiedUser: user,
      ...((input.Description ?? previous?.Description)
        ? { Description: input.Description ?? previous?.Description }
        : {}),
      ...(type === 'SecureString'
        ? { KeyId: input.KeyId ?? previous?.KeyId ?? 'alias/aws/ssm' }
        : {}),
      ...(pattern === undefined ? {} : { AllowedPattern: pattern }),
      DataType: input.DataType ?? 'text',
      Tier: 'Standard',
      Labels: [],
    };
    const list = versions ?? [];
    // Parameter Store keeps the last 100 versions and deletes the oldest when a new one is made,
    // unless the oldest has a label: then PutParameter fails and nothing changes
    // (sysman-paramstore-versions.html; ParameterMaxVersionLimitExceeded in the API reference).
    const oldest = list[0];
    if (list.length >= MAX_KEPT_VERSIONS && oldest !== undefined && oldest.Labels.length > 0) {
      throw new ServiceError(
        'ParameterMaxVersionLimitExceeded',
        `You attempted to create a new version of ${name} by calling the PutParameter API with the overwrite flag. Version ${oldest.Version}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.`,
      );
    }
    list.push(version);
    if (list.length > MAX_KEPT_VERSIONS) list.shift();
    this.parameters.set(name, list);
    // Parameter Store Change event (sysman-paramstore-cwe.html), research notes §1.
    this.emitParameterChange(previous ? 'Update' : 'Create', version);
    return version.Version;
  }

  /** DeleteParameter; throws ParameterNotFound. */
  deleteParameter(name: string): void {
    const versions = this.parameters.get(name);
    if (!versions) throw new ServiceError('ParameterNotFound', '');
    this.parameters.delete(name);
    this.emitParameterChange('Delete', versions.at(-1) as ParameterVersion);
  }

  /** The current version of a parameter (for tests), or undefined. */
  currentParameter(name: string): ParameterVersion | undefined {
    return this.parameters.get(name)?.at(-1);
  }

  private emitParameterChange(operation: string, version: ParameterVersion): void {
    this.options.emit({
      detailType: 'Parameter Store Change',
      resources: [this.parameterArn(version.Name)],
      detail: {
        operation,
        name: version.Name,
        type: version.Type,
        description: version.Description ?? '',
      },
    });
  }

  parameterArn(name: string): string {
    return `arn:aws:ssm:${this.options.region}:${ACCOUNT_ID}:parameter/${name.replace(/^\//, '')}`;
  }

  private checkParameterName(name: string): void {
    if (name.length < 1 || name.length > 2048) {
      throw validation([
        `Value '${name}' at 'name' failed to satisfy constraint: Member must have length between 1 and 2048`,
      ]);
    }
    // https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-su-create.html
    if (!PARAMETER_NAME_CHARS.test(name)) {
      throw new ServiceError(
        'ValidationException',
        'Parameter name: can\'t be prefixed with "aws" or "ssm" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol "/". Valid example: /get/parameters2-/by1./path0_.',
      );
    }
    // Reserved names ("can't be prefixed with aws or ssm", API_PutParameter.html, Name): AWS
    // answers AccessDeniedException "No access to reserved parameter name: …", not a validation error.
    if (/^\/?(aws|ssm)/i.test(name)) {
      throw new ServiceError(
        'AccessDeniedException',
        `No access to reserved parameter name: ${name}.`,
      );
    }
    if (name.includes('/') && !name.startsWith('/')) {
      throw new ServiceError(
        'ValidationException',
        'Parameter name must be a fully qualified name.',
      );
    }
    if (name.split('/').length - 1 > 15) {
      throw new ServiceError(
        'HierarchyLevelLimitExceededException',
        'A hierarchy can have a maximum of 15 levels.',
      );
    }
  }

  // ---- Wire ---------------------------------------------------------------------------------

  async handle(request: Request): Promise<Reply> {
    const target = String(request.headers['x-amz-target'] ?? '');
    const operation = target.startsWith('AmazonSSM.') ? target.slice('AmazonSSM.'.length) : '';
    try {
      // Throttling: HTTP 400 ThrottlingException "Rate exceeded" (research notes §4).
      if (shouldThrottle(this.faults))
        throw new ServiceError('ThrottlingException', 'Rate exceeded');
      if (PARAMETER_READS.has(operation) && !this.admitParameterRead(request.accessKeyId))
        throw new ServiceError('ThrottlingException', 'Rate exceeded');
      const input = (request.body ? JSON.parse(request.body) : {}) as Json;
      this.authorize(operation, input, request.accessKeyId);
      const output = this.call(operation, input, request.accessKeyId);
      return {
        status: 200,
        headers: { 'content-type': 'application/x-amz-json-1.1' },
        body: JSON.stringify(output),
      };
    } catch (error) {
      if (error instanceof ServiceError || error instanceof SsmServiceError) {
        const status = error instanceof ServiceError ? error.status : 400;
        const body: Json = { __type: error.code };
        if (error.message !== '') body.message = error.message;
        return {
          status,
          headers: { 'content-type': 'application/x-amz-json-1.1' },
          body: JSON.stringify(body),
        };
      }
      throw error;
    }
  }

  /**
   * The instance policy, and no value reads for the service. GetParameter and GetParameters are
   * authorized against "the requested parameter" / "each requested parameter", GetParametersByPath
   * against the requested path (https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-retrieval-authorization.html).
   * A selector (`/prod/env.php:7`, `name:label`) picks a version of that parameter: the resource
   * is the parameter's ARN, `arn:…:parameter/prod/env.php` (IAM's `parameter` resource type has
   * no version in it: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html,
   * and GetParameter answers that same ARN for a selected version: awscli's
   * examples/ssm/get-parameter.rst), so the policy that reads a parameter reads every version it
   * still keeps.
   */
  private authorize(operation: string, input: Json, accessKeyId: string): void {
    if (accessKeyId === ADMIN_ACCESS_KEY_ID) return;
    const readsValue = /^GetParameter/.test(operation);
    const instance = this.options.fleet.find(accessKeyId);
    // The parameters (or the path) a call names, selectors dropped.
    const requested: string[] =
      operation === 'GetParameters'
        ? ((input.Names ?? []) as unknown[]).map((candidate) => parameterOf(String(candidate)))
        : operation === 'GetParametersByPath'
          ? [String(input.Path ?? '')]
          : [parameterOf(String(input.Name ?? ''))];
    if (instance) {
      const environment = this.options.environmentOf(instance);
      const own = (candidate: string) =>
        environment !== undefined && candidate.startsWith(`/${environment}/`);
      // The instance policy's ssm:GetParametersByPath on its own mapped paths.
      const allowed = (candidate: string) =>
        operation === 'GetParametersByPath'
          ? own(`${candidate.replace(/\/$/, '')}/`)
          : operation === 'GetParameter' || operation === 'GetParameters'
            ? own(candidate)
            : false;
      const denied = requested.find((candidate) => !allowed(candidate));
      if (denied === undefined) return;
      const role = `${environment ?? 'untagged'}-instance-role`;
      throw accessDenied(
        `arn:aws:sts::${ACCOUNT_ID}:assumed-role/${role}/${instance.id}`,
        operation,
        readsValue ? this.parameterArn(denied) : '*',
      );
    }
    const resource = this.parameterArn(requested[0] ?? '');
    if (readsValue) {
      const session = accessKeyId.replace(/^ASIA-LOCAL-/, '') || 'anonymous';
      throw accessDenied(
        `arn:aws:sts::${ACCOUNT_ID}:assumed-role/${session}-role/${session}`,
        operation,
        resource,
      );
    }
  }

  private call(operation: string, input: Json, caller: string): Json {
    switch (operation) {
      case 'PutParameter': {
        const user =
          caller === ADMIN_ACCESS_KEY_ID
            ? `arn:aws:iam::${ACCOUNT_ID}:user/local-admin`
            : `arn:aws:sts::${ACCOUNT_ID}:assumed-role/${caller}`;
        return { Version: this.putParameter(input, user), Tier: 'Standard' };
      }
      case 'GetParameter':
        return {
          Parameter: this.getParameter(String(input.Name ?? ''), input.WithDecryption === true),
        };
      case 'GetParameters':
        return this.getParameters(input);
      case 'DeleteParameter':
        this.deleteParameter(String(input.Name ?? ''));
        return {};
      case 'DeleteParameters': {
        // API_DeleteParameters.html: Names 1-10; unknown names come back in InvalidParameters.
        const names = (input.Names ?? []) as string[];
        if (!Array.isArray(names) || names.length < 1 || names.length > 10) {
          throw validation([
            `Value '[${names}]' at 'names' failed to satisfy constraint: Member must have length between 1 and 10`,
          ]);
        }
        const DeletedParameters: string[] = [];
        const InvalidParameters: string[] = [];
        for (const candidate of names) {
          if (this.parameters.has(candidate)) {
            this.deleteParameter(candidate);
            DeletedParameters.push(candidate);
          } else InvalidParameters.push(candidate);
        }
        return { DeletedParameters, InvalidParameters };
      }
      case 'GetParametersByPath':
        return this.getParametersByPath(input);
      case 'LabelParameterVersion':
        return this.labelParameterVersion(input);
      case 'CancelCommand':
        return this.cancelCommand(input);
      case 'ListDocuments':
        return this.listDocuments(input);
      case 'DescribeDocument':
        return this.describeDocument(input);
      case 'DescribeParameters':
        return this.describeParameters(input);
      case 'GetParameterHistory':
        return this.getParameterHistory(input);
      case 'SendCommand':
        return { Command: this.commandWire(this.sendCommand(input)) };
      case 'ListCommands':
        return this.listCommands(input);
      case 'ListCommandInvocations':
        return this.listCommandInvocations(input);
      case 'GetCommandInvocation':
        return this.getCommandInvocation(input);
      case 'DescribeInstanceInformation':
        return this.describeInstanceInformation(input);
      default:
        throw new ServiceError(
          'UnknownOperationException',
          `The local cloud does not implement SSM ${operation || '(no X-Amz-Target)'}.`,
        );
    }
  }

  /**
   * The version a GetParameter `Name` selects: a name or an ARN, optionally with `:version` or
   * `:label` (API_GetParameter.html, Name); without a selector the latest. A selector that
   * matches no version kept in the history (the last 100: sysman-paramstore-versions.html) is
   * ParameterVersionNotFound, "If you specify the number for a version that doesn't exist, the
   * system returns an error rather than falling back to the latest". Labels cannot begin with a
   * digit (sysman-paramstore-labels.html), so an all-digit selector is always a version number.
   * Throws ServiceError ParameterNotFound or ParameterVersionNotFound.
   */
  selectParameter(nameOrArnWithSelector: string): {
    name: string;
    selector?: string;
    version: ParameterVersion;
  } {
    const [name, selector] = splitSelector(nameOfArn(nameOrArnWithSelector));
    const versions = this.parameters.get(name);
    if (!versions) throw new ServiceError('ParameterNotFound', '');
    if (selector === undefined) return { name, version: versions.at(-1) as ParameterVersion };
    const found = /^[0-9]+$/.test(selector)
      ? versions.find((candidate) => candidate.Version === Number(selector))
      : versions.find((candidate) => candidate.Labels.includes(selector));
    if (!found) {
      throw new ServiceError(
        'ParameterVersionNotFound',
        `Systems Manager could not find version ${selector} of ${name}. Verify the version and try again.`,
      );
    }
    return { name, selector, version: found };
  }

  /**
   * GetParameter's `Parameter`: for a selected version its own Version and Value, `Selector`
   * ":7" or ":label", and Name and ARN without the selector (API_Parameter.html; the examples
   * "using versions" and "using labels" in awscli's examples/ssm/get-parameter.rst).
   */
  private getParameter(nameOrArnWithSelector: string, withDecryption: boolean): Json {
    const { name, selector, version } = this.selectParameter(nameOrArnWithSelector);
    return {
      Name: name,
      Type: version.Type,
      Value:
        version.Type === 'SecureString' && !withDecryption ? ciphertext(version) : version.Value,
      Version: version.Version,
      ...(selector === undefined ? {} : { Selector: `:${selector}` }),
      LastModifiedDate: epoch(version.LastModifiedDate),
      ARN: this.parameterArn(name),
      DataType: version.DataType,
    };
  }

  /**
   * GetParameters (API_GetParameters.html): 1 to 10 names or ARNs, each with an optional
   * selector as for GetParameter; a name that does not exist, or whose selected version does not,
   * comes back in InvalidParameters as it was asked for (the operation's only errors are
   * InvalidKeyId and InternalServerError). Results "are listed in alphabetical order".
   */
  private getParameters(input: Json): Json {
    const names = input.Names as unknown;
    if (!Array.isArray(names) || names.length < 1 || names.length > 10) {
      throw validation([
        `Value '[${Array.isArray(names) ? names.join(', ') : ''}]' at 'names' failed to satisfy constraint: Member must have length between 1 and 10`,
      ]);
    }
    const Parameters: Json[] = [];
    const InvalidParameters: string[] = [];
    for (const name of new Set(names.map(String))) {
      try {
        Parameters.push(this.getParameter(name, input.WithDecryption === true));
      } catch (error) {
        if (!(error instanceof ServiceError)) throw error;
        InvalidParameters.push(name);
      }
    }
    Parameters.sort((a, b) => (a.Name < b.Name ? -1 : a.Name > b.Name ? 1 : 0));
    return { Parameters, InvalidParameters };
  }

  private metadata(version: ParameterVersion): Json {
    return {
      Name: version.Name,
      ARN: this.parameterArn(version.Name),
      Type: version.Type,
      ...(version.KeyId ? { KeyId: version.KeyId } : {}),
      LastModifiedDate: epoch(version.LastModifiedDate),
      LastModifiedUser: version.LastModifiedUser,
      ...(version.Description ? { Description: version.Description } : {}),
      ...(version.AllowedPattern ? { AllowedPattern: version.AllowedPattern } : {}),
      Version: version.Version,
      Tier: version.Tier,
      Policies: [],
      DataType: version.DataType,
    };
  }

  private describeParameters(input: Json): Json {
    const errors: string[] = [];
    checkMaxResults(input.MaxResults, 1, 50, errors);
    if (errors.length > 0) throw validation(errors);
    if (input.Shared === true) {
      throw new ServiceError(
        'ValidationException',
        'The local cloud does not model shared parameters.',
      );
    }
    const legacy = (input.Filters ?? []) as Array<{ Key: string; Values?: string[] }>;
    if (legacy.length > 0 && (input.ParameterFilters ?? []).length > 0) {
      throw new ServiceError(
        'ValidationException',
        'You can use either Filters or ParameterFilters in a single request.',
      );
    }
    // The deprecated ParametersFilter (Key Name | Type | KeyId) stands for a ParameterStringFilter
    // with the default option, Equals (API_ParametersFilter.html, API_ParameterStringFilter.html).
    for (const filter of legacy) {
      if (!['Name', 'Type', 'KeyId'].includes(filter.Key)) {
        throw validation([
          `Value '${filter.Key}' at 'filters.1.member.key' failed to satisfy constraint: Member must satisfy enum value set: [Name, Type, KeyId]`,
        ]);
      }
    }
    const filters = [
      ...((input.ParameterFilters ?? []) as Array<{
        Key: string;
        Option?: string;
        Values?: string[];
      }>),
      ...legacy.map((filter) => ({
        Key: filter.Key,
        Option: 'Equals',
        Values: filter.Values ?? [],
      })),
    ];
    let items = [...this.parameters.values()].map(
      (versions) => versions.at(-1) as ParameterVersion,
    );
    for (const filter of filters) {
      const option = filter.Option ?? 'Equals';
      const values = filter.Values ?? [];
      if (values.length < 1 || values.length > 50)
        throw validation([
          "Value at 'parameterFilters.1.member.values' failed to satisfy constraint: Member must have length between 1 and 50",
        ]);
      const field = (version: ParameterVersion): string | undefined => {
        switch (filter.Key) {
          case 'Name':
            return version.Name;
          case 'Type':
            return version.Type;
          case 'KeyId':
            return version.KeyId;
          case 'Tier':
            return version.Tier;
          case 'DataType':
            return version.DataType;
          default:
            return undefined;
        }
      };
      if (filter.Key === 'Path') {
        items = items.filter((version) =>
          values.some((path) => {
            const prefix = path.endsWith('/') ? path : `${path}/`;
            if (!version.Name.startsWith(prefix)) return false;
            return option === 'Recursive' || !version.Name.slice(prefix.length).includes('/');
          }),
        );
        continue;
      }
      if (!['Name', 'Type', 'KeyId', 'Tier', 'DataType'].includes(filter.Key)) {
        throw new ServiceError(
          'InvalidFilterKey',
          `The following filter key is not valid: ${filter.Key}.`,
        );
      }
      if (
        !['Equals', 'BeginsWith', 'Contains'].includes(option) ||
        (option === 'Contains' && filter.Key !== 'Name')
      ) {
        throw new ServiceError(
          'InvalidFilterOption',
          `The filter option is not valid. Valid options are Equals and BeginsWith. For Path filter, valid options are Recursive and OneLevel.`,
        );
      }
      items = items.filter((version) => {
        const actual = field(version);
        if (actual === undefined) return false;
        return values.some((value) =>
          option === 'Equals'
            ? actual === value
            : option === 'BeginsWith'
              ? actual.startsWith(value)
              : actual.includes(value),
        );
      });
    }
    items.sort((a, b) => a.Name.localeCompare(b.Name));
    const { items: pageItems, next } = page(
      items,
      input,
      10,
      `describe-parameters:${JSON.stringify(filters)}`,
    );
    return {
      Parameters: pageItems.map((version) => this.metadata(version)),
      ...(next ? { NextToken: next } : {}),
    };
  }

  private getParameterHistory(input: Json): Json {
    const errors: string[] = [];
    checkMaxResults(input.MaxResults, 1, 50, errors);
    if (errors.length > 0) throw validation(errors);
    const name = String(input.Name ?? '');
    const versions = this.parameters.get(name);
    if (!versions) throw new ServiceError('ParameterNotFound', '');
    const { items, next } = page(versions, input, 50, `history:${name}`);
    return {
      Parameters: items.map((version) => ({
        ...this.metadata(version),
        Value:
          version.Type === 'SecureString' && input.WithDecryption !== true
            ? ciphertext(version)
            : version.Value,
        Labels: version.Labels,
      })),
      ...(next ? { NextToken: next } : {}),
    };
  }

  /** API_GetParametersByPath.html: Path must start with /, MaxResults 1-10. */
  private getParametersByPath(input: Json): Json {
    const errors: string[] = [];
    checkMaxResults(input.MaxResults, 1, 10, errors);
    if (errors.length > 0) throw validation(errors);
    const path = String(input.Path ?? '');
    if (!path.startsWith('/')) {
      throw new ServiceError(
        'ValidationException',
        'The parameter doesn\'t meet the parameter name requirements. The parameter name must begin with a forward slash "/". It can\'t be prefixed with "aws" or "ssm" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol "/". Valid example: /get/parameters2-/by1./path0_.',
      );
    }
    if ((input.ParameterFilters ?? []).length > 0) {
      throw new ServiceError(
        'ValidationException',
        'The local cloud does not implement ParameterFilters for GetParametersByPath.',
      );
    }
    const prefix = path.endsWith('/') ? path : `${path}/`;
    const items = [...this.parameters.values()]
      .map((versions) => versions.at(-1) as ParameterVersion)
      .filter(
        (version) =>
          version.Name.startsWith(prefix) &&
          (input.Recursive === true || !version.Name.slice(prefix.length).includes('/')),
      )
      .sort((a, b) => a.Name.localeCompare(b.Name));
    const { items: pageItems, next } = page(
      items,
      input,
      10,
      `by-path:${prefix}:${input.Recursive === true}`,
    );
    return {
      Parameters: pageItems.map((version) =>
        this.getParameter(version.Name, input.WithDecryption === true),
      ),
      ...(next ? { NextToken: next } : {}),
    };
  }

  /**
   * API_LabelParameterVersion.html and sysman-paramstore-labels.html: up to 10 labels a version;
   * a label moves from the version that had it; a label is at most 100 characters of
   * a-zA-Z0-9_.-, can't begin with a number, "aws" or "ssm" — such labels come back in
   * InvalidLabels instead of failing the call.
   */
  private labelParameterVersion(input: Json): Json {
    const name = String(input.Name ?? '');
    const versions = this.parameters.get(name);
    if (!versions) throw new ServiceError('ParameterNotFound', '');
    const labels = (input.Labels ?? []) as string[];
    if (!Array.isArray(labels) || labels.length < 1 || labels.length > 10) {
      throw validation([
        `Value '[${labels}]' at 'labels' failed to satisfy constraint: Member must have length between 1 and 10`,
      ]);
    }
    const target =
      input.ParameterVersion === undefined
        ? versions.at(-1)
        : versions.find((version) => version.Version === Number(input.ParameterVersion));
    if (!target) {
      throw new ServiceError(
        'ParameterVersionNotFound',
        `Systems Manager could not find version ${input.ParameterVersion} of ${name}. Verify the version and try again.`,
      );
    }
    const valid = (label: string) =>
      label.length <= 100 && /^[a-zA-Z0-9_.-]+$/.test(label) && !/^([0-9]|aws|ssm)/i.test(label);
    const InvalidLabels = labels.filter((label) => !valid(label));
    const good = labels.filter(valid);
    if (new Set([...target.Labels, ...good]).size > 10) {
      throw new ServiceError(
        'ParameterVersionLabelLimitExceeded',
        'A parameter version can have maximum 10 labels.',
      );
    }
    for (const label of good) {
      for (const version of versions) {
        if (version !== target) version.Labels = version.Labels.filter((l) => l !== label);
      }
      if (!target.Labels.includes(label)) target.Labels.push(label);
    }
    return { InvalidLabels, ParameterVersion: target.Version };
  }

  /** API_CancelCommand.html: pending and running invocations end Cancelled. */
  private cancelCommand(input: Json): Json {
    const command = this.commands.get(String(input.CommandId ?? ''));
    if (!command) throw new ServiceError('InvalidCommandId', '');
    const ids = (input.InstanceIds ?? [...command.invocations.keys()]) as string[];
    if (ids.some((id) => !command.invocations.has(id))) {
      throw new ServiceError(
        'InvalidInstanceId',
        'The following instances are not targeted by the command.',
      );
    }
    for (const id of ids) {
      this.updateInvocation(command, id, { status: 'Cancelled', statusDetails: 'Cancelled' });
    }
    return {};
  }

  private documentIdentifier(name: string): Json {
    const entry = this.documents.get(name);
    if (!entry)
      throw new ServiceError('InvalidDocument', `Document with name ${name} does not exist.`);
    return {
      Name: name,
      CreatedDate: epoch(entry.created),
      Owner: ACCOUNT_ID,
      PlatformTypes: ['Linux', 'MacOS'],
      DocumentVersion: '1',
      DocumentType: 'Command',
      SchemaVersion: entry.document.schemaVersion,
      DocumentFormat: entry.content.trimStart().startsWith('{') ? 'JSON' : 'YAML',
      Tags: [],
    };
  }

  /**
   * API_ListDocuments.html. The local cloud holds the stack's own documents only: a filter for
   * AWS-owned or shared documents is refused rather than answered with a partial list.
   */
  private listDocuments(input: Json): Json {
    const errors: string[] = [];
    checkMaxResults(input.MaxResults, 1, 50, errors);
    if (errors.length > 0) throw validation(errors);
    if ((input.DocumentFilterList ?? []).length > 0) {
      throw new ServiceError(
        'ValidationException',
        'The local cloud implements ListDocuments Filters, not DocumentFilterList.',
      );
    }
    let names = [...this.documents.keys()].sort();
    for (const filter of (input.Filters ?? []) as Array<{ Key: string; Values?: string[] }>) {
      const values = filter.Values ?? [];
      switch (filter.Key) {
        case 'Owner':
          if (!values.every((value) => value === 'Self' || value === 'Private')) {
            throw new ServiceError(
              'ValidationException',
              `The local cloud holds no ${values.join(', ')} documents; use Owner=Self.`,
            );
          }
          break;
        case 'Name':
          names = names.filter((name) => values.includes(name));
          break;
        case 'DocumentType':
          names = names.filter(() => values.includes('Command'));
          break;
        default:
          throw new ServiceError(
            'ValidationException',
            `The local cloud does not implement the ListDocuments filter ${filter.Key}.`,
          );
      }
    }
    const { items, next } = page(
      names,
      input,
      50,
      `documents:${JSON.stringify(input.Filters ?? [])}`,
    );
    return {
      DocumentIdentifiers: items.map((name) => this.documentIdentifier(name)),
      ...(next ? { NextToken: next } : {}),
    };
  }

  /** API_DescribeDocument.html. */
  private describeDocument(input: Json): Json {
    const name = String(input.Name ?? '');
    const identifier = this.documentIdentifier(name);
    const entry = this.documents.get(name) as { document: CommandDocument; content: string };
    if (
      input.DocumentVersion !== undefined &&
      !['1', '$LATEST', '$DEFAULT'].includes(String(input.DocumentVersion))
    ) {
      throw new ServiceError(
        'InvalidDocumentVersion',
        'The document version is not valid or does not exist.',
      );
    }
    return {
      Document: {
        ...identifier,
        Hash: createHash('sha256').update(entry.content).digest('hex'),
        HashType: 'Sha256',
        Status: 'Active',
        ...(entry.document.description ? { Description: entry.document.description } : {}),
        Parameters: Object.entries(entry.document.parameters).map(([parameter, spec]) => ({
          Name: parameter,
          Type: spec.type,
          ...(spec.description ? { Description: spec.description } : {}),
          ...(spec.default === undefined ? {} : { DefaultValue: String(spec.default) }),
        })),
        LatestVersion: '1',
        DefaultVersion: '1',
      },
    };
  }

  // ---- Run Command --------------------------------------------------------------------------

  private documentByName(nameOrArn: string): { name: string; document: CommandDocument } {
    const name = nameOrArn.startsWith('arn:')
      ? nameOrArn.slice(nameOrArn.indexOf('document/') + 'document/'.length)
      : nameOrArn;
    const entry = this.documents.get(name);
    // InvalidDocument: "The specified SSM document doesn't exist." (API_SendCommand.html, Errors)
    if (!entry)
      throw new ServiceError('InvalidDocument', `Document with name ${name} does not exist.`);
    return { name, document: entry.document };
  }

  /** SendCommand with the checks SSM makes before accepting it (research notes §4). */
  sendCommand(input: Json): CommandState {
    const errors: string[] = [];
    const documentName = input.DocumentName;
    if (typeof documentName !== 'string')
      errors.push(
        "Value null at 'documentName' failed to satisfy constraint: Member must not be null",
      );
    else if (!DOCUMENT_NAME.test(documentName)) {
      errors.push(
        `Value '${documentName}' at 'documentName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\\-.:/]{3,128}$`,
      );
    }
    const instanceIds = (input.InstanceIds ?? []) as string[];
    if (instanceIds.length > 50) {
      errors.push(
        `Value '[${instanceIds.join(', ')}]' at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50`,
      );
    }
    if (instanceIds.some((id) => typeof id !== 'string' || !INSTANCE_ID.test(id))) {
      errors.push(
        `Value '[${instanceIds.join(', ')}]' at 'instanceIds' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 20, Member must have length greater than or equal to 10, Member must satisfy regular expression pattern: (^i-(\\w{8}|\\w{17})$)|(^mi-\\w{17}$)]`,
      );
    }
    if (input.Comment !== undefined && String(input.Comment).length > 100) {
      errors.push(
        `Value '${input.Comment}' at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100`,
      );
    }
    if (
      input.TimeoutSeconds !== undefined &&
      (typeof input.TimeoutSeconds !== 'number' ||
        input.TimeoutSeconds < 30 ||
        input.TimeoutSeconds > 2592000)
    ) {
      errors.push(
        `Value '${input.TimeoutSeconds}' at 'timeoutSeconds' failed to satisfy constraint: Member must have value ${input.TimeoutSeconds < 30 ? 'greater than or equal to 30' : 'less than or equal to 2592000'}`,
      );
    }
    if (input.MaxConcurrency !== undefined && !MAX_CONCURRENCY.test(String(input.MaxConcurrency))) {
      errors.push(
        `Value '${input.MaxConcurrency}' at 'maxConcurrency' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$`,
      );
    }
    if (input.MaxErrors !== undefined && !MAX_ERRORS.test(String(input.MaxErrors))) {
      errors.push(
        `Value '${input.MaxErrors}' at 'maxErrors' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$`,
      );
    }
    checkAlarmConfiguration(input.AlarmConfiguration, errors);
    if (errors.length > 0) throw validation(errors);
    const targets = (input.Targets ?? []) as Json[];
    if (targets.length > 0 && instanceIds.length > 0) {
      // API_SendCommand.html: InstanceIds for up to 50 nodes, Targets "instead"; one or the other.
      throw new ServiceError(
        'ValidationException',
        'Specify either InstanceIds or Targets in a SendCommand request, not both.',
      );
    }
    if (targets.length === 0 && instanceIds.length === 0) {
      throw new ServiceError('ValidationException', 'InstanceIds or Targets must be specified.');
    }
    this.documentByName(documentName as string);
    if (
      input.DocumentVersion !== undefined &&
      !['$LATEST', '$DEFAULT', '1'].includes(String(input.DocumentVersion))
    ) {
      throw new ServiceError(
        'InvalidDocumentVersion',
        'The document version is not valid or does not exist.',
      );
    }
    if (targets.length > 0) return this.acceptCommand(input, this.resolveTargets(targets), targets);
    if (new Set(instanceIds).size !== instanceIds.length) {
      throw new ServiceError('DuplicateInstanceId', 'Duplicate instance IDs are not allowed.');
    }
    // Valid states: Running, Pending, Stopped, Stopping, and the agent registered (InvalidInstanceId doc).
    const invalid = instanceIds.filter((id) => {
      const instance = this.options.fleet.find(id);
      return (
        !instance?.managed || instance.state === 'terminated' || instance.state === 'shutting-down'
      );
    });
    if (invalid.length > 0) {
      throw new ServiceError(
        'InvalidInstanceId',
        `Instances [[${invalid.join(', ')}]] not in a valid state for account ${ACCOUNT_ID}`,
      );
    }
    return this.acceptCommand(input, instanceIds, undefined);
  }

  /**
   * The managed nodes a SendCommand's Targets select: `tag:<key>` (any of its Values) and
   * `InstanceIds`; several targets must all match (API_Target.html; "Run commands at scale",
   * https://docs.aws.amazon.com/systems-manager/latest/userguide/send-commands-multiple.html).
   * Nodes not managed by SSM, terminated or shutting down are not targeted.
   */
  private resolveTargets(targets: Json[]): string[] {
    const errors: string[] = [];
    if (targets.length > 5) {
      errors.push(
        "Value at 'targets' failed to satisfy constraint: Member must have length less than or equal to 5",
      );
    }
    const matchers = targets.map((target) => {
      const key = String(target.Key ?? '');
      const values = ((target.Values ?? []) as unknown[]).map(String);
      if (values.length < 1 || values.length > 50) {
        errors.push(
          `Value at 'targets.member.values' failed to satisfy constraint: Member must have length between 1 and 50`,
        );
      }
      if (key === 'InstanceIds') return (instance: Instance) => values.includes(instance.id);
      if (key.startsWith('tag:') && key.length > 4) {
        const tagKey = key.slice(4);
        return (instance: Instance) => values.includes(instance.tags[tagKey] ?? '\u0000');
      }
      throw new ServiceError(
        'ValidationException',
        `The local cloud implements SendCommand Targets with the keys tag:<key> and InstanceIds, not ${key}.`,
      );
    });
    if (errors.length > 0) throw validation(errors);
    return this.options.fleet
      .list()
      .filter(
        (instance) =>
          instance.managed &&
          instance.state !== 'terminated' &&
          instance.state !== 'shutting-down' &&
          matchers.every((matches) => matches(instance)),
      )
      .map((instance) => instance.id);
  }

  private acceptCommand(
    input: Json,
    instanceIds: string[],
    targets: Json[] | undefined,
  ): CommandState {
    const { name, document } = this.documentByName(input.DocumentName as string);
    const parameters = (input.Parameters ?? {}) as Record<string, string[]>;
    const resolved = validateSendCommandParameters(document, parameters);
    const now = this.now();
    const timeoutSeconds = typeof input.TimeoutSeconds === 'number' ? input.TimeoutSeconds : 3600;
    const stepTimeout = Math.max(
      ...document.mainSteps.map((step) => Number(step.inputs.timeoutSeconds ?? 3600)),
    );
    const command: CommandState = {
      commandId: randomUUID(),
      documentName: name,
      document,
      parameters: Object.fromEntries(
        Object.entries(resolved).map(([key, value]) => [
          key,
          Array.isArray(value) ? value : [value],
        ]),
      ),
      resolved,
      comment: String(input.Comment ?? ''),
      requestedDateTime: now,
      // ExpiresAfter: delivery timeout + execution timeout (research notes §2.3 "Total timeout").
      expiresAfter: new Date(now.getTime() + (timeoutSeconds + stepTimeout) * 1000),
      instanceIds: [...instanceIds],
      ...(targets === undefined
        ? {}
        : { targets: targets.map((t) => ({ Key: t.Key, Values: t.Values })) }),
      maxConcurrency: String(input.MaxConcurrency ?? '50'),
      maxErrors: String(input.MaxErrors ?? '0'),
      timeoutSeconds,
      cloudWatchOutputConfig: {
        CloudWatchLogGroupName: input.CloudWatchOutputConfig?.CloudWatchLogGroupName ?? '',
        CloudWatchOutputEnabled: input.CloudWatchOutputConfig?.CloudWatchOutputEnabled === true,
      },
      status: 'Pending',
      statusDetails: 'Pending',
      invocations: new Map(),
      alarmConfiguration:
        input.AlarmConfiguration === undefined
          ? { IgnorePollAlarmFailure: false, Alarms: [] }
          : {
              IgnorePollAlarmFailure: input.AlarmConfiguration.IgnorePollAlarmFailure === true,
              Alarms: (input.AlarmConfiguration.Alarms as Json[]).map((alarm) => ({
                Name: String(alarm.Name),
              })),
            },
      triggeredAlarms: [],
      cancelledByAlarm: new Set(),
    };
    const stepName = document.mainSteps[0]?.name ?? 'aws:runShellScript';
    for (const instanceId of instanceIds) {
      command.invocations.set(instanceId, {
        commandId: command.commandId,
        instanceId,
        requestedDateTime: now,
        status: 'Pending',
        statusDetails: 'Pending',
        responseCode: -1,
        pluginName: stepName,
        stdout: '',
        stderr: '',
      });
    }
    this.commands.set(command.commandId, command);
    this.emitCommandStatus(command);
    for (const invocation of command.invocations.values())
      this.emitInvocationStatus(command, invocation);
    this.onSendCommand(command);
    // Run Command checks the alarm once the command is accepted (SendCommand answers Pending
    // either way), before any invocation is delivered.
    if (command.alarmConfiguration.Alarms.length > 0)
      queueMicrotask(() => this.checkAlarms(command));
    return command;
  }

  /**
   * An alarm changed state or was deleted: the commands watching it check it again. (AWS polls
   * the alarm; here the change arrives at once.)
   */
  alarmChanged(name: string): void {
    for (const command of this.commands.values()) {
      if (command.alarmConfiguration.Alarms.some((alarm) => alarm.Name === name))
        this.checkAlarms(command);
    }
  }

  /**
   * Run Command's alarm monitoring (SendCommand AlarmConfiguration): "if your alarm activates,
   * any pending command invocations do not run" (Run Command console steps,
   * https://docs.aws.amazon.com/systems-manager/latest/userguide/running-commands-console.html);
   * IgnorePollAlarmFailure: "When this value is true, your automation or command continues to
   * run in cases where we can't retrieve alarm status information from CloudWatch. In cases where
   * we successfully retrieve an alarm status of OK or INSUFFICIENT_DATA, the automation or
   * command continues to run, regardless of this value. Default is false."
   * (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_AlarmConfiguration.html).
   * The Command records it in TriggeredAlarms, State ALARM, or UNKNOWN when the state could not
   * be retrieved (API_AlarmStateInformation.html; ExternalAlarmState UNKNOWN | ALARM).
   *
   * Modelled (the exact statuses are not documented; UNCONFIRMED against AWS): invocations not
   * yet delivered (Pending, Delayed) end Cancelled / Cancelled and never run; invocations
   * already running finish as they would; once every invocation is terminal the command is
   * Cancelled / Cancelled when the alarm kept any from running. A missing alarm is a poll
   * failure (SendCommand itself does not check the name: no SendCommand error is about alarms).
   */
  private checkAlarms(command: CommandState): void {
    if (command.triggeredAlarms.length > 0) return;
    const invocations = [...command.invocations.values()];
    if (invocations.every((invocation) => this.isTerminal(invocation))) return;
    for (const { Name } of command.alarmConfiguration.Alarms) {
      const state = this.options.alarms?.stateOf(Name);
      if (state === 'ALARM') {
        this.stopForAlarm(command, { Name, State: 'ALARM' });
        return;
      }
      if (state === undefined && !command.alarmConfiguration.IgnorePollAlarmFailure) {
        this.stopForAlarm(command, { Name, State: 'UNKNOWN' });
        return;
      }
    }
  }

  private stopForAlarm(command: CommandState, triggered: TriggeredAlarm): void {
    command.triggeredAlarms = [triggered];
    // All at once, the command's status worked out after: no InProgress in between.
    for (const invocation of command.invocations.values()) {
      if (this.isTerminal(invocation)) continue;
      if (invocation.status !== 'Pending' && invocation.status !== 'Delayed') continue;
      command.cancelledByAlarm.add(invocation.instanceId);
      Object.assign(invocation, { status: 'Cancelled', statusDetails: 'Cancelled' });
      this.emitInvocationStatus(command, invocation);
    }
    this.refreshCommandStatus(command);
  }

  /** Moves an invocation to a new status (the agent calls this) and emits the events AWS emits. */
  updateInvocation(
    command: CommandState,
    instanceId: string,
    patch: Partial<InvocationState>,
  ): void {
    const invocation = command.invocations.get(instanceId);
    if (!invocation || TERMINAL_DETAILS.has(invocation.statusDetails)) return;
    const before = invocation.statusDetails;
    Object.assign(invocation, patch);
    if (invocation.statusDetails !== before) this.emitInvocationStatus(command, invocation);
    this.refreshCommandStatus(command);
  }

  isTerminal(invocation: InvocationState): boolean {
    return TERMINAL_DETAILS.has(invocation.statusDetails);
  }

  private refreshCommandStatus(command: CommandState): void {
    const invocations = [...command.invocations.values()];
    const before = `${command.status}/${command.statusDetails}`;
    const terminal = invocations.filter((invocation) => this.isTerminal(invocation));
    if (terminal.length < invocations.length) {
      const started = invocations.some((invocation) => invocation.status !== 'Pending');
      command.status = started ? 'InProgress' : 'Pending';
      command.statusDetails = command.status;
    } else {
      // Command statuses (research notes §2.3): Success when all succeeded; Failed when errors
      // reached MaxErrors (or all undeliverable); otherwise Incomplete (Status Failed: the
      // CommandStatus enum has no Incomplete; the exact mapping is UNCONFIRMED).
      const counts = this.counts(command);
      const details = invocations.map((invocation) => invocation.statusDetails);
      if (command.cancelledByAlarm.size > 0) {
        // Stopped by its alarm (see checkAlarms; UNCONFIRMED).
        command.status = 'Cancelled';
        command.statusDetails = 'Cancelled';
      } else if (details.every((detail) => detail === 'Success')) {
        command.status = 'Success';
        command.statusDetails = 'Success';
      } else if (details.every((detail) => detail === 'Cancelled')) {
        command.status = 'Cancelled';
        command.statusDetails = 'Cancelled';
      } else if (details.every((detail) => detail === 'DeliveryTimedOut')) {
        command.status = 'TimedOut';
        command.statusDetails = 'DeliveryTimedOut';
      } else if (
        counts.ErrorCount > maxErrorsOf(command) ||
        details.every((detail) => detail === 'Undeliverable')
      ) {
        command.status = 'Failed';
        command.statusDetails = 'Failed';
      } else {
        command.status = 'Failed';
        command.statusDetails = 'Incomplete';
      }
    }
    if (`${command.status}/${command.statusDetails}` !== before) this.emitCommandStatus(command);
  }

  counts(command: CommandState): {
    CompletedCount: number;
    ErrorCount: number;
    DeliveryTimedOutCount: number;
  } {
    const invocations = [...command.invocations.values()];
    return {
      CompletedCount: invocations.filter((invocation) => this.isTerminal(invocation)).length,
      ErrorCount: invocations.filter((invocation) =>
        ['Failed', 'ExecutionTimedOut'].includes(invocation.statusDetails),
      ).length,
      DeliveryTimedOutCount: invocations.filter(
        (invocation) => invocation.statusDetails === 'DeliveryTimedOut',
      ).length,
    };
  }

  private emitInvocationStatus(command: CommandState, invocation: InvocationState): void {
    // "EC2 Command Invocation Status-change Notification" (research notes §2.1); `status` carries
    // the API Status enum (research notes §2.2: most likely, UNCONFIRMED).
    this.options.emit({
      detailType: 'EC2 Command Invocation Status-change Notification',
      resources: [
        `arn:aws:ec2:${this.options.region}:${ACCOUNT_ID}:instance/${invocation.instanceId}`,
      ],
      detail: {
        'command-id': command.commandId,
        'document-name': command.documentName,
        'instance-id': invocation.instanceId,
        'requested-date-time': command.requestedDateTime.toISOString(),
        status: invocation.status,
      },
    });
  }

  private emitCommandStatus(command: CommandState): void {
    this.options.emit({
      detailType: 'EC2 Command Status-change Notification',
      resources: command.instanceIds.map(
        (id) => `arn:aws:ec2:${this.options.region}:${ACCOUNT_ID}:instance/${id}`,
      ),
      detail: {
        'command-id': command.commandId,
        'document-name': command.documentName,
        'expire-after': command.expiresAfter.toISOString(),
        parameters: command.parameters,
        'requested-date-time': command.requestedDateTime.toISOString(),
        status: command.status,
      },
    });
  }

  private commandWire(command: CommandState): Json {
    return {
      CommandId: command.commandId,
      DocumentName: command.documentName,
      DocumentVersion: '$DEFAULT',
      Comment: command.comment,
      ExpiresAfter: epoch(command.expiresAfter),
      Parameters: command.parameters,
      InstanceIds: command.targets === undefined ? command.instanceIds : [],
      Targets: command.targets ?? [],
      RequestedDateTime: epoch(command.requestedDateTime),
      Status: command.status,
      StatusDetails: command.statusDetails,
      OutputS3Region: this.options.region,
      OutputS3BucketName: '',
      OutputS3KeyPrefix: '',
      MaxConcurrency: command.maxConcurrency,
      MaxErrors: command.maxErrors,
      TargetCount: command.instanceIds.length,
      ...this.counts(command),
      ServiceRole: '',
      NotificationConfig: { NotificationArn: '', NotificationEvents: [], NotificationType: '' },
      CloudWatchOutputConfig: command.cloudWatchOutputConfig,
      TimeoutSeconds: command.timeoutSeconds,
      // Always listed, empty when the command was sent without one (real SendCommand answers
      // show `"AlarmConfiguration": {"IgnorePollAlarmFailure": false, "Alarms": []}` and
      // `"TriggeredAlarms": []`). CommandInvocation and GetCommandInvocation have neither field
      // (API_CommandInvocation.html, API_GetCommandInvocation.html).
      AlarmConfiguration: {
        IgnorePollAlarmFailure: command.alarmConfiguration.IgnorePollAlarmFailure,
        Alarms: command.alarmConfiguration.Alarms.map((alarm) => ({ ...alarm })),
      },
      TriggeredAlarms: command.triggeredAlarms.map((alarm) => ({ ...alarm })),
    };
  }

  private listCommands(input: Json): Json {
    const errors: string[] = [];
    checkMaxResults(input.MaxResults, 1, 50, errors);
    if (errors.length > 0) throw validation(errors);
    let commands = [...this.commands.values()].reverse();
    if (input.CommandId !== undefined) {
      commands = commands.filter((command) => command.commandId === input.CommandId);
      if (commands.length === 0) throw new ServiceError('InvalidCommandId', '');
    }
    if (input.InstanceId !== undefined)
      commands = commands.filter((command) => command.invocations.has(input.InstanceId));
    commands = applyCommandFilters(
      commands,
      input.Filters,
      // The Status filter matches Status (API_CommandFilter.html), not StatusDetails.
      (command) => command.status,
      (command) => command.requestedDateTime,
      (command) => command.documentName,
    );
    const { items, next } = page(
      commands,
      input,
      50,
      `list-commands:${JSON.stringify([input.CommandId, input.InstanceId, input.Filters])}`,
    );
    return {
      Commands: items.map((command) => this.commandWire(command)),
      ...(next ? { NextToken: next } : {}),
    };
  }

  private listCommandInvocations(input: Json): Json {
    const errors: string[] = [];
    checkMaxResults(input.MaxResults, 1, 50, errors);
    if (errors.length > 0) throw validation(errors);
    let commands = [...this.commands.values()].reverse();
    if (input.CommandId !== undefined) {
      commands = commands.filter((command) => command.commandId === input.CommandId);
      if (commands.length === 0) throw new ServiceError('InvalidCommandId', '');
    }
    let pairs = commands.flatMap((command) =>
      [...command.invocations.values()].map((invocation) => ({ command, invocation })),
    );
    if (input.InstanceId !== undefined)
      pairs = pairs.filter(({ invocation }) => invocation.instanceId === input.InstanceId);
    pairs = applyCommandFilters(
      pairs,
      input.Filters,
      (pair) => pair.invocation.status,
      (pair) => pair.command.requestedDateTime,
      (pair) => pair.command.documentName,
    );
    const { items, next } = page(
      pairs,
      input,
      50,
      `list-invocations:${JSON.stringify([input.CommandId, input.InstanceId, input.Filters])}`,
    );
    return {
      CommandInvocations: items.map(({ command, invocation }) =>
        this.invocationWire(command, invocation, input.Details === true),
      ),
      ...(next ? { NextToken: next } : {}),
    };
  }

  private invocationWire(
    command: CommandState,
    invocation: InvocationState,
    details: boolean,
  ): Json {
    const instance = this.options.fleet.find(invocation.instanceId);
    return {
      CommandId: command.commandId,
      InstanceId: invocation.instanceId,
      InstanceName: instance
        ? `ip-${instance.privateIp.replace(/\./g, '-')}.${this.options.region}.compute.internal`
        : '',
      Comment: command.comment,
      DocumentName: command.documentName,
      DocumentVersion: '$DEFAULT',
      RequestedDateTime: epoch(invocation.requestedDateTime),
      Status: invocation.status,
      StatusDetails: invocation.statusDetails,
      StandardOutputUrl: '',
      StandardErrorUrl: '',
      CommandPlugins: details
        ? [
            {
              Name: invocation.pluginName,
              Status: pluginStatus(invocation),
              StatusDetails: invocation.statusDetails,
              ResponseCode: invocation.responseCode,
              ...(invocation.executionStart
                ? { ResponseStartDateTime: epoch(invocation.executionStart) }
                : {}),
              ...(invocation.executionEnd
                ? { ResponseFinishDateTime: epoch(invocation.executionEnd) }
                : {}),
              // Output: at most 2,500 characters (CommandPlugin.Output in the API model).
              Output: pluginOutput(invocation),
              StandardOutputUrl: '',
              StandardErrorUrl: '',
              OutputS3Region: this.options.region,
              OutputS3BucketName: '',
              OutputS3KeyPrefix: '',
            },
          ]
        : [],
      ServiceRole: '',
      NotificationConfig: { NotificationArn: '', NotificationEvents: [], NotificationType: '' },
      CloudWatchOutputConfig: command.cloudWatchOutputConfig,
    };
  }

  private getCommandInvocation(input: Json): Json {
    const errors: string[] = [];
    if (typeof input.CommandId !== 'string' || input.CommandId.length !== 36) {
      errors.push(
        `Value '${String(input.CommandId)}' at 'commandId' failed to satisfy constraint: Member must have length equal to 36`,
      );
    }
    if (typeof input.InstanceId !== 'string' || !INSTANCE_ID.test(input.InstanceId)) {
      errors.push(
        `Value '${String(input.InstanceId)}' at 'instanceId' failed to satisfy constraint: Member must satisfy regular expression pattern: (^i-(\\w{8}|\\w{17})$)|(^mi-\\w{17}$)`,
      );
    }
    if (errors.length > 0) throw validation(errors);
    const command = this.commands.get(input.CommandId);
    const invocation = command?.invocations.get(input.InstanceId);
    if (!command || !invocation) throw new ServiceError('InvocationDoesNotExist', '');
    if (input.PluginName !== undefined && input.PluginName !== invocation.pluginName) {
      throw new ServiceError('InvalidPluginName', "The plugin name isn't valid.");
    }
    const finished = this.isTerminal(invocation);
    return {
      CommandId: command.commandId,
      InstanceId: invocation.instanceId,
      Comment: command.comment,
      DocumentName: command.documentName,
      DocumentVersion: '$DEFAULT',
      PluginName: invocation.pluginName,
      ResponseCode: invocation.responseCode,
      // "If the plugin hasn't started to run, the string is empty."
      ExecutionStartDateTime: invocation.executionStart?.toISOString() ?? '',
      ExecutionElapsedTime: invocation.executionStart
        ? elapsed(
            (invocation.executionEnd ?? this.now()).getTime() - invocation.executionStart.getTime(),
          )
        : '',
      ExecutionEndDateTime: invocation.executionEnd?.toISOString() ?? '',
      Status: invocation.status,
      StatusDetails: invocation.statusDetails,
      // First 24,000 / 8,000 characters; empty until the plugin finished.
      StandardOutputContent: finished ? invocation.stdout.slice(0, 24000) : '',
      StandardOutputUrl: '',
      StandardErrorContent: finished ? invocation.stderr.slice(0, 8000) : '',
      StandardErrorUrl: '',
      CloudWatchOutputConfig: command.cloudWatchOutputConfig,
    };
  }

  private describeInstanceInformation(input: Json): Json {
    const errors: string[] = [];
    checkMaxResults(input.MaxResults, 5, 50, errors);
    const filters = (input.Filters ?? []) as Array<{ Key: string; Values: string[] }>;
    const legacy = (input.InstanceInformationFilterList ?? []) as Array<{
      key: string;
      valueSet: string[];
    }>;
    for (const [index, filter] of [
      ...filters.map((f) => f.Values),
      ...legacy.map((f) => f.valueSet),
    ].entries()) {
      if (!Array.isArray(filter) || filter.length < 1 || filter.length > 100) {
        errors.push(
          `Value at 'filters.${index + 1}.member.values' failed to satisfy constraint: Member must have length between 1 and 100`,
        );
      }
    }
    if (errors.length > 0) throw validation(errors);
    if (filters.length > 0 && legacy.length > 0) {
      throw new ServiceError(
        'InvalidInstanceInformationFilterValue',
        'InstanceInformationFilterList and Filters cannot be used together.',
      );
    }
    // "does not return information for nodes that are either Stopped or Terminated".
    let instances = this.options.fleet
      .list()
      .filter(
        (instance) =>
          instance.managed &&
          !['stopped', 'stopping', 'terminated', 'shutting-down'].includes(instance.state),
      );
    const all = [
      ...filters.map((f) => ({ key: f.Key, values: f.Values })),
      ...legacy.map((f) => ({ key: f.key, values: f.valueSet })),
    ];
    for (const { key, values } of all) {
      switch (key) {
        case 'InstanceIds': {
          const malformed = values.filter((id) => !INSTANCE_ID.test(id));
          if (malformed.length > 0)
            throw new ServiceError(
              'InvalidInstanceId',
              `The following instance ids are not valid: ${malformed.join(', ')}`,
            );
          instances = instances.filter((instance) => values.includes(instance.id));
          break;
        }
        case 'PingStatus':
          instances = instances.filter((instance) => values.includes(instance.pingStatus));
          break;
        case 'PlatformTypes':
        case 'PlatformType':
          instances = instances.filter(() => values.includes('Linux'));
          break;
        case 'ResourceType':
          instances = instances.filter(() => values.includes('EC2Instance'));
          break;
        default:
          if (key.startsWith('tag:')) {
            const tag = key.slice(4);
            instances = instances.filter((instance) =>
              values.includes(instance.tags[tag] ?? '\u0000'),
            );
          } else if (key === 'tag-key') {
            instances = instances.filter((instance) =>
              values.some((value) => value in instance.tags),
            );
          } else {
            throw new ServiceError(
              'InvalidFilterKey',
              `The specified filter key isn't valid: ${key}`,
            );
          }
      }
    }
    instances.sort((a, b) => a.id.localeCompare(b.id));
    const { items, next } = page(
      instances,
      input,
      10,
      `describe-instance-information:${JSON.stringify(all)}`,
    );
    return {
      InstanceInformationList: items.map((instance) => ({
        InstanceId: instance.id,
        PingStatus: instance.pingStatus,
        LastPingDateTime: epoch(instance.lastPing),
        AgentVersion: '3.3.2746.0',
        IsLatestVersion: false,
        PlatformType: 'Linux',
        PlatformName: 'Amazon Linux',
        PlatformVersion: '2023',
        ResourceType: 'EC2Instance',
        IPAddress: instance.privateIp,
        ComputerName: `ip-${instance.privateIp.replace(/\./g, '-')}.${this.options.region}.compute.internal`,
        IamRole: `${this.options.environmentOf(instance) ?? 'untagged'}-instance-role`,
        RegistrationDate: epoch(instance.registeredAt),
        SourceId: instance.id,
        SourceType: 'AWS::EC2::Instance',
      })),
      ...(next ? { NextToken: next } : {}),
    };
  }
}

function accessDenied(principal: string, operation: string, resource: string): ServiceError {
  return new ServiceError(
    'AccessDeniedException',
    `User: ${principal} is not authorized to perform: ssm:${operation} on resource: ${resource} because no identity-based policy allows the ssm:${operation} action`,
  );
}

/** A parameter's name from its ARN (arn:aws:ssm:<region>:<account>:parameter/<name>); names pass. */
function nameOfArn(nameOrArn: string): string {
  const match = /^arn:aws[\w-]*:ssm:[\w-]*:\d{12}:parameter(\/.*)$/.exec(nameOrArn);
  if (!match) return nameOrArn;
  const rest = match[1] ?? '';
  // "parameter/prod/env.php" is /prod/env.php; "parameter/plain" is plain (no hierarchy).
  return rest.indexOf('/', 1) > 0 ? rest : rest.slice(1);
}

/** The parameter a GetParameter(s) name stands for: its ARN resolved, its selector dropped. */
function parameterOf(nameOrArnWithSelector: string): string {
  return splitSelector(nameOfArn(nameOrArnWithSelector))[0];
}

/** `name:selector` → [name, selector]; a name has no ":" (PARAMETER_NAME_CHARS). */
function splitSelector(name: string): [string, string | undefined] {
  const at = name.lastIndexOf(':');
  if (at <= 0) return [name, undefined];
  return [name.slice(0, at), name.slice(at + 1)];
}

function ciphertext(version: ParameterVersion): string {
  // What SSM returns for a SecureString without WithDecryption: the encrypted blob, base64.
  return `AQICAH${Buffer.from(`local-cloud:${version.Name}:${version.Version}`).toString('base64')}`;
}

function maxErrorsOf(command: CommandState): number {
  const targets = command.instanceIds.length;
  return command.maxErrors.endsWith('%')
    ? Math.floor((Number(command.maxErrors.slice(0, -1)) / 100) * targets)
    : Number(command.maxErrors);
}

/** MaxConcurrency as a number of instances (a percentage rounds up, at least 1). */
export function maxConcurrencyOf(command: CommandState): number {
  const targets = command.instanceIds.length;
  if (command.maxConcurrency.endsWith('%')) {
    return Math.max(1, Math.ceil((Number(command.maxConcurrency.slice(0, -1)) / 100) * targets));
  }
  return Number(command.maxConcurrency);
}

export { maxErrorsOf };

function pluginStatus(invocation: InvocationState): string {
  // CommandPluginStatus: Pending | InProgress | Success | TimedOut | Cancelled | Failed.
  if (invocation.status === 'Delayed') return 'Pending';
  if (invocation.status === 'Cancelling') return 'InProgress';
  return invocation.status;
}

const TRUNCATED = '\n---Output truncated---';

function pluginOutput(invocation: InvocationState): string {
  // The agent joins stdout and stderr with an error marker and keeps 2,500 characters.
  const combined = invocation.stderr
    ? `${invocation.stdout}\n----------ERROR-------\n${invocation.stderr}`
    : invocation.stdout;
  return combined.length <= 2500
    ? combined
    : combined.slice(0, 2500 - TRUNCATED.length) + TRUNCATED;
}

function elapsed(ms: number): string {
  // The API's ExecutionElapsedTime format, e.g. "PT0.123S".
  return `PT${(ms / 1000).toFixed(3)}S`;
}

function applyCommandFilters<T>(
  items: T[],
  filters: Array<{ key: string; value: string }> | undefined,
  statusOf: (item: T) => string,
  dateOf: (item: T) => Date,
  documentOf: (item: T) => string,
): T[] {
  let out = items;
  for (const filter of filters ?? []) {
    switch (filter.key) {
      case 'Status':
        out = out.filter((item) => {
          const status = statusOf(item);
          return (
            status === filter.value || (filter.value === 'TimedOut' && status.endsWith('TimedOut'))
          );
        });
        break;
      case 'DocumentName':
        out = out.filter((item) => documentOf(item) === filter.value);
        break;
      case 'InvokedAfter':
        out = out.filter((item) => dateOf(item) >= new Date(filter.value));
        break;
      case 'InvokedBefore':
        out = out.filter((item) => dateOf(item) <= new Date(filter.value));
        break;
      default:
        throw new ServiceError('InvalidFilterKey', `The specified key isn't valid: ${filter.key}`);
    }
  }
  return out;
}
