/**
 * EC2 Auto Scaling as far as a launch lifecycle hook goes: groups with tags (PropagateAtLaunch
 * onto their instances) and one launch hook each; scaling out launches an instance into
 * Pending:Wait, emits the `EC2 Instance-launch Lifecycle Action` event, and the action ends by
 * CompleteLifecycleAction (CONTINUE → InService, ABANDON → terminated) or when its heartbeat
 * timeout passes (the hook's DefaultResult).
 *
 * Wire protocol: the Query protocol as @aws-sdk/client-auto-scaling 3.1169 sends it (probed):
 * form-encoded POST `Action=CompleteLifecycleAction&Version=2011-01-01&LifecycleHookName=…&
 * AutoScalingGroupName=…&LifecycleActionResult=…&LifecycleActionToken=…&InstanceId=…`; answers
 * in the 2011-01-01 namespace; errors as
 * `<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error><RequestId>…`
 * (the SDK reads Code into `error.name`). The SDK finds this endpoint through
 * AWS_ENDPOINT_URL_AUTO_SCALING (serviceId "Auto Scaling", upper-cased, spaces to `_`).
 * https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CompleteLifecycleAction.html
 *
 * The event (Amazon EC2 Auto Scaling event reference, "EC2 Instance-launch Lifecycle Action"):
 * source aws.autoscaling, resources [group ARN], detail { LifecycleActionToken,
 * AutoScalingGroupName, LifecycleHookName, EC2InstanceId, LifecycleTransition
 * "autoscaling:EC2_INSTANCE_LAUNCHING", NotificationMetadata (when the hook has some) }.
 * https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-event-reference.html
 *
 * Hook defaults (API_LifecycleHook / PutLifecycleHook): HeartbeatTimeout 3600 s, DefaultResult
 * ABANDON. An action that is no longer active (completed, timed out, unknown token or instance)
 * is refused with ValidationError "No active Lifecycle Action found with token <token>" (or
 * "with instance ID <id>" when no token is given), as AWS answers.
 *
 * Instances launched by a group also carry `aws:autoscaling:groupName` (AWS adds it).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Clock } from './clock.ts';
import type { AwsEvent } from './eventbridge.ts';
import type { Fleet, Instance, InstanceSpec } from './fleet.ts';
import {
  ACCOUNT_ID,
  parseForm,
  type Reply,
  type Request,
  ServiceError,
  type ServiceFaults,
  shouldThrottle,
  xmlEscape,
} from './http.ts';

const NAMESPACE = 'http://autoscaling.amazonaws.com/doc/2011-01-01/';

export interface LifecycleHookSpec {
  name: string;
  /** Seconds (simulated) before the action times out. Default 3600, as in AWS. */
  heartbeatTimeout?: number;
  /** What a timed-out action does. Default ABANDON, as in AWS. */
  defaultResult?: 'CONTINUE' | 'ABANDON';
  notificationMetadata?: string;
}

export interface GroupTag {
  key: string;
  value: string;
  /** Copied onto instances the group launches. Default true. */
  propagateAtLaunch?: boolean;
}

export interface GroupSpec {
  name: string;
  tags?: GroupTag[];
  /** The group's launch lifecycle hook (autoscaling:EC2_INSTANCE_LAUNCHING). */
  launchHook?: LifecycleHookSpec;
}

export interface ScaleOutOptions {
  /** Instance id; default a random one. */
  id?: string;
  /** Simulated seconds from launch to `running`. Default 5. */
  bootSeconds?: number;
  /**
   * Simulated seconds after `running` until the SSM agent registers (agents register seconds
   * after boot); `null`: it never does. Default 10.
   */
  registerAfterSeconds?: number | null;
  /** More of the instance (users, directories, faults); tags come from the group. */
  instance?: Omit<InstanceSpec, 'id' | 'tags' | 'state' | 'managed'>;
}

export type LifecycleState =
  | 'Pending'
  | 'Pending:Wait'
  | 'Pending:Proceed'
  | 'InService'
  | 'Terminating'
  | 'Terminated';

/** One step in the life of a group's instance, in the order it happened. */
export interface ScalingActivity {
  seq: number;
  at: Date;
  group: string;
  instanceId: string;
  kind:
    | 'launched'
    | 'lifecycle-action-started'
    | 'lifecycle-action-completed'
    | 'heartbeat-timed-out'
    | 'lifecycle-state'
    | 'refused';
  lifecycleState?: LifecycleState;
  result?: 'CONTINUE' | 'ABANDON';
  /** Who completed the action: the caller's access key id, or 'timeout'. */
  by?: string;
  error?: string;
}

