import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SNSClient } from '@aws-sdk/client-sns';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { BootstrapDeps } from '../../shared/bootstrap/new-instances.ts';
import {
  type FanoutConfig,
  filesForEnvironment,
  parseConfig,
  type StageConfig,
} from '../../shared/config.ts';
import { DocumentExitCode } from '../../shared/document-contract.ts';
import type { RetryMessage, SendChunkMessage } from '../../shared/messages/retry.ts';
import type { SweepMessage } from '../../shared/messages/sweep.ts';
import type { Answer } from '../../shared/platform/http.ts';
import { Ledger } from '../../shared/rollout/ledger.ts';
import type { Rollout, Target } from '../../shared/rollout/model.ts';
import { newRolloutId } from '../../shared/rollout/rollout-id.ts';
import { RolloutStore } from '../../shared/rollout/store.ts';
import { sendPlannedChunk } from '../../shared/send/chunk-sender.ts';
import { parseRolloutComment, rolloutComment } from '../../shared/send/commands.ts';
import { repairDrift } from '../../shared/send/drift.ts';
import { fanOut } from '../../shared/send/fanout.ts';
import { queuePart } from '../../shared/send/parts.ts';
import { resumeRollout } from '../../shared/send/resume.ts';
import { decideHalted } from '../../shared/stages/decisions.ts';
import { stagedPlan } from '../../shared/stages/plan.ts';
import { progressStage } from '../../shared/stages/progress.ts';
import { retryChunk } from '../../shared/track/retrier.ts';
import { sweepRollout } from '../../shared/track/sweeper.ts';
import { type StatusMessage, trackStatusEvents } from '../../shared/track/tracker.ts';
import { createRolloutsTable } from './dynalite.ts';

/**
 * A small, deterministic world around the real ledger, store (on dynalite), tracker, retrier,
 * sweeper and fan-out: Run Command, EC2 and SQS are in-memory fakes driven step by step on a
 * virtual clock, so a test (or a model-based test's random scheduler) decides exactly when each
 * message is delivered, each invocation finishes, each status event is lost or duplicated, and
 * where a crash or a lost reply falls. Nothing here sleeps.
 */

export type Outcome = 'updated' | 'fetch-failed' | 'content-invalid' | 'delivery-timeout';
export type Fault =
  /** The n-th AWS call of the next step throws before it reaches AWS. */
  | { kind: 'crash'; at: number }
  /** The n-th AWS call of the next step is carried out, then its reply is lost (it throws). */
  | { kind: 'lost-reply'; at: number }
  /** The function dies at the n-th AWS call of the next step: it and every later call fail. */
  | { kind: 'die'; at: number }
  /** The next SendCommand is throttled (after the SDK's own retries). */
  | { kind: 'send-throttled' }
  /** The next alert publish fails (SNS or KMS throttling). */
  | { kind: 'sns-fails' };

interface Message {
  id: number;
  body: string;
  visibleAt: number;
}

interface Invocation {
  status: 'Pending' | 'Success' | 'Failed' | 'TimedOut';
  details: string;
  exitCode: number;
  stdout: string;
}

interface Command {
  commandId: string;
  comment: string;
  parameter: string;
  path: string;
  /** NeverOlder: a pinned version is not written over a later one (the document keeps a record). */
  neverOlder: boolean;
  invocations: Map<string, Invocation>;
}

export interface WorldOptions {
  instances: number;
  /** Files: one parameter written to one path, or to two paths. */
  twoPaths?: boolean;
  maxAttempts?: number;
  /** Instances that are tagged and running but not managed by SSM. */
  unmanaged?: number;
  tableName: string;
  endpoint: string;
  /**
   * Many worlds can share one table: each gets its own environment (so its own parameter,
   * `/<environment>/env.php`), instance ids and rollout ids. Default `prod`.
   */
  environment?: string;
  /** Instance ids start from this (hex digits of the id), to keep shared-table worlds apart. */
  instanceBase?: number;
  /** Stage the environment's parameter changes (custom.fanout.rollout.stages of it). */
  stages?: Partial<StageConfig>;
  /**
   * custom.fanout.rollout.planPartTargets: rollouts with more targets are planned in parts. Set
   * here without the config's minimum (50), so a few instances make parts of one chunk.
   */
  planPartTargets?: number;
}

