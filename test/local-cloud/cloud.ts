/**
 * startLocalCloud: the whole service on one machine. Reads the packaged CloudFormation template
 * (`serverless package` output) and creates what it declares — DynamoDB tables (dynalite), SQS
 * queues, SNS topics and subscriptions, SSM documents, Lambda functions with their async
 * configuration, EventBridge rules, SQS event source mappings and CloudWatch alarms — next to
 * local SSM, EC2, SQS, SNS and CloudWatch endpoints and a fleet of simulated instances. What
 * runs is what deploys: the bundles, environment variables, rule patterns and mappings all come
 * from the template.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { startDynalite } from '../support/dynalite.ts';
import { Agents } from './agent.ts';
import {
  type ApiRequestRecord,
  type HttpApi,
  httpApisFromTemplate,
  type Principal,
} from './apigateway.ts';
import {
  AutoScalingService,
  allowsCompleteLifecycleAction,
  type GroupSpec,
  type ScaleOutOptions,
} from './autoscaling.ts';
import { Clock } from './clock.ts';
import {
  type AlarmStateValue,
  CloudWatchService,
  type MetricAlarm,
  placeholderAlarm,
} from './cloudwatch.ts';
import { type DynamoDbWrite, startDynamoDbCounter } from './dynamodb-counter.ts';
import { Ec2Service } from './ec2.ts';
import { type AwsEvent, EventBus, type Rule } from './eventbridge.ts';
import { Fleet, type Instance, type InstanceSpec } from './fleet.ts';
import {
  ADMIN_ACCESS_KEY_ID,
  type LocalServer,
  parseForm,
  type Request,
  type ServiceFaults,
  startServer,
} from './http.ts';
import { type InvocationRecord, LambdaFunction, SqsEventSourceMapping } from './lambda.ts';
import { lambdaApi } from './lambda-api.ts';
import { Schedules } from './schedule.ts';
import { SecretsManagerService } from './secretsmanager.ts';
import { signedFetch } from './sigv4.ts';
import { type PublishedMessage, SnsService } from './sns.ts';
import { type Queue, SqsService } from './sqs.ts';
import { SsmService } from './ssm.ts';
import { defaultStackContext, readPackagedTemplate, Stack } from './template.ts';
import { extractZip } from './zip.ts';

type Json = Record<string, any>;

export interface LocalCloudOptions {
  /** Output directory of `serverless package`. */
  packagedDir: string;
  fleet?: InstanceSpec[];
  /** Simulated seconds per real second for every wait (see clock.ts). Default 1. */
  clockScale?: number;
  faults?: {
    ssm?: ServiceFaults;
    ec2?: ServiceFaults;
    sqs?: ServiceFaults;
    sns?: ServiceFaults;
    autoscaling?: ServiceFaults;
    cloudwatch?: ServiceFaults;
    /**
     * Parameter Store's throughput quota in calls per simulated second, shared by GetParameter,
     * GetParameters and GetParametersByPath (AWS's default is 40); unlimited when absent.
     */
    parameterStoreTps?: number;
  };
  /** Auto Scaling groups to create (tags, launch lifecycle hook); see `scaleOut`. */
  autoScalingGroups?: GroupSpec[];
  agent?: { deliverySeconds?: number; executionTimeoutFloorMs?: number; stubScript?: boolean };
  /**
   * Real milliseconds an SQS message sent with a delay waits at least (see sqs.ts). With a fast
   * clock, keeps a retry's backoff longer than the DynamoDB commit that precedes it, as in AWS.
   */
  sqsDelayFloorMs?: number;
  /** Extra environment for every function (e.g. POWERTOOLS_LOG_LEVEL). */
  functionEnvironment?: Record<string, string>;
  /** Keep the working directory (instances, extracted bundles) after stop(). */
  keepWorkDir?: boolean;
}

export interface Endpoints {
  ssm: string;
  secretsmanager: string;
  ec2: string;
  sqs: string;
  sns: string;
  dynamodb: string;
  autoscaling: string;
  /** CloudWatch (alarms): AWS_ENDPOINT_URL_CLOUDWATCH. */
  cloudwatch: string;
  /** Base URL of the HTTP API (API Gateway v2, stage $default): `${api}/resync`. */
  api: string;
  /** The Lambda API (Invoke only): `aws lambda invoke`, `npm run local -- invoke`. */
  lambda: string;
}

/** The admin's identity on the HTTP API (the key of `clientEnv`). */
export const ADMIN_ARN = 'arn:aws:iam::123456789012:user/local-admin';
const ADMIN_SECRET = 'local-cloud-admin-secret';