export interface LifecycleAction {
  token: string;
  hookName: string;
  instanceId: string;
  startedAt: Date;
  cancelTimeout: () => void;
}

export class AutoScalingGroup {
  readonly name: string;
  readonly arn: string;
  readonly tags: GroupTag[];
  readonly launchHook: LifecycleHookSpec | undefined;
  readonly lifecycleStates = new Map<string, LifecycleState>();
  readonly actions = new Map<string, LifecycleAction>();

  constructor(spec: GroupSpec, region: string) {
    this.name = spec.name;
    this.arn = `arn:aws:autoscaling:${region}:${ACCOUNT_ID}:autoScalingGroup:${randomUUID()}:autoScalingGroupName/${spec.name}`;
    this.tags = (spec.tags ?? []).map((tag) => ({ propagateAtLaunch: true, ...tag }));
    this.launchHook = spec.launchHook;
  }

  tag(key: string): string | undefined {
    return this.tags.find((tag) => tag.key === key)?.value;
  }
}

/**
 * Decides whether a caller may complete a lifecycle action on a group: the IAM check, e.g.
 * from the function's role in the template. Returns an error message, or undefined if allowed.
 */
export type LifecycleAuthorizer = (
  accessKeyId: string,
  group: AutoScalingGroup,
) => string | undefined;

export interface AutoScalingOptions {
  region: string;
  clock: Clock;
  fleet: Fleet;
  emit: (
    source: string,
    detailType: string,
    detail: Record<string, unknown>,
    resources: string[],
  ) => AwsEvent;
  authorize?: LifecycleAuthorizer;
}

export class AutoScalingService extends EventEmitter<{ activity: [ScalingActivity] }> {
  faults: ServiceFaults = {};
  readonly groups = new Map<string, AutoScalingGroup>();
  /** Everything that happened to the groups' instances, in order. */
  readonly activities: ScalingActivity[] = [];
  private readonly options: AutoScalingOptions;
  private seq = 0;

  constructor(options: AutoScalingOptions) {
    super();
    this.options = options;
  }

  createGroup(spec: GroupSpec): AutoScalingGroup {
    if (this.groups.has(spec.name)) throw new Error(`group ${spec.name} already exists`);
    const group = new AutoScalingGroup(spec, this.options.region);
    this.groups.set(group.name, group);
    return group;
  }

  group(name: string): AutoScalingGroup {
    const group = this.groups.get(name);
    if (!group) throw new Error(`no Auto Scaling group ${name}`);
    return group;
  }

  /**
   * Launches one instance into the group: `pending` (lifecycle Pending, then Pending:Wait with
   * the lifecycle action event when the group has a launch hook), `running` after bootSeconds,
   * its agent registered with SSM registerAfterSeconds later.
   */
  scaleOut(groupName: string, options: ScaleOutOptions = {}): Instance {
    const { clock, fleet } = this.options;
    const group = this.group(groupName);
    const tags: Record<string, string> = {};
    for (const tag of group.tags) if (tag.propagateAtLaunch) tags[tag.key] = tag.value;
    tags['aws:autoscaling:groupName'] = group.name;
    const instance = fleet.add({
      ...options.instance,
      ...(options.id === undefined ? {} : { id: options.id }),
      tags,
      state: 'pending',
      managed: false,
    });
    this.record(group, instance.id, 'launched');
    this.setLifecycleState(group, instance.id, 'Pending');
    fleet.emit('state', { instance, previousState: 'pending' });

    const hook = group.launchHook;
    if (hook !== undefined) {
      const token = randomUUID();
      const cancelTimeout = clock.after(hook.heartbeatTimeout ?? 3600, () =>
        this.timeOut(group, instance.id, token),
      );
      group.actions.set(token, {
        token,
        hookName: hook.name,
        instanceId: instance.id,
        startedAt: this.options.clock.now(),
        cancelTimeout,
      });
      this.setLifecycleState(group, instance.id, 'Pending:Wait');
      this.record(group, instance.id, 'lifecycle-action-started');
      this.options.emit(
        'aws.autoscaling',
        'EC2 Instance-launch Lifecycle Action',
        {
          LifecycleActionToken: token,
          AutoScalingGroupName: group.name,
          LifecycleHookName: hook.name,
          EC2InstanceId: instance.id,
          LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING',
          ...(hook.notificationMetadata === undefined
            ? {}
            : { NotificationMetadata: hook.notificationMetadata }),
        },
        [group.arn],
      );
    }
    clock.after(options.bootSeconds ?? 5, () => {
      if (instance.state !== 'pending') return;
      fleet.setState(instance.id, 'running');
      if (hook === undefined) this.setLifecycleState(group, instance.id, 'InService');
      const registerAfter =
        options.registerAfterSeconds === undefined ? 10 : options.registerAfterSeconds;
      if (registerAfter !== null) {
        clock.after(registerAfter, () => {
          if (instance.state === 'running') fleet.register(instance.id);
        });
      }
    });
    return instance;
  }

