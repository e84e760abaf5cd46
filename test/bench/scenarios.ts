/**
 * The benchmark's scenarios on the local cloud: a fleet of N prod instances, one parameter
 * change, and what it cost. Every figure comes from the local cloud's own records: API calls by
 * caller, DynamoDB writes, Lambda invocations (real durations), Run Command invocations
 * (simulated-clock times).
 */
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { type InstanceSpec, type LocalCloud, startLocalCloud } from '../local-cloud/cloud.ts';

export const PARAMETER = '/prod/env.php';
/** Not mapped in custom.fanout: only the direct anchor's rule reacts to it. */
export const ANCHOR_PARAMETER = '/prod/anchor.env';

export interface CloudOptions {
  packagedDir: string;
  instances: number;
  clockScale: number;
  stub: boolean;
  latencyMs?: number;
  parameterStoreTps?: number;
}

export async function startBenchCloud(options: CloudOptions): Promise<LocalCloud> {
  const fleet: InstanceSpec[] = Array.from({ length: options.instances }, (_, i) => ({
    id: `i-0b${String(i).padStart(15, '0')}`,
    tags: { Environment: 'prod', Name: `web-prod-${i}` },
    directories: ['/var/www/html'],
  }));
  const latency = options.latencyMs === undefined ? {} : { latencyMs: options.latencyMs };
  return startLocalCloud({
    packagedDir: options.packagedDir,
    fleet,
    clockScale: options.clockScale,
    agent: { deliverySeconds: 1, stubScript: options.stub },
    sqsDelayFloorMs: 250,
    functionEnvironment: { POWERTOOLS_LOG_LEVEL: 'ERROR' },
    faults: {
      ssm: { ...latency },
      ec2: { ...latency },
      ...(options.parameterStoreTps === undefined
        ? {}
        : { parameterStoreTps: options.parameterStoreTps }),
    },
  });
}

/**
 * The fan-out's calls: every caller but the tracker, bootstrap and status. The retry function
 * is the send worker: it sends the chunks the planner queued (no scenario here fails a run
 * it would retry, but for the throttled one, which counts no calls).
 */
export function fanoutCalls(
  cloud: LocalCloud,
  service: string,
  operation: string,
  since = 0,
): number {
  return cloud.calls.filter(
    (c) =>
      c.at >= since &&
      c.service === service &&
      c.operation === operation &&
      c.caller.startsWith('ASIA-LOCAL-') &&
      !/-(track|bootstrap|status)$/.test(c.caller),
  ).length;
}

/** Run Command invocations of `parameter` requested at or after `sinceSimMs`. */
function invocationsOf(cloud: LocalCloud, parameter: string, sinceSimMs: number) {
  return [...cloud.ssm.commands.values()]
    .filter(
      (command) =>
        command.parameters.ParameterName?.[0] === parameter &&
        command.requestedDateTime.getTime() >= sinceSimMs,
    )
    .flatMap((command) => [...command.invocations.values()].map((inv) => ({ command, inv })));
}

export interface Delivery {
  /** Real ms from the put to the last SendCommand accepted for it. */
  lastSendRealMs: number;
  /** Simulated ms from the put to the first SendCommand accepted for it. */
  firstSendSimMs: number | undefined;
  /** Simulated ms from the put to the last file replaced (every instance's Success). */
  lastFileSimMs: number;
  /** Real ms from the put to the last file replaced. */
  lastFileRealMs: number;
  sendCommands: number;
  /** Invocations that failed because the fetch was throttled (reason=fetch-throttled). */
  fetchThrottledFailures: number;
  failedInvocations: number;
  complete: boolean;
}

/**
 * Puts `parameter` and waits until every instance has replaced its file (a Success of a command
 * sent after the put) or `timeoutMs` passes.
 */
