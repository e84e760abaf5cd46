/**
 * Fills a ConsoleModel from a running local cloud and reports what changed as ConsoleEvents.
 * Rollouts are read as the status function reads them (the RolloutStore's per-environment
 * index in DynamoDB), so a rollout started by a parameter change, a resync or a bootstrap all
 * appear, each with its trigger. They are re-read after every function invocation (throttled)
 * and once a second. Instances come from the fleet, their version on disk from their command
 * results (the document's `secrets-fanout result=… version=N` line), never from file contents.
 */

import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { stagesView } from '../../../shared/report/status.ts';
import { RolloutStore } from '../../../shared/rollout/store.ts';
import type { LocalCloud } from '../cloud.ts';
import type { ConsoleEvent, ConsoleModel, InstanceFile, InstanceRow, RolloutRow } from './model.ts';

/** The environments and tag key of the packaged service (its functions' FANOUT_CONFIG). */
export function fanoutSettings(cloud: LocalCloud): { environments: string[]; tagKey: string } {
  for (const fn of cloud.functions.values()) {
    const text = fn.options.environment.FANOUT_CONFIG;
    if (text === undefined) continue;
    const config = JSON.parse(text) as { environments?: string[]; tagKey?: string };
    return { environments: config.environments ?? [], tagKey: config.tagKey ?? 'Environment' };
  }
  return { environments: [], tagKey: 'Environment' };
}

/** The rollouts table through the service's own store, as the cloud's admin. */
export function rolloutStoreOf(cloud: LocalCloud): RolloutStore {
  const table = cloud.stack
    .resources('AWS::DynamoDB::Table')
    .map(([logicalId]) => logicalId)
    .find((logicalId) => /rollout/i.test(logicalId));
  if (table === undefined) throw new Error('the stack has no rollouts table');
  const db = DynamoDBDocumentClient.from(new DynamoDBClient(cloud.clientConfig('dynamodb')), {
    marshallOptions: { removeUndefinedValues: true },
  });
  return new RolloutStore(db, cloud.stack.physicalName(table));
}

const RESULT_LINE = /secrets-fanout result=(\w+)(?: version=(\d+))?/;

/** Each instance with its files' versions on disk, from the commands sent to it. */
export function instanceRows(cloud: LocalCloud, tagKey: string): InstanceRow[] {
  const files = new Map<string, Map<string, InstanceFile & { at: number }>>();
  const commands = [...cloud.ssm.commands.values()].sort(
    (a, b) => a.requestedDateTime.getTime() - b.requestedDateTime.getTime(),
  );
  for (const command of commands) {
    const path = command.parameters.DestinationPath?.[0];
    if (path === undefined) continue;
    for (const invocation of command.invocations.values()) {
      const byPath = files.get(invocation.instanceId) ?? new Map();
      files.set(invocation.instanceId, byPath);
      const match = RESULT_LINE.exec(invocation.stdout);
      const at = invocation.executionEnd?.getTime() ?? command.requestedDateTime.getTime();
      const previous = byPath.get(path);
      if (invocation.statusDetails === 'Success' && match?.[2] !== undefined) {
        if (previous === undefined || previous.at <= at)
          byPath.set(path, { path, version: Number(match[2]), at });
      } else if (invocation.status === 'Failed' || invocation.statusDetails === 'Failed') {
        if (previous === undefined || previous.at <= at)
          byPath.set(path, {
            path,
            ...(previous?.version === undefined ? {} : { version: previous.version }),
            failedSince: invocation.responseCode,
            at,
          });
      }
    }
  }
  return cloud.fleet.list().map((instance) => {
    const lifecycle = cloud.autoscaling.lifecycleState(instance.id);
    return {
      id: instance.id,
      name: instance.tags.Name ?? instance.tags['aws:autoscaling:groupName'] ?? '',
      environment: instance.tags[tagKey] ?? '',
      state: instance.state,
      ...(lifecycle === undefined ? {} : { lifecycle }),
      managed: instance.managed,
      files: [...(files.get(instance.id)?.values() ?? [])]
        .sort((a, b) => a.path.localeCompare(b.path))
        .map(({ at: _at, ...file }) => file),
    };
  });
}