  /** The lifecycle state of a group's instance. */
  lifecycleState(instanceId: string): LifecycleState | undefined {
    for (const group of this.groups.values()) {
      const state = group.lifecycleStates.get(instanceId);
      if (state !== undefined) return state;
    }
    return undefined;
  }

  /** The activities of one instance, in order. */
  activitiesOf(instanceId: string): ScalingActivity[] {
    return this.activities.filter((activity) => activity.instanceId === instanceId);
  }

  handle(request: Request): Reply {
    const form = parseForm(request.body);
    try {
      if (shouldThrottle(this.faults)) throw new ServiceError('Throttling', 'Rate exceeded', 400);
      const action = form.get('Action');
      if (form.get('Version') !== '2011-01-01')
        throw new ServiceError(
          'InvalidAction',
          `Could not find operation ${action} for version ${form.get('Version')}`,
        );
      switch (action) {
        case 'CompleteLifecycleAction':
          this.completeLifecycleAction(form, request.accessKeyId);
          return this.reply(
            `<CompleteLifecycleActionResponse xmlns="${NAMESPACE}"><CompleteLifecycleActionResult/><ResponseMetadata><RequestId>${request.requestId}</RequestId></ResponseMetadata></CompleteLifecycleActionResponse>`,
          );
        default:
          throw new ServiceError(
            'InvalidAction',
            `Could not find operation ${action ?? '(none)'} for version 2011-01-01`,
          );
      }
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return {
        status: error.status,
        headers: { 'content-type': 'text/xml' },
        body: `<?xml version="1.0"?>\n<ErrorResponse xmlns="${NAMESPACE}"><Error><Type>Sender</Type><Code>${error.code}</Code><Message>${xmlEscape(error.message)}</Message></Error><RequestId>${request.requestId}</RequestId></ErrorResponse>`,
      };
    }
  }

  private reply(body: string): Reply {
    return { status: 200, headers: { 'content-type': 'text/xml' }, body };
  }

  private completeLifecycleAction(form: Map<string, string>, caller: string): void {
    const groupName = form.get('AutoScalingGroupName');
    const hookName = form.get('LifecycleHookName');
    const result = form.get('LifecycleActionResult');
    const token = form.get('LifecycleActionToken');
    const instanceId = form.get('InstanceId');
    // Required members missing: the Query protocol's ValidationError wording.
    for (const [name, value] of [
      ['autoScalingGroupName', groupName],
      ['lifecycleHookName', hookName],
      ['lifecycleActionResult', result],
    ] as const) {
      if (!value)
        throw new ServiceError(
          'ValidationError',
          `1 validation error detected: Value null at '${name}' failed to satisfy constraint: Member must not be null`,
        );
    }
    if (token === undefined && instanceId === undefined)
      throw new ServiceError(
        'ValidationError',
        'Either LifecycleActionToken or InstanceId must be specified',
      );
    if (result !== 'CONTINUE' && result !== 'ABANDON')
      throw new ServiceError(
        'ValidationError',
        `Invalid LifecycleActionResult: ${result}. Valid values are CONTINUE and ABANDON`,
      );
    const group = this.groups.get(groupName as string);
    const notFound = () =>
      new ServiceError(
        'ValidationError',
        token === undefined
          ? `No active Lifecycle Action found with instance ID ${instanceId}`
          : `No active Lifecycle Action found with token ${token}`,
      );
    if (group === undefined) throw notFound();
    const denied = this.options.authorize?.(caller, group);
    if (denied !== undefined) {
      this.record(group, instanceId ?? '', 'refused', { by: caller, error: denied });
      throw new ServiceError('AccessDenied', denied, 403);
    }
    const action =
      token !== undefined
        ? group.actions.get(token)
        : [...group.actions.values()].find((candidate) => candidate.instanceId === instanceId);
    if (
      action === undefined ||
      action.hookName !== hookName ||
      (instanceId !== undefined && action.instanceId !== instanceId)
    ) {
      this.record(group, instanceId ?? '', 'refused', { by: caller, error: notFound().message });
      throw notFound();
    }
    this.finish(group, action, result, caller);
  }