export async function putAndDeliver(
  cloud: LocalCloud,
  parameter: string,
  instances: number,
  timeoutMs: number,
): Promise<Delivery> {
  const sinceSim = cloud.clock.nowMs();
  const sinceReal = Date.now();
  const commandsBefore = new Set(cloud.ssm.commands.keys());
  cloud.putParameter(parameter, `<?php return ['db_password' => 'bench-${sinceReal}'];\n`);
  let lastSendReal = sinceReal;
  let firstSendSim: number | undefined;
  let sentTo = 0;
  const seen = new Set<string>();
  let complete = true;
  try {
    await cloud.waitFor(
      () => {
        for (const [id, command] of cloud.ssm.commands) {
          if (commandsBefore.has(id) || seen.has(id)) continue;
          if (command.parameters.ParameterName?.[0] !== parameter) continue;
          seen.add(id);
          const at = command.requestedDateTime.getTime() - sinceSim;
          firstSendSim = Math.min(firstSendSim ?? at, at);
          sentTo += command.instanceIds.length;
          lastSendReal = Date.now();
        }
        const done = new Set(
          invocationsOf(cloud, parameter, sinceSim)
            .filter(({ inv }) => inv.status === 'Success')
            .map(({ inv }) => inv.instanceId),
        );
        return done.size >= instances || undefined;
      },
      { timeoutMs, message: `every instance to replace ${parameter}` },
    );
  } catch {
    complete = false;
  }
  const all = invocationsOf(cloud, parameter, sinceSim);
  const ends = all
    .filter(({ inv }) => inv.status === 'Success' && inv.executionEnd)
    .map(({ inv }) => (inv.executionEnd as Date).getTime());
  const lastEnd = ends.length ? Math.max(...ends) : cloud.clock.nowMs();
  return {
    lastSendRealMs: lastSendReal - sinceReal,
    firstSendSimMs: firstSendSim,
    lastFileSimMs: lastEnd - sinceSim,
    lastFileRealMs: (lastEnd - sinceSim) / cloud.clock.scale,
    sendCommands: seen.size,
    fetchThrottledFailures: all.filter(({ inv }) => inv.stdout.includes('reason=fetch-throttled'))
      .length,
    failedInvocations: all.filter(({ inv }) => inv.status === 'Failed').length,
    complete: complete && sentTo >= 0,
  };
}

/** Adds the direct anchor: Parameter Store change → EventBridge → Run Command by tag, no Lambda. */
export function addDirectAnchor(cloud: LocalCloud): void {
  cloud.bus.addRule({
    name: 'bench-direct-anchor',
    arn: `arn:aws:events:${cloud.region}:123456789012:rule/bench-direct-anchor`,
    pattern: {
      source: ['aws.ssm'],
      'detail-type': ['Parameter Store Change'],
      detail: { name: [ANCHOR_PARAMETER] },
    },
    enabled: true,
    targets: [
      {
        id: 'run-command',
        arn: `arn:aws:ssm:${cloud.region}:123456789012:document/${cloud.documentName}`,
        // The parameters the service sends for the file (serverless.yml custom.fanout).
        input: JSON.stringify({
          ParameterName: [ANCHOR_PARAMETER],
          DestinationPath: ['/var/www/html/anchor.php'],
          FileOwner: ['root'],
          FileGroup: ['root'],
          FileMode: ['0400'],
          Format: ['raw'],
          Backups: ['1'],
        }),
        runCommandTargets: [{ Key: 'tag:Environment', Values: ['prod'] }],
      },
    ],
  });
}

/** Waits until the newest rollout of `parameter` is settled (or the timeout). */
export async function waitSettled(cloud: LocalCloud, timeoutMs: number): Promise<boolean> {
  const propagate = await cloud.waitFor(() => cloud.invocations('propagate').at(-1), {
    timeoutMs,
    message: 'propagate',
  });
  const rolloutId = (propagate.result as any)?.rollout?.rolloutId as string | undefined;
  if (rolloutId === undefined) return false;
  const dynamodb = new DynamoDBClient(cloud.clientConfig('dynamodb'));
  try {
    await cloud.waitFor(
      async () => {
        const { Item } = await dynamodb.send(
          new GetItemCommand({
            TableName: cloud.stack.physicalName('RolloutsTable'),
            Key: { pk: { S: `R#${rolloutId}` }, sk: { S: '#ROLLOUT' } },
            ConsistentRead: true,
          }),
        );
        return Item?.state?.S === 'Settled';
      },
      { timeoutMs, message: 'the rollout to settle' },
    );
    return true;
  } catch {
    return false;
  } finally {
    dynamodb.destroy();
  }
}

/** Tracking cost of the rollouts so far: track invocations, writes per instance, listings. */
export function trackingCost(cloud: LocalCloud, instances: number) {
  const table = cloud.stack.physicalName('RolloutsTable');
  const targetWrites = cloud.dynamodbWrites.filter(
    (w) => w.status === 200 && w.table === table && String(w.key.sk?.S ?? '').startsWith('T#'),
  ).length;
  return {
    trackInvocations: cloud
      .invocations('track')
      .filter((r) =>
        ((r.event as any)?.Records ?? []).some((rec: any) => !String(rec.body).includes('"sweep"')),
      ).length,
    targetWritesPerInstance: targetWrites / instances,
    listCommandInvocations: cloud.calls.filter((c) => c.operation === 'ListCommandInvocations')
      .length,
  };
}

/** The longest invocation of each function as a fraction of its timeout (real time, as AWS). */
export function longestInvocations(cloud: LocalCloud, sinceReal: number) {
  return [...cloud.functions.values()].map((fn) => {
    const longest = Math.max(
      0,
      ...fn.invocations.filter((r) => r.startedAt.getTime() >= sinceReal).map((r) => r.durationMs),
    );
    return {
      fn: fn.options.name,
      longestMs: longest,
      timeoutMs: fn.options.timeoutSeconds * 1000,
      fraction: longest / (fn.options.timeoutSeconds * 1000),
    };
  });
}