export interface ApiCall {
  method?: string;
  /** A JSON value (serialised) or a raw string body. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Sign with these credentials; default the admin's. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Send without a signature. */
  unsigned?: boolean;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

export interface LocalCloud {
  endpoints: Endpoints;
  /** Environment for an SDK client or the AWS CLI talking to this cloud as the admin. */
  clientEnv: Record<string, string>;
  /** Client config for an SDK client as the admin: `new SSMClient(cloud.clientConfig('ssm'))`. */
  clientConfig(service: Exclude<keyof Endpoints, 'api'>): {
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  region: string;
  stackName: string;
  stack: Stack;
  workDir: string;
  clock: Clock;
  fleet: Fleet;
  ssm: SsmService;
  /** Secrets Manager (secrets, versions, staging labels); `rotate()` plays a rotation. */
  secretsManager: SecretsManagerService;
  sqs: SqsService;
  sns: SnsService;
  /** CloudWatch alarms (no metric evaluation: an alarm changes state only when set). */
  cloudwatch: CloudWatchService;
  /**
   * Creates (or overwrites) a metric alarm as PutMetricAlarm does — new alarms start
   * INSUFFICIENT_DATA. `options` are PutMetricAlarm parameters over a placeholder metric
   * (Namespace LocalCloud, MetricName <name>, Sum over 60 s, > 0 for 1 period). Throws the
   * ServiceError CloudWatch would answer for invalid input.
   */
  createAlarm(name: string, options?: Record<string, unknown>): MetricAlarm;
  /**
   * SetAlarmState: moves the alarm to `state` (a change emits "CloudWatch Alarm State Change"
   * and stops the Run Command commands watching it, as ssm.ts models). Throws ServiceError
   * ResourceNotFound for an unknown alarm, as AWS does.
   */
  setAlarmState(name: string, state: AlarmStateValue, reason?: string): MetricAlarm;
  bus: EventBus;
  /** Scheduled rules (rate expressions) on the scaled clock; `fire` runs one now. */
  schedules: Schedules;
  /**
   * Runs a scheduled rule now (by logical id, e.g. `DriftScheduleProd2`, or name): its
   * "Scheduled Event" goes to the rule's targets as on schedule. Throws for an unknown rule.
   */
  fireSchedule(rule: string): AwsEvent;
  functions: Map<string, LambdaFunction>;
  faults: {
    ssm: ServiceFaults;
    ec2: ServiceFaults;
    sqs: ServiceFaults;
    sns: ServiceFaults;
    autoscaling: ServiceFaults;
    cloudwatch: ServiceFaults;
  };
  /** EC2 Auto Scaling: groups, lifecycle actions and what happened to their instances, in order. */
  autoscaling: AutoScalingService;
  /** Creates an Auto Scaling group (tags propagated at launch, optional launch lifecycle hook). */
  createAutoScalingGroup(spec: GroupSpec): void;
  /**
   * Scales a group out by one instance: Pending:Wait with the lifecycle action event (if the
   * group has a launch hook), `running` after bootSeconds, its agent registered with SSM later.
   */
  scaleOut(groupName: string, options?: ScaleOutOptions): Instance;
  /** The HTTP API of the template (routes, requests answered, principals). */
  api: HttpApi;
  /** Lets `accessKeyId` sign HTTP API requests as `principal` (an IAM user or role session ARN). */
  registerPrincipal(accessKeyId: string, principal: Principal): void;
  /** Calls the HTTP API, SigV4-signed as the admin unless told otherwise. */
  callApi(path: string, call?: ApiCall): Promise<ApiResponse>;
  /** Every call to the SSM, EC2, SQS, SNS, Auto Scaling and CloudWatch endpoints, in order. */
  calls: ApiCallRecord[];
  /** Every DynamoDB write, item by item (PutItem, UpdateItem, DeleteItem, batch and transaction items). */
  dynamodbWrites: DynamoDbWrite[];
  /** Requests the HTTP API answered, in order. */
  apiRequests(): ApiRequestRecord[];
  /** The SSM document's physical name (Ref of the AWS::SSM::Document). */
  documentName: string;
  putParameter(
    name: string,
    value: string,
    options?: { type?: 'String' | 'SecureString'; overwrite?: boolean },
  ): number;
  deleteParameter(name: string): void;
  /** Launches an instance: pending, then running after `bootSeconds`, with EC2 state-change events. */
  launchInstance(spec: InstanceSpec, bootSeconds?: number): Instance;
  /** The function by serverless key (`propagate`), logical id or name. */
  fn(name: string): LambdaFunction;
  /** The queue by logical id (`DeadLetterQueue`) or name. */
  queue(name: string): Queue;
  /** Messages published to SNS, in order. */
  snsMessages(): PublishedMessage[];
  events(): AwsEvent[];
  invocations(functionName?: string): InvocationRecord[];
  /** Resolves with the predicate's first truthy value; rejects after `timeoutMs` (default 15000). */
  waitFor<T>(
    predicate: () => T | Promise<T>,
    options?: { timeoutMs?: number; message?: string },
  ): Promise<NonNullable<T>>;
  /** Waits until every command sent so far has reached a terminal status. */
  commandsSettled(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startLocalCloud(options: LocalCloudOptions): Promise<LocalCloud> {
  const clock = new Clock(options.clockScale ?? 1);
  const workDir = mkdtempSync(join(tmpdir(), 'local-cloud-'));
  const closers: Array<() => Promise<void> | void> = [];
  try {
    return await build(options, clock, workDir, closers);
  } catch (error) {
    for (const close of closers.reverse()) await close();
    if (!options.keepWorkDir) rmSync(workDir, { recursive: true, force: true });
    throw error;
  }
}

async function build(
  options: LocalCloudOptions,
  clock: Clock,
  workDir: string,
  closers: Array<() => Promise<void> | void>,
): Promise<LocalCloud> {
  const { template, stackName, region } = readPackagedTemplate(options.packagedDir);
  const faults = {
    ssm: { ...options.faults?.ssm },
    ec2: { ...options.faults?.ec2 },
    sqs: { ...options.faults?.sqs },
    sns: { ...options.faults?.sns },
    autoscaling: { ...options.faults?.autoscaling },
    cloudwatch: { ...options.faults?.cloudwatch },
  };
  closers.push(() => clock.stop());

  const fleet = new Fleet(join(workDir, 'fleet'), clock);
  // API calls by `service.Operation` and by caller: what the benchmarks count.
  const calls: ApiCallRecord[] = [];
  const countCall = (service: string, request: Request): Request => {
    calls.push({
      service,
      operation: operationOf(request),
      caller: request.accessKeyId,
      at: clock.nowMs(),
    });
    return request;
  };
  const functions = new Map<string, LambdaFunction>();
  const functionsByArn = new Map<string, LambdaFunction>();

  // ---- Services and their endpoints ----
  const sqs = new SqsService(clock, region);
  sqs.faults = faults.sqs;
  sqs.delayFloorMs = options.sqsDelayFloorMs ?? 0;
  const sqsServer = await startServer(
    (request) => sqs.handle(countCall('sqs', request)),
    () => faults.sqs,
  );
  closers.push(() => sqsServer.close());
  sqs.endpoint = sqsServer.endpoint;

  const stack = new Stack(template, defaultStackContext(stackName, region, sqsServer.endpoint));
  const tagKey = fanoutTagKey(stack);

  // Everything that can receive a payload by ARN: destinations, DLQs, rule targets.
  const sendToArn = (arn: string, payload: string, attributes: Record<string, string> = {}) => {
    if (arn.startsWith('arn:aws:sqs:')) {
      const queue = sqs.byArn(arn);
      if (!queue) throw new Error(`no queue ${arn}`);
      queue.send(payload, {
        messageAttributes: Object.fromEntries(
          Object.entries(attributes).map(([key, value]) => [
            key,
            { DataType: 'String', StringValue: value },
          ]),
        ),
        senderId: 'AIDAEVENTSLOCAL',
      });
    } else if (arn.startsWith('arn:aws:lambda:')) {
      const fn = functionsByArn.get(arn.replace(/:\$LATEST$/, ''));
      if (!fn)
        throw Object.assign(new Error(`Function not found: ${arn}`), {
          name: 'ResourceNotFoundException',
        });
      fn.invokeAsync(JSON.parse(payload));
    } else if (arn.startsWith('arn:aws:sns:')) {
      const body = new URLSearchParams({ Action: 'Publish', TopicArn: arn, Message: payload });
      const reply = sns.handle({
        method: 'POST',
        path: '/',
        query: new URLSearchParams(),
        headers: {},
        body: body.toString(),
        rawBody: Buffer.from(body.toString()),
        rawQuery: '',
        accessKeyId: 'events.amazonaws.com',
        requestId: 'internal',
      });
      if (reply.status !== 200) throw new Error(`SNS publish to ${arn} failed: ${reply.body}`);
    } else {
      throw new Error(`the local cloud cannot deliver to ${arn}`);
    }
  };

  const sns = new SnsService(region, (subscription, notification) => {
    if (subscription.protocol === 'sqs') {
      sendToArn(
        subscription.endpoint,
        subscription.raw ? String(notification.Message) : JSON.stringify(notification),
      );
    } else if (subscription.protocol === 'lambda') {
      const fn = functionsByArn.get(subscription.endpoint);
      fn?.invokeAsync({
        Records: [
          {
            EventSource: 'aws:sns',
            EventVersion: '1.0',
            EventSubscriptionArn: `${notification.TopicArn}:local`,
            Sns: notification,
          },
        ],
      });
    }
    // email and others: recorded in sns.published only.
  });
  sns.faults = faults.sns;
  sns.now = () => clock.now();
  const snsServer = await startServer(
    (request) => sns.handle(countCall('sns', request)),
    () => faults.sns,
  );
  closers.push(() => snsServer.close());

  const bus = new EventBus({
    region,
    clock,
    invoke: async (target, payload) => {
      if (target.runCommandTargets === undefined) return sendToArn(target.arn, payload);
      // A Run Command target: EventBridge itself sends the document (no Lambda in between).
      ssm.sendCommand({
        DocumentName: target.arn.replace(/^arn:aws:ssm:[^:]*:[^:]*:document\//, ''),
        Targets: target.runCommandTargets,
        Parameters: JSON.parse(payload),
      });
    },
    deadLetter: (arn, payload, attributes) => sendToArn(arn, payload, attributes),
  });

  // CloudWatch alarms: state changes go to the bus, and to Run Command's alarm monitoring.
  const cloudwatch = new CloudWatchService({
    region,
    clock,
    emit: (detailType, detail, resources) =>
      bus.put('aws.cloudwatch', detailType, detail, resources),
  });
  cloudwatch.faults = faults.cloudwatch;
  const cloudwatchServer = await startServer(
    (request) => cloudwatch.handle(countCall('cloudwatch', request)),
    () => faults.cloudwatch,
  );
  closers.push(() => cloudwatchServer.close());

  const ssm = new SsmService({
    region,
    clock,
    fleet,
    environmentOf: (instance) => instance.tags[tagKey],
    emit: (event) => bus.put('aws.ssm', event.detailType, event.detail, event.resources),
    alarms: { stateOf: (name) => cloudwatch.stateOf(name) },
  });
  cloudwatch.onStateChange(({ alarm }) => ssm.alarmChanged(alarm.AlarmName));
  cloudwatch.onDelete((alarm) => ssm.alarmChanged(alarm.AlarmName));
  ssm.faults = faults.ssm;
  ssm.throttleParameterReads(options.faults?.parameterStoreTps);
  const ssmServer = await startServer(
    (request) => ssm.handle(countCall('ssm', request)),
    () => faults.ssm,
  );
  closers.push(() => ssmServer.close());

  const secretsManager = new SecretsManagerService({
    region,
    clock,
    fleet,
    environmentOf: (instance) => instance.tags[tagKey],
    emit: (detailType, detail) => bus.put('aws.secretsmanager', detailType, detail, []),
  });
  const secretsManagerServer = await startServer(
    (request) => secretsManager.handle(countCall('secretsmanager', request)),
    () => secretsManager.faults,
  );
  closers.push(() => secretsManagerServer.close());

  const ec2 = new Ec2Service(fleet, region);
  ec2.faults = faults.ec2;
  // A user's RunInstances / TerminateInstances / CreateTags / DeleteTags: the instance's life and
  // the events AWS emits for it (EC2 state-change events come from the fleet's 'state' below).
  const tagVersions = new Map<string, number>();
  ec2.hooks = {
    launch: (tags) => {
      const instance = fleet.add({ tags, state: 'pending' });
      fleet.emit('state', { instance, previousState: 'pending' });
      clock.after(5, () => {
        if (instance.state === 'pending') fleet.setState(instance.id, 'running');
      });
      return instance;
    },
    terminate: (instance) => {
      fleet.setState(instance.id, 'shutting-down');
      clock.after(1, () => fleet.setState(instance.id, 'terminated'));
    },
    // "Tag Change on Resource" from aws.tag, with every tag the resource now has
    // (https://docs.aws.amazon.com/tag-editor/latest/userguide/monitor-tag-changes.html).
    tagsChanged: (instance, changedKeys) => {
      const version = (tagVersions.get(instance.id) ?? 0) + 1;
      tagVersions.set(instance.id, version);
      bus.put(
        'aws.tag',
        'Tag Change on Resource',
        {
          'changed-tag-keys': changedKeys,
          service: 'ec2',
          'resource-type': 'instance',
          version,
          tags: { ...instance.tags },
        },
        [`arn:aws:ec2:${region}:${stack.context.accountId}:instance/${instance.id}`],
      );
    },
  };
  const ec2Server = await startServer(
    (request) => ec2.handle(countCall('ec2', request)),
    () => faults.ec2,
  );
  closers.push(() => ec2Server.close());

  // EC2 Auto Scaling (Query protocol). Who may complete lifecycle actions: the callers' roles.
  const rolePolicies = new Map<string, Array<Record<string, any>>>();
  const autoscaling = new AutoScalingService({
    region,
    clock,
    fleet,
    emit: (source, detailType, detail, resources) => bus.put(source, detailType, detail, resources),
    authorize: (accessKeyId, group) => {
      if (accessKeyId === ADMIN_ACCESS_KEY_ID) return undefined;
      const statements = rolePolicies.get(accessKeyId);
      if (statements !== undefined && allowsCompleteLifecycleAction(statements, group))
        return undefined;
      return `User: ${accessKeyId} is not authorized to perform: autoscaling:CompleteLifecycleAction on resource: ${group.arn} because no identity-based policy allows the autoscaling:CompleteLifecycleAction action`;
    },
  });
  autoscaling.faults = faults.autoscaling;
  const autoscalingServer = await startServer(
    (request) => autoscaling.handle(countCall('autoscaling', request)),
    () => faults.autoscaling,
  );
  closers.push(() => autoscalingServer.close());
  for (const spec of options.autoScalingGroups ?? []) autoscaling.createGroup(spec);

  const dynalite = await startDynalite();
  closers.push(() => dynalite.close());
  const dynamodbFront = await startDynamoDbCounter(dynalite.endpoint);
  closers.push(() => dynamodbFront.close());

  const endpoints: Endpoints = {
    ssm: ssmServer.endpoint,
    secretsmanager: secretsManagerServer.endpoint,
    ec2: ec2Server.endpoint,
    sqs: sqsServer.endpoint,
    sns: snsServer.endpoint,
    dynamodb: dynamodbFront.endpoint,
    autoscaling: autoscalingServer.endpoint,
    cloudwatch: cloudwatchServer.endpoint,
    api: '',
    lambda: '',
  };
  const adminCredentials = {
    accessKeyId: ADMIN_ACCESS_KEY_ID,
    secretAccessKey: ADMIN_SECRET,
  };

  const agents = new Agents({
    ssm,
    fleet,
    clock,
    region,
    ssmEndpoint: endpoints.ssm,
    secretsManagerEndpoint: endpoints.secretsmanager,
    ...(options.agent?.deliverySeconds === undefined
      ? {}
      : { deliverySeconds: options.agent.deliverySeconds }),
    ...(options.agent?.executionTimeoutFloorMs === undefined
      ? {}
      : { executionTimeoutFloorMs: options.agent.executionTimeoutFloorMs }),
    ...(options.agent?.stubScript ? { stubScript: true } : {}),
  });
  ssm.onSendCommand = (command) => agents.dispatch(command);
  closers.push(() => agents.stop());

  // EC2 state-change events (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html).
  fleet.on('state', ({ instance }) => {
    bus.put(
      'aws.ec2',
      'EC2 Instance State-change Notification',
      { 'instance-id': instance.id, state: instance.state },
      [`arn:aws:ec2:${region}:${stack.context.accountId}:instance/${instance.id}`],
    );
  });
  for (const spec of options.fleet ?? []) fleet.add(spec);

  // ---- Resources of the template ----
  const dynamodb = new DynamoDBClient({
    endpoint: endpoints.dynamodb,
    region,
    credentials: adminCredentials,
  });
  for (const [logicalId, resource] of stack.resources('AWS::DynamoDB::Table')) {
    await dynamodb.send(
      new CreateTableCommand(tableInput(stack, logicalId, resource.Properties ?? {})),
    );
  }
  dynamodb.destroy();

  const queueResources = stack.resources('AWS::SQS::Queue');
  // Dead-letter queues first does not matter: redrive resolves the target by ARN when it moves.
  for (const [logicalId, resource] of queueResources) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    const redrive =
      typeof props.RedrivePolicy === 'string'
        ? JSON.parse(props.RedrivePolicy)
        : props.RedrivePolicy;
    sqs.createQueue({
      name: stack.physicalName(logicalId),
      ...(props.VisibilityTimeout === undefined
        ? {}
        : { visibilityTimeout: Number(props.VisibilityTimeout) }),
      ...(props.DelaySeconds === undefined ? {} : { delaySeconds: Number(props.DelaySeconds) }),
      ...(props.MessageRetentionPeriod === undefined
        ? {}
        : { messageRetentionPeriod: Number(props.MessageRetentionPeriod) }),
      ...(redrive
        ? {
            redrive: {
              deadLetterTargetArn: redrive.deadLetterTargetArn,
              maxReceiveCount: Number(redrive.maxReceiveCount),
            },
          }
        : {}),
    });
  }

  for (const [logicalId] of stack.resources('AWS::SNS::Topic'))
    sns.createTopic(stack.physicalName(logicalId));
  // AWS::CloudWatch::Alarm: its properties are PutMetricAlarm's, AlarmName generated when absent
  // (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-cloudwatch-alarm.html).
  for (const [logicalId, resource] of stack.resources('AWS::CloudWatch::Alarm')) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    cloudwatch.putMetricAlarm({ ...props, AlarmName: stack.physicalName(logicalId) });
  }
  for (const [, resource] of stack.resources('AWS::SNS::Subscription')) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    sns.topics.get(props.TopicArn)?.subscriptions.push({
      protocol: String(props.Protocol),
      endpoint: String(props.Endpoint),
      raw: props.RawMessageDelivery === true || props.RawMessageDelivery === 'true',
    });
  }

  let documentName = '';
  for (const [logicalId, resource] of stack.resources('AWS::SSM::Document')) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    if ((props.DocumentType ?? 'Command') !== 'Command') continue;
    const name = stack.physicalName(logicalId);
    ssm.registerDocument(name, props.Content);
    documentName ||= name;
  }

