import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { paginateDescribeParameters, type SSMClient } from '@aws-sdk/client-ssm';
import { expandFiles, type FanoutConfig, type FileTarget, sourceOf } from '../config.ts';
import type { PathSettleMessage } from '../messages/path-settle.ts';
import type { SourceVersion } from '../rollout/model.ts';
import { newRolloutId } from '../rollout/rollout-id.ts';
import type { RolloutStore } from '../rollout/store.ts';
import { type FanOutDeps, fanOut, type RolloutSummary } from '../send/fanout.ts';
import { burstKey, type SourceEvents } from './source-events.ts';

// SQS DelaySeconds: 0-900 (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html).
const MAX_DELAY_SECONDS = 900;

export interface PathDeps extends FanOutDeps {
  sqs: SQSClient;
  sourceEvents: SourceEvents;
  pathSettleQueueUrl: string;
  store: RolloutStore;
  config: FanoutConfig;
}

/** The files composed from `path` in `environment`. */
export function pathFiles(config: FanoutConfig, environment: string, path: string): FileTarget[] {
  return expandFiles(config).filter(
    (file) =>
      file.environment === environment &&
      sourceOf(file) === 'parametersByPath' &&
      file.parameter === path,
  );
}

/**
 * A parameter under a mapped path changed: add it to the path's burst, and if nobody has yet
 * queued the burst's settle check, queue it (delayed by the settle window). Two events racing
 * may both queue one; the check tolerates duplicates. Throws the SDK error (the event is retried).
 */
export async function recordPathChange(
  deps: Pick<PathDeps, 'sqs' | 'sourceEvents' | 'pathSettleQueueUrl' | 'config'>,
  change: { environment: string; path: string; eventId: string; at: Date },
): Promise<{ burstId: string; changes: number; scheduled: boolean }> {
  const key = burstKey(change.environment, change.path);
  const burst = await deps.sourceEvents.addChange(key, change.eventId, change.at);
  if (burst.scheduled === burst.burstId) {
    return { burstId: burst.burstId, changes: burst.changes, scheduled: false };
  }
  await queueSettle(
    deps,
    {
      kind: 'path-settle',
      environment: change.environment,
      path: change.path,
      burstId: burst.burstId,
      firstEventAt: burst.firstEventAt,
    },
    deps.config.coalesce.settleSeconds,
  );
  await deps.sourceEvents.markScheduled(key, burst.burstId);
  return { burstId: burst.burstId, changes: burst.changes, scheduled: true };
}

async function queueSettle(
  deps: Pick<PathDeps, 'sqs' | 'pathSettleQueueUrl'>,
  message: PathSettleMessage,
  delaySeconds: number,
): Promise<void> {
  await deps.sqs.send(
    new SendMessageCommand({
      QueueUrl: deps.pathSettleQueueUrl,
      MessageBody: JSON.stringify(message),
      DelaySeconds: Math.min(MAX_DELAY_SECONDS, Math.max(1, Math.ceil(delaySeconds))),
    }),
  );
}

export type SettleResult =
  | { result: 'waiting'; delaySeconds: number }
  | { result: 'rolled-out'; summary: RolloutSummary }
  | { result: 'already-rolled-out'; rolloutId: string };

/** The rollout id of a burst: deterministic, so every settle check of one burst agrees. */
export function burstRolloutId(message: PathSettleMessage): string {
  return newRolloutId(new Date(message.firstEventAt), `${message.path}#${message.burstId}`);
}

/**
 * A burst's settle check. While changes keep coming (the last one less than settleSeconds ago)
 * and the burst is younger than maxWaitSeconds, it queues itself again for the rest of the
 * window. Otherwise it closes the burst (conditionally: a change arriving at that moment keeps it
 * open) and starts one rollout of the path's files, recording the version of every parameter
 * under the path. A check whose burst is already closed finishes the rollout if its closer
 * stopped before creating it, and otherwise does nothing. Throws the SDK error, and
 * RolloutBusyError while another run sends the same rollout.
 */
export async function settlePath(
  deps: PathDeps,
  message: PathSettleMessage,
  now: Date,
): Promise<SettleResult> {
  const key = burstKey(message.environment, message.path);
  const rolloutId = burstRolloutId(message);
  const burst = await deps.sourceEvents.getBurst(key);
  if (burst === undefined || burst.burstId !== message.burstId) {
    if (await deps.store.getRollout(rolloutId)) return { result: 'already-rolled-out', rolloutId };
  } else {
    const { settleSeconds, maxWaitSeconds } = deps.config.coalesce;
    const quietFor = (now.getTime() - Date.parse(burst.lastEventAt)) / 1000;
    const age = (now.getTime() - Date.parse(burst.firstEventAt)) / 1000;
    const wait = Math.min(settleSeconds - quietFor, maxWaitSeconds - age);
    if (wait > 0) {
      await queueSettle(deps, message, wait);
      return { result: 'waiting', delaySeconds: Math.ceil(wait) };
    }
    if (!(await deps.sourceEvents.close(key, burst.burstId, burst.lastEventAt))) {
      await queueSettle(deps, message, settleSeconds);
      return { result: 'waiting', delaySeconds: settleSeconds };
    }
  }
  const files = pathFiles(deps.config, message.environment, message.path);
  const sources = await pathVersions(deps.ssm, message.path);
  const summary = await fanOut(deps, {
    rolloutId,
    trigger: { type: 'event', eventId: message.burstId },
    environment: message.environment,
    files,
    sources,
  });
  return { result: 'rolled-out', summary };
}

/**
 * Name and version of every parameter directly under `path`, from DescribeParameters with a
 * OneLevel Path filter: metadata only, no value (GetParametersByPath returns values, which no
 * function may read). Throws the SDK error.
 * https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_ParameterStringFilter.html
 */
export async function pathVersions(ssm: SSMClient, path: string): Promise<SourceVersion[]> {
  const versions: SourceVersion[] = [];
  const pages = paginateDescribeParameters(
    { client: ssm },
    {
      ParameterFilters: [{ Key: 'Path', Option: 'OneLevel', Values: [path.replace(/\/$/, '')] }],
    },
  );
  for await (const page of pages) {
    for (const parameter of page.Parameters ?? []) {
      if (parameter.Name === undefined || parameter.Version === undefined) continue;
      versions.push({ name: parameter.Name, version: String(parameter.Version) });
    }
  }
  return versions.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
