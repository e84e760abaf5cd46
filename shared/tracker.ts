import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { EC2Client } from '@aws-sdk/client-ec2';
import type { SQSClient } from '@aws-sdk/client-sqs';
import {
  GetCommandInvocationCommand,
  ListCommandsCommand,
  paginateListCommandInvocations,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { mapSettled } from './chunk.ts';
import { parseRolloutComment } from './commands.ts';
import type { FanoutConfig } from './config.ts';
import { describeInstancesById } from './fleet.ts';
import { classify, type InstanceState, type Invocation } from './outcomes.ts';
import { logger, metrics } from './powertools.ts';
import { applyThenQueueRetries, retryOrFail } from './retries.ts';
import type { RolloutStore, Transition } from './rollouts.ts';
import type { CommandInvocationEvent } from './schemas/command-status.ts';
import { type SettlementDeps, settleAndAlert } from './settlement.ts';

export interface TrackerDeps extends SettlementDeps {
  ssm: SSMClient;
  ec2: EC2Client;
  sqs: SQSClient;
  store: RolloutStore;
  config: FanoutConfig;
  retryQueueUrl: string;
}

/** A status event and the id of the SQS message that carried it. */
export interface StatusMessage {
  messageId: string;
  event: CommandInvocationEvent;
}

interface Located {
  message: StatusMessage;
  rolloutId: string;
  parameter: string;
  attempt: number;
  invocation: Invocation;
}

/**
 * Applies a batch of Run Command status events to the rollouts: classifies each finished
 * invocation, queues retries, commits each rollout's target updates with one counter update,
 * and settles (and alerts for) rollouts with nothing left pending. Per command it makes one
 * ListCommandInvocations page per 50 instances, plus one GetCommandInvocation per failure.
 * Returns the ids of the messages to retry; never throws.
 */
export async function trackStatusEvents(
  deps: TrackerDeps,
  messages: StatusMessage[],
): Promise<Set<string>> {
  const failed = new Set<string>();
  const fail = (items: Array<{ messageId: string }>, error: unknown, what: string) => {
    logger.error(what, { error: error as Error, messages: items.length });
    for (const item of items) failed.add(item.messageId);
  };

  const byCommand = groupBy(messages, (m) => m.event.detail['command-id']);
  const located: Located[] = [];
  const results = await mapSettled([...byCommand], 4, ([commandId, commandMessages]) =>
    locate(deps, commandId, commandMessages),
  );
  results.forEach((result, index) => {
    const [commandId, commandMessages] = [...byCommand][index] ?? ['', []];
    if (result.status === 'fulfilled') located.push(...result.value.located);
    else fail(commandMessages, result.reason, `could not read invocations of ${commandId}`);
    if (result.status === 'fulfilled')
      for (const m of result.value.notReady) failed.add(m.messageId);
  });

  const states = await instanceStates(
    deps.ec2,
    located
      .filter((l) => l.invocation.status !== 'Success')
      .map((l) => l.message.event.detail['instance-id']),
  ).catch((error) => {
    fail(
      located.map((l) => l.message),
      error,
      'could not read instance states',
    );
    return undefined;
  });
  if (states === undefined) return failed;

  for (const [rolloutId, items] of groupBy(located, (l) => l.rolloutId)) {
    try {
      await applyToRollout(deps, rolloutId, items, states);
    } catch (error) {
      fail(
        items.map((l) => l.message),
        error,
        `could not update rollout ${rolloutId}`,
      );
    }
  }
  return failed;
}

/** Finds the rollout, file and attempt of each event, and the invocation's outcome. */
async function locate(
  deps: TrackerDeps,
  commandId: string,
  commandMessages: StatusMessage[],
): Promise<{ located: Located[]; notReady: StatusMessage[] }> {
  const invocations = new Map<string, Invocation & { comment?: string }>();
  const pages = paginateListCommandInvocations(
    { client: deps.ssm, pageSize: 50 },
    { CommandId: commandId, Details: true, MaxResults: 50 },
  );
  for await (const page of pages) {
    for (const inv of page.CommandInvocations ?? []) {
      if (inv.InstanceId === undefined) continue;
      const plugin = inv.CommandPlugins?.[0];
      invocations.set(inv.InstanceId, {
        status: inv.Status ?? '',
        ...(inv.StatusDetails === undefined ? {} : { statusDetails: inv.StatusDetails }),
        ...(plugin?.ResponseCode === undefined ? {} : { exitCode: plugin.ResponseCode }),
        ...(plugin?.Output === undefined ? {} : { stdout: plugin.Output }),
        ...(inv.Comment === undefined ? {} : { comment: inv.Comment }),
      });
    }
  }
  const ours = [...invocations.values()]
    .map((inv) => parseRolloutComment(inv.comment ?? ''))
    .find((parsed) => parsed !== undefined);
  if (ours === undefined) {
    logger.warn('status events for a command that is not ours; ignored', { commandId });
    return { located: [], notReady: [] };
  }
  const { rolloutId } = ours;
  const record = (await deps.store.getCommands([{ rolloutId, commandId }])).get(commandId) ?? {
    // The sender stopped (or has not yet got) between SendCommand and recording it: the
    // command itself says which parameter it writes, and its Comment which attempt it is.
    parameter: await parameterOfCommand(deps.ssm, commandId),
    attempt: ours.attempt,
  };
  const located: Located[] = [];
  const notReady: StatusMessage[] = [];
  for (const message of commandMessages) {
    const instanceId = message.event.detail['instance-id'];
    const invocation = invocations.get(instanceId);
    if (invocation === undefined || !isFinished(invocation.status)) {
      // Run Command is eventually consistent: the event can arrive before the listing agrees.
      notReady.push(message);
      continue;
    }
    if (invocation.status !== 'Success') {
      Object.assign(invocation, await failureDetails(deps.ssm, commandId, instanceId));
    }
    located.push({
      message,
      rolloutId,
      parameter: record.parameter,
      attempt: record.attempt,
      invocation,
    });
  }
  return { located, notReady };
}

async function applyToRollout(
  deps: TrackerDeps,
  rolloutId: string,
  items: Located[],
  states: Map<string, InstanceState>,
): Promise<void> {
  const transitions: Transition[] = [];
  for (const item of items) {
    const instanceId = item.message.event.detail['instance-id'];
    const commandId = item.message.event.detail['command-id'];
    const base = { instanceId, parameter: item.parameter, fromAttempt: item.attempt, commandId };
    const outcome = classify(item.invocation, states.get(instanceId) ?? 'running');
    switch (outcome.kind) {
      case 'Success':
      case 'Unchanged':
        transitions.push({
          ...base,
          to: outcome.kind,
          ...(outcome.versionWritten === undefined
            ? {}
            : { versionWritten: outcome.versionWritten }),
        });
        break;
      case 'Permanent':
        transitions.push({ ...base, to: 'Failed', lastError: outcome.lastError });
        break;
      case 'InstanceGone':
        transitions.push({
          ...base,
          to: 'Unreachable',
          reason: outcome.reason,
          lastError: outcome.lastError,
        });
        break;
      case 'Retryable':
        transitions.push(retryOrFail(base, outcome.lastError, deps.config.retry.maxAttempts));
        break;
    }
  }
  const { applied, stale } = await applyThenQueueRetries(
    deps,
    deps.config.retry,
    rolloutId,
    transitions,
  );
  if (stale.length > 0)
    logger.info('duplicate or late status events skipped', { rolloutId, stale: stale.length });
  for (const t of applied) {
    logger.info('target updated', {
      rolloutId,
      instanceId: t.instanceId,
      parameter: t.parameter,
      commandId: t.commandId,
      to: t.to,
      attempt: t.fromAttempt,
      ...(t.lastError === undefined ? {} : { lastError: t.lastError }),
    });
  }
  countTransitions(applied);
  await settleAndAlert(deps, rolloutId);
}

function countTransitions(applied: Transition[]): void {
  const count = (to: Transition['to']) => applied.filter((t) => t.to === to).length;
  metrics.addMetric('InstancesSucceeded', MetricUnit.Count, count('Success') + count('Unchanged'));
  metrics.addMetric('InstancesFailed', MetricUnit.Count, count('Failed'));
  metrics.addMetric('InstancesUnreachable', MetricUnit.Count, count('Unreachable'));
  metrics.addMetric('InstancesRetried', MetricUnit.Count, count('Retry'));
}

// Every other status is terminal (Success, Failed, TimedOut, Cancelled, and any new one).
const NOT_FINISHED = new Set(['', 'Pending', 'InProgress', 'Delayed', 'Cancelling']);
function isFinished(status: string): boolean {
  return !NOT_FINISHED.has(status);
}

/** Exit code and stderr of a failed invocation (the listing has only 2,500 chars of output). */
async function failureDetails(ssm: SSMClient, commandId: string, instanceId: string) {
  try {
    const reply = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
    );
    return {
      ...(reply.ResponseCode === undefined ? {} : { exitCode: reply.ResponseCode }),
      ...(reply.StatusDetails === undefined ? {} : { statusDetails: reply.StatusDetails }),
      ...(reply.StandardOutputContent === undefined ? {} : { stdout: reply.StandardOutputContent }),
      ...(reply.StandardErrorContent === undefined ? {} : { stderr: reply.StandardErrorContent }),
    };
  } catch (error) {
    // Undelivered invocations have no plugin output to fetch; the listing's status is enough.
    if ((error as Error).name === 'InvocationDoesNotExist') return {};
    throw error;
  }
}

async function parameterOfCommand(ssm: SSMClient, commandId: string): Promise<string> {
  const { Commands } = await ssm.send(new ListCommandsCommand({ CommandId: commandId }));
  const name = Commands?.[0]?.Parameters?.ParameterName?.[0];
  if (name === undefined) throw new Error(`command ${commandId} has no ParameterName`);
  return name;
}

/** EC2 state of each instance ('missing' once EC2 no longer lists it). */
async function instanceStates(
  ec2: EC2Client,
  instanceIds: string[],
): Promise<Map<string, InstanceState>> {
  const found = await describeInstancesById(ec2, instanceIds);
  return new Map(
    instanceIds.map((id) => {
      const name = found.get(id)?.State?.Name;
      if (name === undefined) return [id, 'missing'];
      if (name === 'running' || name === 'pending') return [id, 'running'];
      if (name === 'stopped' || name === 'stopping') return [id, 'stopped'];
      return [id, 'terminated'];
    }),
  );
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
}
