import {
  type AutoScalingClient,
  CompleteLifecycleActionCommand,
} from '@aws-sdk/client-auto-scaling';
import type { SNSClient } from '@aws-sdk/client-sns';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { type FileTarget, filesForEnvironment } from '../config.ts';
import { RolloutBusyError } from '../errors.ts';
import type { BootstrapCheck, LifecycleAction } from '../messages/instance-events.ts';
import { logger } from '../platform/powertools.ts';
import { sendAlert } from '../report/alerts.ts';
import type { Target } from '../rollout/model.ts';
import { newRolloutId } from '../rollout/rollout-id.ts';
import { type FanOutDeps, fanOut } from '../send/fanout.ts';
import { describeInstancesById, resolveTargets } from '../send/fleet.ts';

export type { BootstrapCheck };

export interface BootstrapDeps extends FanOutDeps {
  autoscaling: AutoScalingClient;
  sqs: SQSClient;
  sns: SNSClient;
  alertsTopicArn?: string;
  /** The bootstrap queue, where checks wait (SQS DelaySeconds) instead of a Lambda sleeping. */
  bootstrapQueueUrl: string;
}

export type BootstrapResult =
  | 'ignored'
  | 'gone'
  | 'waiting-for-ssm'
  | 'sent'
  | 'waiting-for-files'
  | 'continued'
  | 'gave-up'
  | 'already-done';

const DELIVERED = new Set<Target['status']>(['Success', 'Unchanged']);
const NOT_DELIVERED = new Set<Target['status']>(['Failed', 'Unreachable']);
const NOT_COVERING = new Set<Target['status']>(['Unreachable', 'Superseded']);

/**
 * The target that holds a file in place or on its way for this launch, or undefined: this
 * launch's own bootstrap target, read by its key, in whatever state but Superseded; else the newest target of
 * another rollout recorded since the launch that is not Unreachable or Superseded (say, a
 * change that ran while the instance booted and could not reach it) and, while pending, has
 * been sent. Throws the SDK error.
 */
async function coveringTarget(
  deps: BootstrapDeps,
  bootstrapRolloutId: string,
  instanceId: string,
  file: FileTarget,
  launch: string,
): Promise<Target | undefined> {
  const ref = { instanceId, path: file.path };
  const own = await deps.store.getTarget(bootstrapRolloutId, ref);
  // A Superseded own target means a later rollout took the file over: look for it below.
  if (own !== undefined && own.status !== 'Superseded') return own;
  const since = await deps.store.rolloutsOfParameterSince(file.parameter, launch, [instanceId]);
  for (const entry of since.reverse()) {
    if (entry.rolloutId === bootstrapRolloutId) continue;
    const target = await deps.store.getTarget(entry.rolloutId, ref);
    if (target === undefined || NOT_COVERING.has(target.status)) continue;
    if (target.status !== 'Pending' || target.commandId !== undefined) return target;
    // Recorded but maybe not sent: a chunk can wait its turn in the shared pace for minutes,
    // longer than a launch hook. Only a command already sent covers the new instance; else
    // the bootstrap sends itself (a second run finds the file current and rewrites nothing).
    if (target.attempt === 1 && (await deps.store.hasFirstCommand(entry.rolloutId, ref))) {
      return target;
    }
  }
  return undefined;
}

/** The first check of a new or newly running instance, due at once; gives up after the budget. */
export function firstCheck(
  deps: BootstrapDeps,
  instanceId: string,
  at: Date,
  lifecycle?: LifecycleAction,
): BootstrapCheck {
  const deadline = new Date(at.getTime() + deps.config.bootstrap.timeoutSeconds * 1000);
  return {
    kind: 'bootstrap-check',
    instanceId,
    ...(lifecycle === undefined ? {} : { lifecycle }),
    deadline: deadline.toISOString(),
    checks: 0,
  };
}

/**
 * One step of bringing a new instance its files: find its environment from its tags, wait
 * (by re-queueing this check with a delay) until SSM reports it Online, send every mapped file
 * no rollout since its launch already covers — one bootstrap rollout per instance launch, with
 * an id derived from it, so the lifecycle and state-change paths meet in the same rollout — and,
 * for a launch lifecycle action, complete it with CONTINUE once every file is in place, or as
 * configured (ABANDON by default) when a file cannot be delivered or the budget runs out,
 * alerting once. Instances of unconfigured environments are ignored. Throws SDK errors.
 */