// The queues' VisibilityTimeout in serverless.yml: a message whose handling failed comes back
// after this long.
const FAILED_VISIBILITY_MS = 360_000;
// AWS error for a call the fault plan broke, shaped like a network failure.
const crash = () => Object.assign(new Error('injected crash'), { name: 'InjectedCrash' });

export class World {
  /** DynamoDB calls made by every world of this process (for the model test's report). */
  static dynamoCalls = 0;
  clock = Date.parse('2026-11-29T12:00:00.000Z');
  readonly config: FanoutConfig;
  readonly environment: string;
  readonly parameter: string;
  readonly store: RolloutStore;
  readonly ledger: Ledger;
  readonly instances: string[];
  readonly unmanaged = new Set<string>();
  /** Instances terminated (scale-in): EC2 lists them as terminated, SSM no longer. */
  readonly terminated = new Set<string>();
  readonly launchTime = new Map<string, Date>();
  /** CompleteLifecycleAction calls: instance id → result. */
  readonly lifecycleResults = new Map<string, string>();
  readonly bootstrapQueue: Message[] = [];
  /** What each instance has on disk: path → version. */
  readonly disk = new Map<string, Map<string, number>>();
  readonly parameterVersion = new Map<string, number>();
  readonly queues = { retry: [] as Message[], status: [] as Message[] };
  readonly commands = new Map<string, Command>();
  /** Alerts published, one entry per successful publish. */
  readonly alerts: Array<{ rolloutId: string; subject: string }> = [];
  readonly rolloutIds: string[] = [];
  readonly trace: string[] = [];
  /** How each invocation ends, decided by the test when it runs it. */
  private faults: Fault[] = [];
  private callsThisStep = 0;
  private nextId = 1;
  private readonly db: DynamoDBDocumentClient;
  private readonly tracker;
  private readonly cloudwatch: CloudWatchClient;
  /** CloudWatch alarm states by name (a staged rollout's alarms). */
  readonly alarms = new Map<string, string>();