  const asyncConfigs = new Map<string, Json>();
  for (const [, resource] of stack.resources('AWS::Lambda::EventInvokeConfig')) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    asyncConfigs.set(String(props.FunctionName), props);
  }
  const lambdaDir = join(workDir, 'lambda');
  for (const [logicalId, resource] of stack.resources('AWS::Lambda::Function')) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    const name = stack.physicalName(logicalId);
    checkEnvironmentSize(name, props.Environment?.Variables ?? {});
    const key = basename(String(props.Code?.S3Key ?? `${logicalId}.zip`), '.zip');
    const codeDir = join(lambdaDir, key);
    mkdirSync(codeDir, { recursive: true });
    extractZip(join(options.packagedDir, `${key}.zip`), codeDir);
    const arn = stack.getAtt(logicalId, 'Arn');
    const asyncConfig = asyncConfigs.get(name) ?? asyncConfigs.get(arn) ?? {};
    const fn = new LambdaFunction(
      {
        name,
        logicalId,
        arn,
        region,
        codeDir,
        handler: String(props.Handler),
        timeoutSeconds: Number(props.Timeout ?? 3),
        memorySize: Number(props.MemorySize ?? 128),
        environment: {
          ...Object.fromEntries(
            Object.entries(props.Environment?.Variables ?? {}).map(([k, v]) => [k, String(v)]),
          ),
          ...runtimeEnvironment(
            name,
            codeDir,
            String(props.Handler),
            region,
            Number(props.MemorySize ?? 128),
            endpoints,
          ),
          ...options.functionEnvironment,
        },
        asyncConfig: {
          maximumRetryAttempts: Number(asyncConfig.MaximumRetryAttempts ?? 2),
          maximumEventAgeInSeconds: Number(asyncConfig.MaximumEventAgeInSeconds ?? 21600),
          ...(asyncConfig.DestinationConfig?.OnSuccess?.Destination
            ? { onSuccess: asyncConfig.DestinationConfig.OnSuccess.Destination }
            : {}),
          ...(asyncConfig.DestinationConfig?.OnFailure?.Destination
            ? { onFailure: asyncConfig.DestinationConfig.OnFailure.Destination }
            : {}),
        },
        ...(props.DeadLetterConfig?.TargetArn
          ? { deadLetterArn: props.DeadLetterConfig.TargetArn }
          : {}),
      },
      clock,
      sendToArn,
    );
    functions.set(key, fn);
    functionsByArn.set(arn, fn);
    // The identity policies of the function's role (inline Policies), for the IAM checks.
    const roleArn = String(props.Role ?? '');
    for (const [roleId, role] of stack.resources('AWS::IAM::Role')) {
      if (stack.getAtt(roleId, 'Arn') !== roleArn) continue;
      const roleProps = stack.resolve(role.Properties ?? {}) as Json;
      rolePolicies.set(
        `ASIA-LOCAL-${name}`,
        ((roleProps.Policies ?? []) as Json[]).flatMap((policy) => {
          const statement = policy.PolicyDocument?.Statement ?? [];
          return Array.isArray(statement) ? statement : [statement];
        }),
      );
    }
  }
  closers.push(async () => {
    await Promise.all([...functions.values()].map((fn) => fn.stop()));
  });

  const schedules = new Schedules({ bus, clock, region });
  for (const [logicalId, resource] of stack.resources('AWS::Events::Rule')) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    if (props.EventBusName !== undefined && props.EventBusName !== 'default') continue;
    const rule: Rule = {
      name: stack.physicalName(logicalId),
      arn: stack.getAtt(logicalId, 'Arn'),
      pattern:
        props.EventPattern === undefined
          ? {}
          : typeof props.EventPattern === 'string'
            ? JSON.parse(props.EventPattern)
            : props.EventPattern,
      ...(props.ScheduleExpression === undefined
        ? {}
        : { schedule: String(props.ScheduleExpression) }),
      enabled: (props.State ?? 'ENABLED') === 'ENABLED',
      targets: ((props.Targets ?? []) as Json[]).map((target) => ({
        id: String(target.Id),
        arn: String(target.Arn),
        ...(target.Input === undefined ? {} : { input: String(target.Input) }),
        ...(target.InputPath === undefined ? {} : { inputPath: String(target.InputPath) }),
        ...(target.InputTransformer === undefined
          ? {}
          : {
              inputTransformer: {
                inputPathsMap: target.InputTransformer.InputPathsMap ?? {},
                inputTemplate: String(target.InputTransformer.InputTemplate),
              },
            }),
        ...(target.RetryPolicy
          ? {
              retryPolicy: {
                maximumRetryAttempts: Number(target.RetryPolicy.MaximumRetryAttempts ?? 185),
                maximumEventAgeInSeconds: Number(
                  target.RetryPolicy.MaximumEventAgeInSeconds ?? 86400,
                ),
              },
            }
          : {}),
        ...(target.DeadLetterConfig?.Arn
          ? { deadLetterArn: String(target.DeadLetterConfig.Arn) }
          : {}),
        ...(target.RunCommandParameters?.RunCommandTargets
          ? { runCommandTargets: target.RunCommandParameters.RunCommandTargets }
          : {}),
      })),
    };
    if (rule.schedule !== undefined) {
      if (props.EventPattern !== undefined) {
        throw new Error(`local cloud: rule ${logicalId} has both a schedule and a pattern`);
      }
      schedules.add(logicalId, rule);
    } else {
      bus.addRule(rule);
    }
  }

  const mappings: SqsEventSourceMapping[] = [];
  for (const [, resource] of stack.resources('AWS::Lambda::EventSourceMapping')) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    const queue = sqs.byArn(String(props.EventSourceArn));
    if (!queue) continue; // streams: not modelled
    const target = String(props.FunctionName);
    const fn =
      functionsByArn.get(target) ??
      [...functions.values()].find((candidate) => candidate.name === target);
    if (!fn) throw new Error(`event source mapping to unknown function ${target}`);
    if (props.Enabled === false || props.Enabled === 'false') continue;
    const mapping = new SqsEventSourceMapping(
      {
        queue,
        fn,
        region,
        batchSize: Number(props.BatchSize ?? 10),
        maximumBatchingWindowInSeconds: Number(props.MaximumBatchingWindowInSeconds ?? 0),
        reportBatchItemFailures: ((props.FunctionResponseTypes ?? []) as string[]).includes(
          'ReportBatchItemFailures',
        ),
      },
      clock,
    );
    mapping.start();
    mappings.push(mapping);
  }
  closers.push(async () => {
    await Promise.all(mappings.map((mapping) => mapping.stop()));
  });

  // ---- HTTP API ----
  const [api, ...otherApis] = httpApisFromTemplate(stack, (arn) => functionsByArn.get(arn));
  if (api === undefined || otherApis.length > 0) {
    throw new Error('local cloud: expected exactly one HTTP API in the template');
  }
  api.now = () => clock.now();
  api.registerPrincipal(ADMIN_ACCESS_KEY_ID, { secretAccessKey: ADMIN_SECRET, userArn: ADMIN_ARN });
  const apiServer = await startServer((request) => api.handle(request));
  closers.push(() => apiServer.close());
  api.endpoint = apiServer.endpoint;
  endpoints.api = apiServer.endpoint;

  const callApi: LocalCloud['callApi'] = async (path, call = {}) => {
    const url = `${apiServer.endpoint}${path}`;
    const method = call.method ?? (call.body === undefined ? 'GET' : 'POST');
    const body =
      call.body === undefined
        ? undefined
        : typeof call.body === 'string'
          ? call.body
          : JSON.stringify(call.body);
    const response = call.unsigned
      ? await fetch(url, {
          method,
          headers: {
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            ...call.headers,
          },
          ...(body === undefined ? {} : { body }),
        })
      : await signedFetch(url, {
          method,
          credentials: call.credentials ?? adminCredentials,
          region,
          ...(body === undefined ? {} : { body }),
          ...(call.headers === undefined ? {} : { headers: call.headers }),
        });
    const text = await response.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: Object.fromEntries(response.headers), text, json };
  };

  const fnByName = (name: string): LambdaFunction => {
    const fn =
      functions.get(name) ??
      [...functions.values()].find(
        (candidate) => candidate.name === name || candidate.options.logicalId === name,
      );
    if (!fn)
      throw new Error(`no function ${name}; the template has ${[...functions.keys()].join(', ')}`);
    return fn;
  };

  // The Lambda API (Invoke), by function name or ARN as AWS resolves them.
  const lambdaServer = await startServer(
    lambdaApi(
      (name) => functionsByArn.get(name) ?? [...functions.values()].find((fn) => fn.name === name),
      `arn:aws:lambda:${region}:${stack.context.accountId}:function:`,
    ),
  );
  closers.push(() => lambdaServer.close());
  endpoints.lambda = lambdaServer.endpoint;

  const waitFor: LocalCloud['waitFor'] = async (predicate, waitOptions = {}) => {
    // Generous: a loaded 2-core CI machine runs several clouds at once; a real hang still fails.
    const deadline = Date.now() + (waitOptions.timeoutMs ?? 60_000);
    for (;;) {
      const value = await predicate();
      if (value) return value as NonNullable<typeof value>;
      if (Date.now() > deadline)
        throw new Error(
          `local cloud: timed out waiting for ${waitOptions.message ?? 'a condition'}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  let stopped = false;
  return {
    endpoints,
    clientEnv: {
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      AWS_ACCESS_KEY_ID: adminCredentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: adminCredentials.secretAccessKey,
      AWS_ENDPOINT_URL_SSM: endpoints.ssm,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoints.secretsmanager,
      AWS_ENDPOINT_URL_EC2: endpoints.ec2,
      AWS_ENDPOINT_URL_SQS: endpoints.sqs,
      AWS_ENDPOINT_URL_SNS: endpoints.sns,
      AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
      AWS_ENDPOINT_URL_AUTO_SCALING: endpoints.autoscaling,
      AWS_ENDPOINT_URL_CLOUDWATCH: endpoints.cloudwatch,
      AWS_ENDPOINT_URL_LAMBDA: endpoints.lambda,
    },
    clientConfig: (service) => ({
      endpoint: endpoints[service],
      region,
      credentials: adminCredentials,
    }),
    region,
    stackName,
    stack,
    workDir,
    clock,
    fleet,
    ssm,
    secretsManager,
    sqs,
    sns,
    cloudwatch,
    createAlarm: (name, alarmOptions = {}) =>
      cloudwatch.putMetricAlarm({ ...placeholderAlarm(name), ...alarmOptions, AlarmName: name }),
    setAlarmState: (name, state, reason = 'Set by the local cloud') =>
      cloudwatch.setAlarmState({ AlarmName: name, StateValue: state, StateReason: reason }),
    bus,
    schedules,
    fireSchedule: (rule) => schedules.fire(rule),
    functions,
    faults,
    autoscaling,
    createAutoScalingGroup: (spec) => {
      autoscaling.createGroup(spec);
    },
    scaleOut: (groupName, scaleOptions) => autoscaling.scaleOut(groupName, scaleOptions),
    api,
    registerPrincipal: (accessKeyId, principal) => api.registerPrincipal(accessKeyId, principal),
    callApi,
    apiRequests: () => [...api.requests],
    calls,
    dynamodbWrites: dynamodbFront.writes,
    documentName,
    putParameter: (name, value, putOptions = {}) =>
      ssm.putParameter({
        Name: name,
        Value: value,
        Type: putOptions.type ?? 'SecureString',
        Overwrite: putOptions.overwrite ?? true,
      }),
    deleteParameter: (name) => ssm.deleteParameter(name),
    launchInstance: (spec, bootSeconds = 5) => {
      const instance = fleet.add({ ...spec, state: 'pending' });
      fleet.emit('state', { instance, previousState: 'pending' });
      clock.after(bootSeconds, () => fleet.setState(instance.id, 'running'));
      return instance;
    },
    fn: fnByName,
    queue: (name) => {
      const byName = sqs.queues.get(name);
      if (byName) return byName;
      return sqs.byUrl(stack.ref(name));
    },
    snsMessages: () => [...sns.published],
    events: () => [...bus.events],
    invocations: (name) =>
      name === undefined
        ? [...functions.values()].flatMap((fn) => fn.invocations)
        : [...fnByName(name).invocations],
    waitFor,
    commandsSettled: async (timeoutMs = 60_000) => {
      await waitFor(
        () =>
          [...ssm.commands.values()].every((command) =>
            [...command.invocations.values()].every((invocation) => ssm.isTerminal(invocation)),
          ),
        { timeoutMs, message: 'every command to settle' },
      );
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      for (const close of closers.reverse()) await close();
      if (!options.keepWorkDir) rmSync(workDir, { recursive: true, force: true });
    },
  };
}

export interface ApiCallRecord {
  service: string;
  operation: string;
  /** The access key id: ASIA-LOCAL-<function>, an instance id, or the admin's. */
  caller: string;
  at: number;
}

/**
 * The operation of a call: X-Amz-Target (JSON protocols), the path of Smithy RPC v2
 * (`/service/<service>/operation/<Op>`) or Action (Query protocol).
 */
function operationOf(request: Request): string {
  const target = request.headers['x-amz-target'];
  if (typeof target === 'string') return target.split('.').at(-1) ?? target;
  const rpcV2 = /^\/service\/[^/]+\/operation\/([^/]+)$/.exec(request.path)?.[1];
  if (rpcV2 !== undefined) return rpcV2;
  return parseForm(request.body).get('Action') ?? request.query.get('Action') ?? 'unknown';
}

function runtimeEnvironment(
  name: string,
  codeDir: string,
  handler: string,
  region: string,
  memorySize: number,
  endpoints: Endpoints,
): Record<string, string> {
  return {
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    AWS_LAMBDA_FUNCTION_NAME: name,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(memorySize),
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${name}`,
    AWS_LAMBDA_LOG_STREAM_NAME: `local/[$LATEST]${name}`,
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    LAMBDA_TASK_ROOT: codeDir,
    _HANDLER: handler,
    TZ: ':UTC',
    LANG: 'en_US.UTF-8',
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    // The function's role; the local SSM treats any non-instance, non-admin key as a function.
    AWS_ACCESS_KEY_ID: `ASIA-LOCAL-${name}`,
    AWS_SECRET_ACCESS_KEY: 'local-cloud-function-secret',
    AWS_SESSION_TOKEN: 'local-cloud-session',
    AWS_ENDPOINT_URL_SSM: endpoints.ssm,
    // serviceId "Secrets Manager" → AWS_ENDPOINT_URL_SECRETS_MANAGER.
    AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoints.secretsmanager,
    AWS_ENDPOINT_URL_EC2: endpoints.ec2,
    AWS_ENDPOINT_URL_SQS: endpoints.sqs,
    AWS_ENDPOINT_URL_SNS: endpoints.sns,
    AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
    // serviceId "Auto Scaling" → AWS_ENDPOINT_URL_AUTO_SCALING (@smithy getEndpointUrlConfig).
    AWS_ENDPOINT_URL_AUTO_SCALING: endpoints.autoscaling,
    // serviceId "CloudWatch" → AWS_ENDPOINT_URL_CLOUDWATCH.
    AWS_ENDPOINT_URL_CLOUDWATCH: endpoints.cloudwatch,
    POWERTOOLS_TRACE_ENABLED: 'false',
    AWS_XRAY_CONTEXT_MISSING: 'IGNORE_ERROR',
  };
}

function tableInput(stack: Stack, logicalId: string, properties: Json): any {
  const props = stack.resolve(properties) as Json;
  const onDemand = props.BillingMode === 'PAY_PER_REQUEST';
  const throughput = { ReadCapacityUnits: 5, WriteCapacityUnits: 5 };
  // dynalite models provisioned tables; on-demand behaves the same for a local run.
  // It has no UpdateTimeToLive, so TimeToLiveSpecification is not applied (items never expire).
  return {
    TableName: stack.physicalName(logicalId),
    AttributeDefinitions: props.AttributeDefinitions,
    KeySchema: props.KeySchema,
    ...(onDemand
      ? { BillingMode: 'PAY_PER_REQUEST' }
      : { ProvisionedThroughput: props.ProvisionedThroughput ?? throughput }),
    ...(props.GlobalSecondaryIndexes
      ? {
          GlobalSecondaryIndexes: (props.GlobalSecondaryIndexes as Json[]).map((index) => ({
            IndexName: index.IndexName,
            KeySchema: index.KeySchema,
            Projection: index.Projection,
            ...(onDemand
              ? {}
              : { ProvisionedThroughput: index.ProvisionedThroughput ?? throughput }),
          })),
        }
      : {}),
    ...(props.LocalSecondaryIndexes ? { LocalSecondaryIndexes: props.LocalSecondaryIndexes } : {}),
  };
}

/** The tag key instances carry their environment in, from the functions' FANOUT_CONFIG. */
function fanoutTagKey(stack: Stack): string {
  for (const [, resource] of stack.resources('AWS::Lambda::Function')) {
    const text = (resource.Properties as Json | undefined)?.Environment?.Variables?.FANOUT_CONFIG;
    if (typeof text === 'string') {
      try {
        const key = (JSON.parse(text) as { tagKey?: unknown }).tagKey;
        if (typeof key === 'string') return key;
      } catch {
        // not JSON: fall through
      }
    }
  }
  return 'Environment';
}

export type {
  ApiRequestRecord,
  AwsEvent,
  DynamoDbWrite,
  Instance,
  InstanceSpec,
  InvocationRecord,
  LocalServer,
  Principal,
  PublishedMessage,
};

/**
 * Lambda refuses a function whose environment variables, measured as one JSON string, pass 4 KB
 * (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html; the error text as
 * real deployments report it, e.g. github.com/github-aws-runners/terraform-aws-github-runner
 * issue 3594). The deploy fails there, so it fails here.
 */
export function checkEnvironmentSize(name: string, variables: Record<string, unknown>): void {
  const measured = JSON.stringify(variables);
  if (Buffer.byteLength(measured) > 4096) {
    throw new Error(
      `InvalidParameterValueException (${name}): Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: ${measured}`,
    );
  }
}