export interface Watcher {
  /** Reads the rollouts now; resolves when the model is up to date. */
  refresh(): Promise<void>;
  stop(): void;
}

/**
 * Keeps `model` current with the cloud; calls `onEvent` for each rollout that starts or
 * settles and each alert, and `onChange` whenever the model changed.
 */
export function watchCloud(
  cloud: LocalCloud,
  model: ConsoleModel,
  listeners: { onEvent: (event: ConsoleEvent) => void; onChange: () => void },
): Watcher {
  const { environments, tagKey } = fanoutSettings(cloud);
  const store = rolloutStoreOf(cloud);
  const known = new Map<string, RolloutRow>();
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  const read = async () => {
    const lists = await Promise.all(
      environments.map(async (environment) => {
        const entries = await store.recentRollouts({ environment }, 10);
        return store.getRollouts(entries.map((entry) => entry.rolloutId));
      }),
    );
    const rollouts = lists
      .flat()
      .filter((r) => r.state !== 'Creating')
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    for (const rollout of [...rollouts].reverse()) {
      const row: RolloutRow = {
        rolloutId: rollout.rolloutId,
        trigger: rollout.trigger,
        environment: rollout.environment,
        parameters: rollout.parameters,
        ...(rollout.version === undefined ? {} : { version: rollout.version }),
        state: rollout.state,
        createdAt: rollout.createdAt,
        ...(rollout.settledAt === undefined ? {} : { settledAt: rollout.settledAt }),
        counts: rollout.counts,
        ...(rollout.stages === undefined ? {} : { stage: stagesView(rollout.stages).summary }),
      };
      const before = known.get(row.rolloutId);
      known.set(row.rolloutId, row);
      if (before === undefined) {
        listeners.onEvent({ kind: 'rollout-started', rollout: row });
        model.selectedEnvironment = row.environment;
      }
      if (row.stage !== undefined && before !== undefined && before.stage !== row.stage)
        listeners.onEvent({ kind: 'rollout-stage', rollout: row });
      if (row.state === 'Settled' && before?.state !== 'Settled')
        listeners.onEvent({ kind: 'rollout-settled', rollout: row });
    }
    model.rollouts = rollouts.map((r) => known.get(r.rolloutId) as RolloutRow).slice(0, 20);
    model.instances = instanceRows(cloud, tagKey);
    listeners.onChange();
  };

  const refresh = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    running = read()
      .catch(() => {
        // The cloud is stopping, or DynamoDB was busy: the next refresh reads again.
      })
      .finally(() => {
        running = undefined;
        if (again && !stopped) {
          again = false;
          setTimeout(() => void refresh(), 100).unref();
        }
      });
    return running;
  };

  const unsubscribe: Array<() => void> = [];
  for (const fn of cloud.functions.values())
    unsubscribe.push(fn.onInvocation(() => void refresh()));
  unsubscribe.push(
    cloud.sns.onPublish((message) => {
      const rolloutId = message.messageAttributes.rolloutId?.StringValue;
      const alert = {
        at: new Date(),
        subject: message.subject ?? message.message.split('\n')[0] ?? '',
        ...(rolloutId === undefined ? {} : { rolloutId }),
      };
      model.alerts.unshift(alert);
      listeners.onEvent({ kind: 'alert', alert });
      listeners.onChange();
    }),
  );
  unsubscribe.push(
    cloud.bus.onEvent(() => {
      model.instances = instanceRows(cloud, tagKey);
      listeners.onChange();
    }),
  );
  const timer = setInterval(() => void refresh(), 1000);
  timer.unref();
  model.instances = instanceRows(cloud, tagKey);
  return {
    refresh,
    stop() {
      stopped = true;
      clearInterval(timer);
      for (const off of unsubscribe) off();
    },
  };
}