  constructor(options: WorldOptions) {
    this.environment = options.environment ?? 'prod';
    this.parameter = `/${this.environment}/env.php`;
    const files = [
      { parameter: '/{env}/env.php', path: '/var/www/html/env.php' },
      ...(options.twoPaths ? [{ parameter: '/{env}/env.php', path: '/opt/app/env.php' }] : []),
    ];
    this.config = parseConfig({
      environments: [this.environment],
      files,
      retry: { maxAttempts: options.maxAttempts ?? 3, baseDelaySeconds: 30 },
      rollout: {
        ...(options.stages === undefined ? {} : { stages: { [this.environment]: options.stages } }),
      },
    });
    if (options.planPartTargets !== undefined) {
      this.config.rollout.planPartTargets = options.planPartTargets;
    }
    this.instances = Array.from(
      { length: options.instances },
      (_, i) =>
        `i-${String(options.instanceBase ?? 0).padStart(9, '0')}${String(i + 1).padStart(8, '0')}`,
    );
    for (const [i, id] of this.instances.entries()) {
      if (i < (options.unmanaged ?? 0)) this.unmanaged.add(id);
      this.disk.set(id, new Map());
    }
    this.parameterVersion.set(this.parameter, 1);
    const raw = DynamoDBDocumentClient.from(
      new DynamoDBClient({
        endpoint: options.endpoint,
        region: 'eu-west-1',
        credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
        maxAttempts: 1,
        // dynalite checks that a request is signed, not the signature: a fixed header halves
        // the cost of each call, and the model test makes hundreds of thousands of them.
        signer: { sign: async (request: HttpRequestLike) => withFixedSignature(request) },
      } as unknown as DynamoDBClientConfig),
      { marshallOptions: { removeUndefinedValues: true } },
    );
    const send = raw.send.bind(raw);
    // Every DynamoDB call goes through the fault plan, like every other AWS call here.
    raw.send = ((command: { input?: { UpdateExpression?: string } }) => {
      World.dynamoCalls++;
      return this.call(() => send(command as never), marksAlertSent(command));
    }) as typeof raw.send;
    this.db = raw;
    this.store = new RolloutStore(raw, options.tableName, () => new Date(this.clock));
    // Real client objects (the SDK's paginators insist), whose send is the fake.
    const fake = <C extends { send: unknown }>(
      client: C,
      handle: (command: object) => Promise<unknown>,
    ) => {
      client.send = ((command: object) => this.call(() => handle(command))) as C['send'];
      return client;
    };
    const region = { region: 'eu-west-1' };
    const sqs = fake(new SQSClient(region), (c) => this.sqs(c));
    const ssm = fake(new SSMClient(region), (c) => this.ssm(c));
    const ec2 = fake(new EC2Client(region), (c) => this.ec2(c));
    this.ledger = new Ledger({
      store: this.store,
      sqs,
      retryQueueUrl: 'retry',
      statusQueueUrl: 'status',
      config: this.config,
      notify: async (rollout: Rollout) => {
        if (this.takeFault('sns-fails'))
          throw Object.assign(new Error('KMS throttled'), { name: 'KMSThrottlingException' });
        this.alerts.push({
          rolloutId: rollout.rolloutId,
          subject: `${rollout.counts.failed} failed`,
        });
      },
    });
    // CloudWatch: the alarms a test sets (DescribeAlarms by name; absent alarms are not listed).
    this.cloudwatch = fake(new CloudWatchClient(region), async (c) => {
      const names: string[] = (c as { input: { AlarmNames?: string[] } }).input.AlarmNames ?? [];
      return {
        MetricAlarms: names.flatMap((AlarmName) => {
          const StateValue = this.alarms.get(AlarmName);
          return StateValue === undefined ? [] : [{ AlarmName, StateValue }];
        }),
      };
    });
    this.tracker = {
      ssm,
      ec2,
      sqs,
      store: this.store,
      ledger: this.ledger,
      config: this.config,
      documentName: 'ReplaceSecretsFile',
    };
  }

  /** A world on a new table. */
  static async create(options: WorldOptions): Promise<World> {
    await createRolloutsTable(options.endpoint, options.tableName);
    return new World(options);
  }

  close(): void {
    this.db.destroy();
  }

  // ---- the actors ------------------------------------------------------------------------

  /** A Parameter Store put: a new version, and (unless `deliver` is false) its rollout. */
  async put(options: { eventSecond?: number; deliver?: boolean } = {}): Promise<string> {
    const version = (this.parameterVersion.get(this.parameter) ?? 0) + 1;
    this.parameterVersion.set(this.parameter, version);
    const eventTime = new Date(
      options.eventSecond === undefined
        ? Math.floor(this.clock / 1000) * 1000
        : options.eventSecond,
    );
    const rolloutId = newRolloutId(eventTime, `${this.environment}-event-${version}`);
    this.rolloutIds.push(rolloutId);
    this.log(`put v${version} → ${rolloutId}`);
    if (options.deliver !== false) await this.propagate(rolloutId, version);
    return rolloutId;
  }

  /** The propagate function for one event (a retried event runs this again, same id). */
  async propagate(rolloutId: string, version: number): Promise<void> {
    await this.step(`propagate ${rolloutId}`, async () => {
      const plan = await stagedPlan(this.tracker, {
        environment: this.environment,
        parameter: this.parameter,
        version,
        rolloutId,
      });
      if ('skip' in plan) return;
      await fanOut(this.tracker, {
        rolloutId,
        trigger: { type: 'event', eventId: rolloutId },
        environment: this.environment,
        files: filesForEnvironment(this.config, this.environment),
        version,
        ...plan,
      });
    });
  }