  private timeOut(group: AutoScalingGroup, instanceId: string, token: string): void {
    const action = group.actions.get(token);
    if (action === undefined) return;
    this.record(group, instanceId, 'heartbeat-timed-out');
    this.finish(group, action, group.launchHook?.defaultResult ?? 'ABANDON', 'timeout');
  }

  private finish(
    group: AutoScalingGroup,
    action: LifecycleAction,
    result: 'CONTINUE' | 'ABANDON',
    by: string,
  ): void {
    action.cancelTimeout();
    group.actions.delete(action.token);
    if (by !== 'timeout')
      this.record(group, action.instanceId, 'lifecycle-action-completed', { result, by });
    const { fleet, clock } = this.options;
    if (result === 'CONTINUE') {
      this.setLifecycleState(group, action.instanceId, 'Pending:Proceed');
      this.setLifecycleState(group, action.instanceId, 'InService');
      return;
    }
    // ABANDON on launch: "Amazon EC2 Auto Scaling terminates the instance" (and replaces it).
    this.setLifecycleState(group, action.instanceId, 'Terminating');
    fleet.setState(action.instanceId, 'shutting-down');
    clock.after(1, () => {
      fleet.setState(action.instanceId, 'terminated');
      this.setLifecycleState(group, action.instanceId, 'Terminated');
    });
  }

  private setLifecycleState(group: AutoScalingGroup, instanceId: string, state: LifecycleState) {
    group.lifecycleStates.set(instanceId, state);
    this.record(group, instanceId, 'lifecycle-state', { lifecycleState: state });
  }

  private record(
    group: AutoScalingGroup,
    instanceId: string,
    kind: ScalingActivity['kind'],
    extra: Partial<ScalingActivity> = {},
  ): void {
    this.seq += 1;
    const activity: ScalingActivity = {
      seq: this.seq,
      at: this.options.clock.now(),
      group: group.name,
      instanceId,
      kind,
      ...extra,
    };
    this.activities.push(activity);
    this.emit('activity', activity);
  }
}

/**
 * The IAM decision for autoscaling:CompleteLifecycleAction from a role's identity policies:
 * an Allow statement whose Action and Resource match the group, with its conditions on
 * `aws:ResourceTag/<key>` or `autoscaling:ResourceTag/<key>` (StringEquals / StringLike)
 * holding for the group's tags. Any other condition is treated as not met. Service
 * Authorization Reference: CompleteLifecycleAction takes resource `autoScalingGroup*` and the
 * condition keys autoscaling:ResourceTag/${TagKey}, aws:ResourceTag/${TagKey}.
 * https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html
 */
export function allowsCompleteLifecycleAction(
  statements: Array<Record<string, any>>,
  group: AutoScalingGroup,
): boolean {
  const action = 'autoscaling:CompleteLifecycleAction';
  const list = (value: unknown): string[] =>
    value === undefined ? [] : (Array.isArray(value) ? value : [value]).map(String);
  // Actions match case-insensitively, resource ARNs case-sensitively (IAM JSON policy reference).
  const glob = (pattern: string, text: string, flags = '') =>
    new RegExp(
      `^${pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
      flags,
    ).test(text);
  const conditionHolds = (condition: Record<string, Record<string, unknown>> | undefined) =>
    Object.entries(condition ?? {}).every(([operator, entries]) =>
      Object.entries(entries).every(([key, values]) => {
        const tagKey = /^(?:aws|autoscaling):ResourceTag\/(.+)$/i.exec(key)?.[1];
        if (tagKey === undefined) return false;
        const actual = group.tag(tagKey);
        if (actual === undefined) return false;
        if (operator === 'StringEquals') return list(values).includes(actual);
        if (operator === 'StringLike') return list(values).some((value) => glob(value, actual));
        return false;
      }),
    );
  return statements.some(
    (statement) =>
      statement.Effect === 'Allow' &&
      list(statement.Action).some((candidate) => glob(candidate, action, 'i')) &&
      list(statement.Resource).some((resource) => glob(resource, group.arn)) &&
      conditionHolds(statement.Condition),
  );
}
