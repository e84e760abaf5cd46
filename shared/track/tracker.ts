import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { EC2Client } from '@aws-sdk/client-ec2';
import {
  GetCommandInvocationCommand,
  ListCommandsCommand,
  paginateListCommandInvocations,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import type { FanoutConfig } from '../config.ts';
import type { CommandCompletionEvent, CommandInvocationEvent } from '../messages/command-status.ts';
import { mapSettled } from '../platform/chunk.ts';
import { logger, metrics } from '../platform/powertools.ts';
import type { Ledger } from '../rollout/ledger.ts';
import type { TargetRef, Transition } from '../rollout/model.ts';
import { retryOrFail } from '../rollout/policy.ts';
import type { RolloutStore } from '../rollout/store.ts';
import { parseRolloutComment } from '../send/commands.ts';
import { describeInstancesById } from '../send/fleet.ts';
import { classify, type InstanceState, type Invocation } from './outcomes.ts';

export interface TrackerDeps {
  ssm: SSMClient;
  ec2: EC2Client;
  store: RolloutStore;
  ledger: Ledger;
  config: FanoutConfig;
}

/** A status event (one invocation's, or a whole command's) and the SQS message that carried it. */
export interface StatusMessage {
  messageId: string;
  event: CommandInvocationEvent | CommandCompletionEvent;
}

/** A finished invocation of one target's attempt: what Run Command says happened. */
export interface Observation {
  rolloutId: string;
  target: TargetRef;
  attempt: number;
  commandId: string;
  invocation: Invocation;
}

/** An invocation as read; `detailed`: read with GetCommandInvocation (full output already). */
type Listed = Invocation & { comment?: string; detailed?: true };

const isCompletion = (event: StatusMessage['event']): event is CommandCompletionEvent =>
  event['detail-type'] === 'EC2 Command Status-change Notification';

/**
 * Applies a batch of Run Command status events and hands each rollout's transitions to the
 * ledger (which commits them, queues retries, settles and alerts). Tracked by command:
 * - a command's completion event: its invocations listed once (one ListCommandInvocations page
 *   per 50 instances) and every successful one judged; the rule sends no per-invocation event
 *   for a success, so a command of 50 instances costs one listing in the steady state;
 * - a failed invocation's own event: that invocation read alone (GetCommandInvocation, which
 *   has the full stderr), no listing;
 * - a successful invocation's own event (a rule that still sends them): the command listed once
 *   for the batch.
 * One BatchGetItem for the batch's command records. Returns the ids of the messages to retry;
 * never throws.
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

  const byCommand = [...groupBy(messages, (m) => m.event.detail['command-id'])];
  const readings = await mapSettled(byCommand, 4, ([commandId, commandMessages]) =>
    readForBatch(deps.ssm, commandId, commandMessages),
  );
  const commands: Array<{
    commandId: string;
    messages: StatusMessage[];
    listed: Map<string, Listed>;
    rolloutId: string;
    attempt: number;
  }> = [];
  readings.forEach((result, index) => {
    const [commandId = '', commandMessages = []] = byCommand[index] ?? [];
    if (result.status === 'rejected') {
      fail(commandMessages, result.reason, `could not read invocations of ${commandId}`);
      return;
    }
    const ours = [...result.value.values()]
      .map((inv) => parseRolloutComment(inv.comment ?? ''))
      .find((parsed) => parsed !== undefined);
    if (ours === undefined) {
      logger.warn('status events for a command that is not ours; ignored', { commandId });
      return;
    }
    commands.push({ commandId, messages: commandMessages, listed: result.value, ...ours });
  });

  const observations = new Map<string, Observation & { messageId: string }>();
  try {
    const records = await deps.store.getCommands(commands);
    for (const command of commands) {
      // The record says which file and attempt; without one (the sender stopped between
      // SendCommand and recording it) the command's own parameters and Comment say.
      const record = records.get(command.commandId);
      const file = record ?? (await fileOfCommand(deps.ssm, command.commandId));
      const attempt = record?.attempt ?? command.attempt;
      const observe = (messageId: string, instanceId: string, invocation: Listed) => {
        observations.set(`${instanceId}\0${command.commandId}`, {
          messageId,
          rolloutId: command.rolloutId,
          target: { instanceId, parameter: file.parameter, path: file.path },
          attempt,
          commandId: command.commandId,
          invocation,
        });
      };
      for (const message of command.messages) {
        if (isCompletion(message.event)) {
          const all = [...command.listed];
          // Run Command is eventually consistent: the listing may not agree yet.
          if (all.some(([, inv]) => !isFinished(inv.status))) {
            failed.add(message.messageId);
            continue;
          }
          // Failures come with events of their own; successes only through this one.
          for (const [instanceId, inv] of all) {
            if (inv.status === 'Success') observe(message.messageId, instanceId, inv);
          }
          continue;
        }
        const instanceId = message.event.detail['instance-id'];
        const invocation = command.listed.get(instanceId);
        if (invocation === undefined || !isFinished(invocation.status)) {
          failed.add(message.messageId);
          continue;
        }
        observe(message.messageId, instanceId, invocation);
      }
    }
  } catch (error) {
    fail(
      commands.flatMap((c) => c.messages),
      error,
      'could not locate the targets of status events',
    );
    return failed;
  }

  for (const [rolloutId, items] of groupBy([...observations.values()], (o) => o.rolloutId)) {
    try {
      await deps.ledger.record(rolloutId, await judge(deps, items));
    } catch (error) {
      const ids = new Set(items.map((item) => item.messageId));
      fail(
        messages.filter((m) => ids.has(m.messageId)),
        error,
        `could not update rollout ${rolloutId}`,
      );
    }
  }
  return failed;
}

/**
 * What a batch needs to know of one command's invocations: the whole listing when a message
 * asks about successes (a completion, or a success's own event), else only the failed
 * invocations the events name, each read alone with its full output. Throws SDK errors.
 */
async function readForBatch(
  ssm: SSMClient,
  commandId: string,
  messages: StatusMessage[],
): Promise<Map<string, Listed>> {
  const failures = messages.flatMap((m) =>
    isCompletion(m.event) || m.event.detail.status === 'Success'
      ? []
      : [m.event.detail['instance-id']],
  );
  if (failures.length < messages.length) return readInvocations(ssm, commandId);
  const read = new Map<string, Listed>();
  for (const instanceId of new Set(failures)) {
    const invocation = await readInvocation(ssm, commandId, instanceId);
    // Not there to read alone (never delivered: the instance stopped or went offline; or not
    // yet, Run Command being eventually consistent): the listing knows every invocation.
    if (invocation === undefined) return readInvocations(ssm, commandId);
    read.set(instanceId, invocation);
  }
  return read;
}

/**
 * The sweeper's entry point: asks Run Command about targets' current commands directly.
 * Returns the transitions of those that finished (as a status event would have), and the
 * targets whose invocation Run Command has not finished or does not know. Throws SDK errors.
 */
export async function observeTargets(
  deps: TrackerDeps,
  rolloutId: string,
  targets: Array<{ target: TargetRef; attempt: number; commandId: string }>,
): Promise<{ transitions: Transition[]; unfinished: TargetRef[] }> {
  const observations: Observation[] = [];
  const unfinished: TargetRef[] = [];
  for (const [commandId, items] of groupBy(targets, (t) => t.commandId)) {
    const listed = await readInvocations(deps.ssm, commandId);
    for (const item of items) {
      const invocation = listed.get(item.target.instanceId);
      if (invocation === undefined || !isFinished(invocation.status)) unfinished.push(item.target);
      else observations.push({ rolloutId, ...item, invocation });
    }
  }
  return { transitions: await judge(deps, observations), unfinished };
}

/** What each finished invocation means for its target: the transition to report. */
async function judge(deps: TrackerDeps, observations: Observation[]): Promise<Transition[]> {
  for (const o of observations) {
    if (o.invocation.status !== 'Success' && !(o.invocation as Listed).detailed) {
      Object.assign(o.invocation, await failureDetails(deps.ssm, o.commandId, o.target.instanceId));
    }
  }
  const states = await instanceStates(
    deps.ec2,
    observations.filter((o) => o.invocation.status !== 'Success').map((o) => o.target.instanceId),
  );
  const now = deps.store.clock();
  // One backoff for the batch: its retries of one file go out together, as one chunk.
  const jitter = Math.random();
  const transitions = observations.map((o) =>
    transitionFor(o, states.get(o.target.instanceId) ?? 'running', deps.config.retry, now, jitter),
  );
  countTransitions(transitions);
  return transitions;
}

/** The transition one finished invocation means for its target. Never throws. */
function transitionFor(
  o: Observation,
  state: InstanceState,
  retry: FanoutConfig['retry'],
  now: Date,
  jitter: number,
): Transition {
  const base = { ...o.target, fromAttempt: o.attempt, commandId: o.commandId };
  const outcome = classify(o.invocation, state);
  switch (outcome.kind) {
    case 'Success':
    case 'Unchanged':
      return {
        ...base,
        to: outcome.kind,
        ...(outcome.versionWritten === undefined ? {} : { versionWritten: outcome.versionWritten }),
        ...(outcome.revisionWritten === undefined
          ? {}
          : { revisionWritten: outcome.revisionWritten }),
        ...(outcome.entriesWritten === undefined ? {} : { entriesWritten: outcome.entriesWritten }),
      };
    case 'Permanent':
      return { ...base, to: 'Failed', lastError: outcome.lastError };
    case 'InstanceGone':
      return { ...base, to: 'Unreachable', reason: outcome.reason, lastError: outcome.lastError };
    case 'Retryable':
      return retryOrFail(base, outcome.lastError, retry, now, () => jitter);
  }
}

function countTransitions(transitions: Transition[]): void {
  const count = (to: Transition['to']) => transitions.filter((t) => t.to === to).length;
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

/** Every invocation of a command, by instance (one page per 50 instances). Throws SDK errors. */
async function readInvocations(ssm: SSMClient, commandId: string): Promise<Map<string, Listed>> {
  const invocations = new Map<string, Listed>();
  const pages = paginateListCommandInvocations(
    { client: ssm, pageSize: 50 },
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
  return invocations;
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

/**
 * One invocation with its full output (GetCommandInvocation), or undefined if Run Command does
 * not know it yet (eventually consistent). Throws other SDK errors.
 */
async function readInvocation(
  ssm: SSMClient,
  commandId: string,
  instanceId: string,
): Promise<Listed | undefined> {
  try {
    const reply = await ssm.send(
      new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
    );
    return {
      status: reply.Status ?? '',
      detailed: true,
      ...(reply.StatusDetails === undefined ? {} : { statusDetails: reply.StatusDetails }),
      ...(reply.ResponseCode === undefined ? {} : { exitCode: reply.ResponseCode }),
      ...(reply.StandardOutputContent === undefined ? {} : { stdout: reply.StandardOutputContent }),
      ...(reply.StandardErrorContent === undefined ? {} : { stderr: reply.StandardErrorContent }),
      ...(reply.Comment === undefined ? {} : { comment: reply.Comment }),
    };
  } catch (error) {
    if ((error as Error).name === 'InvocationDoesNotExist') return undefined;
    throw error;
  }
}

/**
 * The file a command writes, from the command itself: for a command whose sender stopped (or
 * has not yet got) between SendCommand and recording it.
 */
async function fileOfCommand(ssm: SSMClient, commandId: string) {
  const { Commands } = await ssm.send(new ListCommandsCommand({ CommandId: commandId }));
  const parameter = Commands?.[0]?.Parameters?.ParameterName?.[0];
  const path = Commands?.[0]?.Parameters?.DestinationPath?.[0];
  if (parameter === undefined || path === undefined) {
    throw new Error(`command ${commandId} has no ParameterName or DestinationPath`);
  }
  return { parameter, path };
}

/** EC2 state of each instance ('missing' once EC2 no longer lists it). */
export async function instanceStates(
  ec2: EC2Client,
  instanceIds: string[],
): Promise<Map<string, InstanceState>> {
  if (instanceIds.length === 0) return new Map();
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