  /** A person resumes or abandons a halted staged rollout (the resync endpoint); its answer. */
  async decide(rolloutId: string, action: 'resume' | 'abandon'): Promise<Answer | undefined> {
    let answer: Answer | undefined;
    await this.step(`${action} ${rolloutId}`, async () => {
      answer = await decideHalted(
        this.tracker,
        { rolloutId, action },
        'arn:aws:iam::111122223333:user/oncall',
      );
    });
    return answer;
  }

  /** The drift function's run for the environment (a scheduled event); its rollout id. */
  async drift(): Promise<string | undefined> {
    let rolloutId: string | undefined;
    await this.step('drift', async () => {
      const result = await repairDrift(this.tracker, { environment: this.environment });
      if (result.status === 'started') {
        rolloutId = result.summary.rolloutId;
        this.rolloutIds.push(rolloutId);
      }
    });
    return rolloutId;
  }

  /** A manual re-sync of the environment (synchronous: nobody redelivers it if it crashes). */
  async resync(): Promise<string> {
    const rolloutId = newRolloutId(
      new Date(this.clock),
      `${this.environment}-resync-${this.nextId++}`,
    );
    this.rolloutIds.push(rolloutId);
    await this.step(`resync ${rolloutId}`, () =>
      fanOut(this.tracker, {
        rolloutId,
        trigger: { type: 'resync', principal: 'arn:aws:iam::111122223333:user/oncall' },
        environment: this.environment,
        files: filesForEnvironment(this.config, this.environment),
        version: this.parameterVersion.get(this.parameter) ?? 0,
      }),
    );
    return rolloutId;
  }