export async function checkBootstrap(
  deps: BootstrapDeps,
  check: BootstrapCheck,
): Promise<BootstrapResult> {
  const now = deps.ledger.now();
  const instance = await describeInstance(deps, check.instanceId);
  if (instance === undefined || !['pending', 'running'].includes(instance.state)) {
    logger.info('bootstrap stopped: the instance is not running', {
      instanceId: check.instanceId,
      state: instance?.state,
    });
    return 'gone';
  }
  const environment = instance.tags.get(deps.config.tagKey);
  if (environment === undefined || !deps.config.environments.includes(environment)) {
    logger.debug('instance is not in a configured environment; nothing to deliver', {
      instanceId: check.instanceId,
      tag: environment,
    });
    if (check.lifecycle !== undefined) await complete(deps, check, 'CONTINUE', 'not-ours');
    return 'ignored';
  }
  const files = filesForEnvironment(deps.config, environment);
  // One bootstrap rollout per launch, its id derived from it, so both paths meet in it.
  const bootstrapRolloutId = newRolloutId(instance.launchTime, `bootstrap:${check.instanceId}`);
  const latest = await Promise.all(
    files.map((file) =>
      coveringTarget(deps, bootstrapRolloutId, check.instanceId, file, instance.launch),
    ),
  );
  // The plain path of an Auto Scaling instance gives up a minute after its lifecycle twin, so
  // that the lifecycle path, which knows what it told Auto Scaling, sends the launch's alert.
  const grace =
    check.lifecycle === undefined && instance.tags.has('aws:autoscaling:groupName') ? 60_000 : 0;
  const expired = now.getTime() >= Date.parse(check.deadline) + grace;
  const launch = instance.launch;

  const uncovered = files.filter((_, index) => latest[index] === undefined);
  if (uncovered.length > 0) {
    if (instance.state !== 'running' || !(await isOnline(deps, environment, check.instanceId))) {
      if (expired) return giveUp(deps, check, launch, environment, 'it never came online in SSM');
      await requeue(deps, check, now, Math.min(30, 5 * 2 ** check.checks));
      return 'waiting-for-ssm';
    }
    // Past the budget a launch hook is given up (Auto Scaling is waiting on us); a plain
    // running or tagged instance still gets its files, however late the event came.
    if (expired && check.lifecycle !== undefined) {
      return giveUp(deps, check, launch, environment, 'its files were never sent');
    }
    const rolloutId = bootstrapRolloutId;
    try {
      await fanOut(deps, {
        rolloutId,
        trigger: { type: 'bootstrap', instanceId: check.instanceId },
        environment,
        files: uncovered,
        instanceIds: [check.instanceId],
      });
    } catch (error) {
      if (!(error instanceof RolloutBusyError)) throw error;
      // The other path for this launch (lifecycle or state change) is sending right now.
      if (check.lifecycle === undefined) return 'already-done';
      await requeue(deps, check, now, 10);
      return 'waiting-for-files';
    }
    logger.info('bootstrap sent', {
      rolloutId,
      instanceId: check.instanceId,
      environment,
      files: uncovered.length,
    });
    if (check.lifecycle !== undefined) await requeue(deps, check, now, 10);
    return 'sent';
  }

  if (check.lifecycle === undefined) return 'already-done';
  const statuses = latest.map((found) => found?.status);
  if (statuses.every((status) => status !== undefined && DELIVERED.has(status))) {
    return (await complete(deps, check, 'CONTINUE', 'delivered')) ? 'continued' : 'already-done';
  }
  if (statuses.some((status) => status !== undefined && NOT_DELIVERED.has(status))) {
    // The rollout that failed has alerted on its own; only the lifecycle result is left.
    const result = deps.config.bootstrap.onTimeout === 'continue' ? 'CONTINUE' : 'ABANDON';
    await complete(deps, check, result, 'not-delivered');
    return 'gave-up';
  }
  if (expired)
    return giveUp(
      deps,
      check,
      instance.launch,
      environment,
      'its files were not all delivered in time',
    );
  await requeue(deps, check, now, 10);
  return 'waiting-for-files';
}