  /** The agent on `instanceId` runs its invocation of `commandId`; emits its status event(s). */
  runInvocation(
    commandId: string,
    instanceId: string,
    outcome: Outcome,
    events: 'one' | 'lost' | 'twice' = 'one',
  ): void {
    const command = this.commands.get(commandId);
    const invocation = command?.invocations.get(instanceId);
    if (command === undefined || invocation === undefined || invocation.status !== 'Pending') {
      return;
    }
    // A pinned command (`/prod/env.php:3`) writes that version; any other the latest.
    const [name = '', pinned] = command.parameter.split(':');
    const version = pinned === undefined ? (this.parameterVersion.get(name) ?? 0) : Number(pinned);
    switch (outcome) {
      case 'updated': {
        const disk = this.disk.get(instanceId) ?? new Map();
        const before = disk.get(command.path);
        if (
          command.neverOlder &&
          pinned !== undefined &&
          before !== undefined &&
          before > version
        ) {
          // The document finds a later version on disk and writes nothing.
          Object.assign(invocation, {
            status: 'Success',
            details: 'Success',
            exitCode: 0,
            stdout: `secrets-fanout result=unchanged version=${before} reason=newer-on-disk`,
          });
          break;
        }
        disk.set(command.path, version);
        const result = before === version ? 'unchanged' : 'updated';
        Object.assign(invocation, {
          status: 'Success',
          details: 'Success',
          exitCode: 0,
          stdout: `secrets-fanout result=${result} version=${version}`,
        });
        break;
      }
      case 'fetch-failed':
      case 'content-invalid':
        Object.assign(invocation, {
          status: 'Failed',
          details: 'Failed',
          exitCode:
            outcome === 'fetch-failed'
              ? DocumentExitCode.FetchFailed
              : DocumentExitCode.ContentInvalid,
          stdout: `secrets-fanout result=failed reason=${outcome}`,
        });
        break;
      case 'delivery-timeout':
        Object.assign(invocation, {
          status: 'TimedOut',
          details: 'Delivery Timed Out',
          exitCode: -1,
          stdout: '',
        });
        break;
    }
    this.log(`agent ${instanceId} ${commandId} → ${outcome} (events: ${events})`);
    const copies = events === 'lost' ? 0 : events === 'twice' ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      this.enqueue('status', JSON.stringify(this.statusEvent(commandId, instanceId)), 0);
    }
  }

  /** Pending invocations: [commandId, instanceId] pairs, oldest command first. */
  pendingInvocations(): Array<[string, string]> {
    return [...this.commands.values()].flatMap((c) =>
      [...c.invocations]
        .filter(([, inv]) => inv.status === 'Pending')
        .map(([id]) => [c.commandId, id] as [string, string]),
    );
  }

  /** Messages of a queue visible now. */
  visible(queue: 'retry' | 'status'): Message[] {
    return this.queues[queue].filter((m) => m.visibleAt <= this.clock);
  }

  /**
   * Delivers visible messages of the status queue as one batch to the track function (status
   * events and sweeps), or one retry message to the retry function; a message whose handling
   * throws or is reported failed stays in the queue and comes back after a visibility timeout.
   */
  async deliver(queue: 'retry' | 'status', count = 10): Promise<void> {
    const batch = this.visible(queue).slice(0, queue === 'retry' ? 1 : count);
    if (batch.length === 0) return;
    for (const m of batch) m.visibleAt = this.clock + FAILED_VISIBILITY_MS;
    const done = (m: Message) => {
      this.queues[queue] = this.queues[queue].filter((x) => x !== m);
    };
    if (queue === 'retry') {
      const m = batch[0] as Message;
      const body = JSON.parse(m.body);
      if (body.kind === 'send') {
        await this.step(`send chunk ${body.path}#${body.index} of ${body.rolloutId}`, async () => {
          await sendPlannedChunk(this.tracker, body as SendChunkMessage);
          done(m);
        });
        return;
      }
      if (body.kind === 'stage') {
        await this.step(`stage ${body.stage + 1} of ${body.rolloutId}`, async () => {
          await progressStage({ ...this.tracker, cloudwatch: this.cloudwatch }, body);
          done(m);
        });
        return;
      }
      if (body.kind === 'part') {
        await this.step(`part ${body.part} of ${body.rolloutId}`, async () => {
          await queuePart(this.tracker, body.rolloutId, body.part);
          done(m);
        });
        return;
      }
      if (body.kind === 'resume') {
        await this.step(`resume ${body.rolloutId}`, async () => {
          await resumeRollout(this.tracker, body.rolloutId);
          done(m);
        });
        return;
      }
      const message = body as RetryMessage;
      await this.step(
        `retry ${message.instanceIds.join(',')} ${message.path} attempt ${message.attempt}`,
        async () => {
          await retryChunk(this.tracker, message);
          done(m);
        },
      );
      return;
    }
    const events: StatusMessage[] = [];
    const sweeps: Array<{ m: Message; sweep: SweepMessage }> = [];
    for (const m of batch) {
      const body = JSON.parse(m.body);
      if (body.kind === 'sweep') sweeps.push({ m, sweep: body });
      else events.push({ messageId: String(m.id), event: body });
    }
    if (events.length > 0) {
      await this.step(`track ${events.length} events`, async () => {
        const failed = await trackStatusEvents(this.tracker, events);
        for (const m of batch) if (!failed.has(String(m.id)) && !JSON.parse(m.body).kind) done(m);
      });
    }
    for (const { m, sweep } of sweeps) {
      await this.step(`sweep ${sweep.rolloutId} round ${sweep.round}`, async () => {
        await sweepRollout(this.tracker, sweep);
        done(m);
      });
    }
  }

  /** What the bootstrap function is given: the fan-out's deps, Auto Scaling and its queue. */
  bootstrapDeps(): BootstrapDeps {
    const autoscaling = new AutoScalingClient({ region: 'eu-west-1' });
    autoscaling.send = ((command: {
      input: { InstanceId: string; LifecycleActionResult: string };
    }) =>
      this.call(async () => {
        this.lifecycleResults.set(command.input.InstanceId, command.input.LifecycleActionResult);
        this.log(
          `CompleteLifecycleAction ${command.input.InstanceId} ${command.input.LifecycleActionResult}`,
        );
        return {};
      })) as unknown as AutoScalingClient['send'];
    return {
      ...this.tracker,
      sns: new SNSClient({ region: 'eu-west-1' }),
      autoscaling,
      bootstrapQueueUrl: 'bootstrap',
    };
  }

  /** Moves the clock on. */
  advance(ms: number): void {
    this.clock += ms;
    this.log(`+${Math.round(ms / 1000)} s`);
  }

  /** Arms faults for the next step (consumed in order). */
  inject(...faults: Fault[]): void {
    this.faults.push(...faults);
  }

  /**
   * Runs until nothing is left to do, without faults: every invocation finishes (as
   * `outcome` decides, default updated), every message is delivered, the clock jumps to the
   * next delayed message. Throws if it does not quiesce within `maxSteps`.
   */
  async drain(
    outcome: (commandId: string, instanceId: string) => Outcome = () => 'updated',
    maxSteps = 500,
  ): Promise<void> {
    this.faults = [];
    await this.runWhile(Number.POSITIVE_INFINITY, outcome, maxSteps);
  }

  /**
   * Runs as `drain` does (faults left as they are) until the clock reaches `until`: what is due
   * before then happens, the rest stays queued.
   */
  async runUntil(
    until: number,
    outcome: (commandId: string, instanceId: string) => Outcome = () => 'updated',
    maxSteps = 2000,
  ): Promise<void> {
    await this.runWhile(until, outcome, maxSteps);
    this.clock = Math.max(this.clock, until);
  }

  private async runWhile(
    until: number,
    outcome: (commandId: string, instanceId: string) => Outcome,
    maxSteps: number,
  ): Promise<void> {
    for (let steps = 0; steps < maxSteps; steps++) {
      const pending = this.pendingInvocations();
      if (pending.length > 0) {
        for (const [c, i] of pending) this.runInvocation(c, i, outcome(c, i));
        continue;
      }
      if (this.visible('status').length > 0) {
        await this.deliver('status', 10);
        continue;
      }
      if (this.visible('retry').length > 0) {
        await this.deliver('retry');
        continue;
      }
      const next = [...this.queues.retry, ...this.queues.status]
        .map((m) => m.visibleAt)
        .filter((at) => at <= until);
      if (next.length === 0) return;
      this.clock = Math.max(this.clock, Math.min(...next));
    }
    throw new Error(`did not quiesce in ${maxSteps} steps:\n${this.trace.slice(-40).join('\n')}`);
  }

  // ---- what the assertions read -----------------------------------------------------------

  async rollouts(): Promise<Array<{ rollout: Rollout; targets: Target[] }>> {
    const loaded = await Promise.all(this.rolloutIds.map((id) => this.store.load(id)));
    return loaded.flatMap((l) => (l === undefined ? [] : [l]));
  }

  alertsOf(rolloutId: string): number {
    return this.alerts.filter((a) => a.rolloutId === rolloutId).length;
  }

  // ---- the fakes --------------------------------------------------------------------------

  private async sqs(command: object): Promise<unknown> {
    const input = (command as { input: Record<string, unknown> }).input;
    const queue = input.QueueUrl === 'retry' ? 'retry' : 'status';
    if (input.QueueUrl === 'bootstrap') {
      this.bootstrapQueue.push({
        id: this.nextId++,
        body: String(input.MessageBody),
        visibleAt: this.clock + Number(input.DelaySeconds ?? 0) * 1000,
      });
      return { MessageId: String(this.nextId) };
    }
    switch (command.constructor.name) {
      case 'SendMessageCommand':
        this.enqueue(queue, String(input.MessageBody), Number(input.DelaySeconds ?? 0));
        return { MessageId: String(this.nextId) };
      case 'SendMessageBatchCommand':
        for (const entry of input.Entries as Array<{
          MessageBody: string;
          DelaySeconds?: number;
        }>) {
          this.enqueue(queue, entry.MessageBody, entry.DelaySeconds ?? 0);
        }
        return { Successful: [], Failed: [] };
      default:
        throw new Error(`fake SQS: ${command.constructor.name} not implemented`);
    }
  }

  private async ssm(command: object): Promise<unknown> {
    const input = (command as { input: Record<string, any> }).input;
    switch (command.constructor.name) {
      case 'DescribeParametersCommand': {
        const name: string = input.ParameterFilters?.[0]?.Values?.[0] ?? '';
        const version = this.parameterVersion.get(name);
        return { Parameters: version === undefined ? [] : [{ Name: name, Version: version }] };
      }
      case 'DescribeInstanceInformationCommand': {
        const ids: string[] = input.Filters?.[0]?.Values ?? [];
        return {
          InstanceInformationList: ids
            .filter((id) => !this.unmanaged.has(id) && !this.terminated.has(id))
            .map((InstanceId) => ({ InstanceId, PingStatus: 'Online' })),
        };
      }
      case 'SendCommandCommand': {
        if (this.takeFault('send-throttled')) {
          throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
        }
        const commandId = `c-${String(this.nextId++).padStart(4, '0')}`;
        const ids: string[] = input.InstanceIds;
        this.commands.set(commandId, {
          commandId,
          comment: input.Comment,
          parameter: input.Parameters.ParameterName[0],
          path: input.Parameters.DestinationPath[0],
          neverOlder: input.Parameters.NeverOlder?.[0] === 'true',
          invocations: new Map(
            ids.map((id) => [
              id,
              { status: 'Pending', details: 'Pending', exitCode: -1, stdout: '' },
            ]),
          ),
        });
        this.log(
          `SendCommand ${commandId} ${input.Parameters.DestinationPath[0]} → ${ids.join(',')} (${input.Comment})`,
        );
        return { Command: { CommandId: commandId } };
      }
      case 'ListCommandInvocationsCommand': {
        const c = this.commands.get(input.CommandId);
        return {
          CommandInvocations: [...(c?.invocations ?? [])].map(([InstanceId, inv]) => ({
            CommandId: input.CommandId,
            InstanceId,
            Comment: c?.comment,
            Status: inv.status,
            StatusDetails: inv.details,
            CommandPlugins: [
              { Name: 'replaceSecretsFile', ResponseCode: inv.exitCode, Output: inv.stdout },
            ],
          })),
        };
      }
      case 'GetCommandInvocationCommand': {
        const inv = this.commands.get(input.CommandId)?.invocations.get(input.InstanceId);
        if (inv === undefined)
          throw Object.assign(new Error('no such invocation'), { name: 'InvocationDoesNotExist' });
        return {
          CommandId: input.CommandId,
          InstanceId: input.InstanceId,
          Comment: this.commands.get(input.CommandId)?.comment,
          ResponseCode: inv.exitCode,
          Status: inv.status,
          StatusDetails: inv.details,
          StandardOutputContent: inv.stdout,
          StandardErrorContent: inv.exitCode > 0 ? 'secrets-fanout: failed' : '',
        };
      }
      case 'ListCommandsCommand': {
        const c = this.commands.get(input.CommandId);
        return {
          Commands:
            c === undefined
              ? []
              : [
                  {
                    CommandId: c.commandId,
                    Comment: c.comment,
                    Parameters: { ParameterName: [c.parameter], DestinationPath: [c.path] },
                  },
                ],
        };
      }
      default:
        throw new Error(`fake SSM: ${command.constructor.name} not implemented`);
    }
  }

  private async ec2(command: object): Promise<unknown> {
    const input = (command as { input: { Filters?: Array<{ Name: string; Values: string[] }> } })
      .input;
    // As EC2 (and the local cloud, test/local-cloud/ec2.ts): at most 200 filter values a call.
    const filterValues = (input.Filters ?? []).reduce((sum, f) => sum + f.Values.length, 0);
    if (filterValues > 200) {
      throw Object.assign(
        new Error('The maximum number of filter values specified on a single call is 200'),
        { name: 'FilterLimitExceeded' },
      );
    }
    const idFilter = input.Filters?.find((f) => f.Name === 'instance-id')?.Values;
    const ids = idFilter ?? this.instances;
    const runningOnly = input.Filters?.some(
      (f) => f.Name === 'instance-state-name' && f.Values.join() === 'running',
    );
    return {
      Reservations: [
        {
          Instances: ids
            .filter((id) => this.instances.includes(id))
            .filter((id) => !(runningOnly && this.terminated.has(id)))
            .map((InstanceId) => ({
              InstanceId,
              State: { Name: this.terminated.has(InstanceId) ? 'terminated' : 'running' },
              LaunchTime:
                this.launchTime.get(InstanceId) ?? new Date(Date.parse('2026-11-29T11:00:00Z')),
              Tags: [{ Key: 'Environment', Value: this.environment }],
            })),
        },
      ],
    };
  }

  // ---- plumbing ---------------------------------------------------------------------------

  /** Puts a message on a queue, as the functions' SQS calls do. */
  enqueue(queue: 'retry' | 'status', body: string, delaySeconds: number): void {
    this.queues[queue].push({
      id: this.nextId++,
      body,
      visibleAt: this.clock + delaySeconds * 1000,
    });
  }

  private statusEvent(commandId: string, instanceId: string) {
    return {
      version: '0',
      id: `ev-${this.nextId++}`,
      source: 'aws.ssm',
      'detail-type': 'EC2 Command Invocation Status-change Notification',
      account: '111122223333',
      time: new Date(this.clock).toISOString(),
      region: 'eu-west-1',
      resources: [`arn:aws:ec2:eu-west-1:111122223333:instance/${instanceId}`],
      detail: {
        'command-id': commandId,
        'document-name': 'ReplaceSecretsFile',
        'instance-id': instanceId,
        'requested-date-time': new Date(this.clock).toISOString(),
        status: this.commands.get(commandId)?.invocations.get(instanceId)?.status ?? 'Failed',
      },
    };
  }

  /** Runs one actor's step; a fault it hits is logged and swallowed, like a crashed Lambda. */
  private async step(what: string, run: () => Promise<unknown>): Promise<void> {
    this.callsThisStep = 0;
    try {
      await run();
      this.log(what);
    } catch (error) {
      this.log(`${what} ✗ ${(error as Error).name}: ${(error as Error).message}`);
    } finally {
      this.faults = this.faults.filter((f) => !('at' in f));
    }
  }

  /**
   * One AWS call, through the fault plan. `exempt`: the write that records an alert as sent.
   * Between a successful Publish and that write, a crash means the alert goes out again (SNS
   * standard topics have no deduplication): the one at-least-once window the ledger has, so
   * faults are not injected there (the regression tests name it).
   */
  private async call<T>(run: () => Promise<T>, exempt = false): Promise<T> {
    const n = this.callsThisStep++;
    if (exempt) return run();
    const fault = this.faults.find((f) => 'at' in f && f.at === n);
    if (fault?.kind === 'crash') throw crash();
    if (this.faults.some((f) => f.kind === 'die' && n >= f.at)) throw crash();
    const result = await run();
    if (fault?.kind === 'lost-reply') throw crash();
    return result;
  }

  private takeFault(kind: Fault['kind']): boolean {
    const index = this.faults.findIndex((f) => f.kind === kind);
    if (index < 0) return false;
    this.faults.splice(index, 1);
    return true;
  }

  private log(line: string): void {
    this.trace.push(`${new Date(this.clock).toISOString().slice(11, 19)} ${line}`);
  }
}

type HttpRequestLike = { headers: Record<string, string> };
function withFixedSignature(request: HttpRequestLike): HttpRequestLike {
  request.headers.authorization =
    'AWS4-HMAC-SHA256 Credential=x/20261129/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0';
  request.headers['x-amz-date'] = '20261129T120000Z';
  return request;
}

function marksAlertSent(command: { input?: { UpdateExpression?: string } }): boolean {
  return command.input?.UpdateExpression?.startsWith('SET alert = :sent') === true;
}

/** The rollout and attempt a command carries in its Comment. */
export function commentOf(world: World, commandId: string) {
  return parseRolloutComment(world.commands.get(commandId)?.comment ?? '');
}

export { rolloutComment };