async function giveUp(
  deps: BootstrapDeps,
  check: BootstrapCheck,
  launch: string,
  environment: string,
  why: string,
): Promise<BootstrapResult> {
  const result = deps.config.bootstrap.onTimeout === 'continue' ? 'CONTINUE' : 'ABANDON';
  if (check.lifecycle !== undefined) await complete(deps, check, result, 'timed-out');
  // One alert per launch, whichever path gives up first.
  const key = launch;
  if (await deps.store.claimLaunchAlert(check.instanceId, key)) {
    const lifecycle = check.lifecycle;
    await sendAlert(deps.sns, deps.alertsTopicArn, {
      subject: `secrets-fanout: new ${environment} instance ${check.instanceId} did not get its files`,
      lines: [
        `Instance ${check.instanceId} (${environment}) did not get its secrets files within ${deps.config.bootstrap.timeoutSeconds} s: ${why}.`,
        lifecycle === undefined
          ? 'It is running without them; the service keeps nothing pending for it.'
          : `Auto Scaling group ${lifecycle.groupName}, hook ${lifecycle.hookName}: completed with ${result}${result === 'ABANDON' ? ' (the group replaces the instance)' : ' (it joins the load balancer without them)'}.`,
        'Check the SSM agent and the instance role, then re-sync:',
        `  npx serverless invoke -f resync${deps.stage === undefined ? '' : ` --stage ${deps.stage}`} --data '${JSON.stringify({ environment, instanceIds: [check.instanceId] })}'`,
      ],
      attributes: { kind: 'bootstrap-timed-out', instanceId: check.instanceId, environment },
    });
    await deps.store.markLaunchAlertSent(check.instanceId, key);
  }
  return 'gave-up';
}

/**
 * Completes the lifecycle action; false if it was no longer active (completed already, by a
 * duplicate check or by hand, or timed out). Calling it again is harmless, so nothing is
 * claimed first: a claim taken before a call that then failed would leave it never completed.
 */
async function complete(
  deps: BootstrapDeps,
  check: BootstrapCheck,
  result: 'CONTINUE' | 'ABANDON',
  outcome: string,
): Promise<boolean> {
  const lifecycle = check.lifecycle;
  if (lifecycle === undefined) return false;
  try {
    await deps.autoscaling.send(
      new CompleteLifecycleActionCommand({
        AutoScalingGroupName: lifecycle.groupName,
        LifecycleHookName: lifecycle.hookName,
        LifecycleActionToken: lifecycle.token,
        InstanceId: check.instanceId,
        LifecycleActionResult: result,
      }),
    );
  } catch (error) {
    // The action already ended (its heartbeat timed out, or someone completed it already).
    const name = (error as Error).name;
    // Not ours to complete (a group outside our environments using our hook name): the role
    // may not, and AWS says AccessDenied; leave it to the group's own default.
    const notOurs = outcome === 'not-ours' && /^AccessDenied/.test(name);
    if (name !== 'ValidationError' && !notOurs) throw error;
    logger.info('lifecycle action was no longer active', {
      instanceId: check.instanceId,
      error: (error as Error).message,
    });
    return false;
  }
  logger.info('lifecycle action completed', {
    instanceId: check.instanceId,
    result,
    outcome,
    group: lifecycle.groupName,
  });
  return true;
}

async function requeue(
  deps: BootstrapDeps,
  check: BootstrapCheck,
  now: Date,
  seconds: number,
): Promise<void> {
  const untilDeadline = Math.ceil((Date.parse(check.deadline) - now.getTime()) / 1000) + 1;
  const delay = Math.max(1, Math.min(seconds, untilDeadline, 900));
  await deps.sqs.send(
    new SendMessageCommand({
      QueueUrl: deps.bootstrapQueueUrl,
      MessageBody: JSON.stringify({ ...check, checks: check.checks + 1 } satisfies BootstrapCheck),
      DelaySeconds: delay,
    }),
  );
}

async function isOnline(
  deps: BootstrapDeps,
  environment: string,
  instanceId: string,
): Promise<boolean> {
  const targets = await resolveTargets(deps, {
    tagKey: deps.config.tagKey,
    environment,
    instanceIds: [instanceId],
  });
  return targets.reachable.includes(instanceId);
}

async function describeInstance(deps: BootstrapDeps, instanceId: string) {
  const instance = (await describeInstancesById(deps.ec2, [instanceId])).get(instanceId);
  if (instance === undefined) return undefined;
  const launchTime = instance.LaunchTime ?? new Date(0);
  return {
    state: instance.State?.Name ?? 'unknown',
    launchTime,
    // Rollouts are indexed by when the store recorded them, to the millisecond: any rollout
    // recorded after the launch may have targeted the instance.
    launch: launchTime.toISOString(),
    tags: new Map((instance.Tags ?? []).map((tag) => [tag.Key ?? '', tag.Value ?? ''])),
  };
}
