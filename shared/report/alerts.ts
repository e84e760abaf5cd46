import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { logger } from '../platform/powertools.ts';
import {
  driftRepaired,
  hasProblems,
  type Rollout,
  type StageProgress,
  type Target,
} from '../rollout/model.ts';
import { describeTrigger } from '../rollout/trigger.ts';

/** One message for the on-call. Never carries a secret value: only names, ids and reasons. */
export interface Alert {
  subject: string;
  lines: string[];
  attributes: Record<string, string>;
}

// SNS Subject: ASCII, at most 100 characters
// (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html).
const MAX_SUBJECT = 100;

/**
 * Publishes an alert to the topic, or only logs it when no topic is configured (local runs).
 * Throws the SDK error if publishing fails, so the caller's retry policy applies.
 */
export async function sendAlert(
  sns: SNSClient,
  topicArn: string | undefined,
  alert: Alert,
): Promise<void> {
  logger.warn(alert.subject, { alert: alert.attributes });
  if (topicArn === undefined || topicArn === '') return;
  await sns.send(
    new PublishCommand({
      TopicArn: topicArn,
      Subject: alert.subject.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_SUBJECT),
      Message: alert.lines.join('\n'),
      MessageAttributes: Object.fromEntries(
        Object.entries(alert.attributes).map(([key, value]) => [
          key,
          { DataType: 'String', StringValue: value },
        ]),
      ),
    }),
  );
}

/** The alert for a change that sends nothing: a deleted parameter, a label moved, and so on. */
export function parameterNotPushedAlert(change: {
  operation: string;
  parameter: string;
  environment?: string;
  eventId: string;
  /** Who reported it; Parameter Store unless a secret's change. */
  service?: 'Parameter Store' | 'Secrets Manager';
}): Alert {
  const where = change.environment === undefined ? '' : ` (${change.environment})`;
  const service = change.service ?? 'Parameter Store';
  return {
    subject: `secrets-fanout: ${change.operation} on ${change.parameter}${where}, nothing pushed`,
    lines: [
      `${service} reported "${change.operation}" for ${change.parameter}${where}.`,
      'secrets-fanout pushed nothing: instances keep the file they have.',
      change.operation === 'Delete'
        ? 'If the deletion was a mistake, restore the parameter: the next put is pushed to every instance.'
        : change.operation === 'DeleteSecret'
          ? 'If the deletion was a mistake, restore the secret (RestoreSecret, within its recovery window); instances still hold its last version.'
          : 'Nothing to do unless the change was meant to alter the content.',
      `EventBridge event id: ${change.eventId}`,
    ],
    attributes: {
      kind: 'parameter-not-pushed',
      operation: change.operation,
      parameter: change.parameter,
      ...(change.environment === undefined ? {} : { environment: change.environment }),
    },
  };
}

// Enough instances to act on; the status view lists every one.
const MAX_LISTED = 50;

/**
 * The one alert for a settled rollout with failed or unreachable targets, or for a drift repair
 * that rewrote files (the drifted instances named). Never throws.
 */
export function rolloutAlert(rollout: Rollout, targets: Target[], stage?: string): Alert {
  if (rollout.stages?.phase === 'Halted' && rollout.state !== 'Settled') {
    return haltAlert(rollout, targets, stage);
  }
  const alert = problemsAlert(rollout, targets, stage);
  const repaired = driftRepaired(rollout.counts, rollout.trigger);
  if (repaired === 0) return alert;
  return withDrift(alert, rollout, targets, hasProblems(rollout.counts));
}

function problemsAlert(rollout: Rollout, targets: Target[], stage?: string): Alert {
  const failed = targets.filter((t) => t.status === 'Failed');
  const unreachable = targets.filter((t) => t.status === 'Unreachable');
  const c = rollout.counts;
  const parameters = rollout.parameters.join(', ');
  const version = rollout.version === undefined ? '' : ` v${rollout.version}`;
  const stageFlag = stage === undefined ? '' : ` --stage ${stage}`;
  const list = (items: Target[], describe: (t: Target) => string) => [
    ...items.slice(0, MAX_LISTED).map((t) => `  ${t.instanceId} ${t.path}: ${describe(t)}`),
    ...(items.length > MAX_LISTED
      ? [`  … and ${items.length - MAX_LISTED} more (see status)`]
      : []),
  ];
  const resync =
    rollout.parameters.length === 1
      ? { parameter: rollout.parameters[0] }
      : { environment: rollout.environment };
  const failedIds = [...new Set(failed.map((t) => t.instanceId))];
  return {
    subject: `secrets-fanout: ${rollout.environment} ${parameters}${version}: ${c.failed} failed, ${c.unreachable} unreachable`,
    lines: [
      `Rollout ${rollout.rolloutId} (${describeTrigger(rollout.trigger)}) settled at ${rollout.settledAt ?? 'now'}.`,
      `Environment: ${rollout.environment}   Parameters: ${parameters}   Version: ${rollout.version ?? 'unknown'}`,
      `Result: ${c.success} updated, ${c.unchanged} unchanged, ${c.failed} failed, ${c.unreachable} unreachable, ${c.superseded} superseded, of ${c.total}; ${c.retries} retries.`,
      'Instances that failed keep their previous file, unchanged.',
      ...(failed.length > 0 ? ['', 'Failed:', ...list(failed, describeFailureLine)] : []),
      ...(unreachable.length > 0
        ? [
            '',
            'Unreachable (tagged but SSM could not run the command):',
            ...list(unreachable, (t) => t.reason ?? t.lastError?.status ?? 'unreachable'),
          ]
        : []),
      '',
      'Details:',
      `  npx serverless invoke -f status${stageFlag} --data '${JSON.stringify({ rolloutId: rollout.rolloutId })}'`,
      'Re-sync once fixed:',
      `  npx serverless invoke -f resync${stageFlag} --data '${JSON.stringify(resync)}'`,
      ...(failedIds.length > 0 && failedIds.length <= MAX_LISTED
        ? [
            `  only the failed ones: --data '${JSON.stringify({ ...resync, instanceIds: failedIds })}'`,
          ]
        : []),
    ],
    attributes: {
      kind: 'rollout-settled-with-problems',
      rolloutId: rollout.rolloutId,
      environment: rollout.environment,
      failed: String(c.failed),
      unreachable: String(c.unreachable),
    },
  };
}

/**
 * A drift repair's news: which instances had a file that differed from Parameter Store (edited
 * by hand, restored from an old image, a missed event) and now have the current one. Only
 * instance ids, paths and versions: never content.
 */
function withDrift(alert: Alert, rollout: Rollout, targets: Target[], problems: boolean): Alert {
  const repaired = targets.filter((t) => t.status === 'Success');
  const byInstance = new Map<string, Target[]>();
  for (const target of repaired) {
    byInstance.set(target.instanceId, [...(byInstance.get(target.instanceId) ?? []), target]);
  }
  const instances = [...byInstance.keys()].sort();
  const files = (list: Target[]) =>
    list
      .map((t) => `${t.path}${t.versionWritten === undefined ? '' : ` (now v${t.versionWritten})`}`)
      .join(', ');
  const lines = [
    `Drift repaired on ${instances.length} instance${instances.length === 1 ? '' : 's'} (${repaired.length} file${repaired.length === 1 ? '' : 's'} rewritten): the file on disk differed from Parameter Store and now holds the current value.`,
    ...instances.slice(0, MAX_LISTED).map((id) => `  ${id}: ${files(byInstance.get(id) ?? [])}`),
    ...(instances.length > MAX_LISTED
      ? [`  … and ${instances.length - MAX_LISTED} more instances (see status)`]
      : []),
    'An instance drifts when its file is edited by hand, it is restored from an old image or snapshot, or it missed an event (a launch, a parameter change). Nothing to do if that was expected; if the same instance drifts again, find what writes the file.',
    '',
  ];
  // SNS subjects stop at 100 characters: two ids fit, the body lists them all (capped).
  const shown = instances.slice(0, 2).join(', ');
  const more = instances.length > 2 ? ` +${instances.length - 2}` : '';
  return {
    subject: problems
      ? `${alert.subject}; drift repaired on ${instances.length}`
      : `secrets-fanout: ${rollout.environment} drift repaired on ${instances.length} instance${instances.length === 1 ? '' : 's'}: ${shown}${more}`,
    lines: problems
      ? [...lines, ...alert.lines]
      : [...lines, ...alert.lines.filter(notAboutFailures)],
    attributes: {
      ...alert.attributes,
      ...(problems ? {} : { kind: 'drift-repaired' }),
      driftRepaired: String(repaired.length),
      driftedInstances: String(instances.length),
    },
  };
}

// A clean drift repair's alert keeps the rollout's summary and commands, not the failure talk.
function notAboutFailures(line: string): boolean {
  return (
    line !== 'Instances that failed keep their previous file, unchanged.' &&
    line !== 'Re-sync once fixed:' &&
    !line.includes('invoke -f resync')
  );
}

function describeFailureLine(target: Target): string {
  const e = target.lastError;
  if (e === undefined) return 'Failed';
  const exit =
    e.exitCode === undefined ? '' : `, exit ${e.exitCode}${e.meaning ? ` ${e.meaning}` : ''}`;
  const stderr = e.stderr === undefined ? '' : ` — ${e.stderr}`;
  return `${e.status}${exit}${stderr} (attempts: ${target.attempt})`;
}

/**
 * The one alert of a halt: where the staged rollout stopped and why, what was rolled back to
 * which version, what was never sent, and the two decisions the on-call can make.
 */
function haltAlert(rollout: Rollout, targets: Target[], stage?: string): Alert {
  const stages = rollout.stages as StageProgress;
  const halt = stages.halt;
  const k = halt?.stage ?? stages.current;
  const parameters = rollout.parameters.join(', ');
  const version = rollout.version === undefined ? '' : ` v${rollout.version}`;
  const stageFlag = stage === undefined ? '' : ` --stage ${stage}`;
  const reached = stages.instances.slice(0, k + 1).reduce((sum, n) => sum + n, 0);
  const never = stages.instances.slice(k + 1).reduce((sum, n) => sum + n, 0);
  const failed = targets.filter((t) => t.status === 'Failed' && t.stage === k);
  const where = k === 0 ? 'the canary' : `stage ${k + 1}`;
  const decide = (action: string) =>
    `  npx serverless invoke -f resync${stageFlag} --data '${JSON.stringify({ rolloutId: rollout.rolloutId, action })}'`;
  return {
    subject: `secrets-fanout: ${rollout.environment} ${parameters}${version} HALTED at ${where} of ${stages.instances.length}`,
    lines: [
      `Staged rollout ${rollout.rolloutId} (${describeTrigger(rollout.trigger)}) halted at ${halt?.at ?? 'now'}.`,
      `Environment: ${rollout.environment}   Parameters: ${parameters}   Version: ${rollout.version ?? 'unknown'}`,
      `Where: ${where} of ${stages.instances.length} (${stages.instances.map((n, i) => `stage ${i + 1}: ${n}`).join(', ')} instances).`,
      `Why: ${halt?.reason ?? 'unknown'}`,
      halt?.rollbackRolloutId === undefined || stages.previousVersion === undefined
        ? `Rollback: none (no earlier version of ${parameters} to roll back to); the ${reached} instances reached keep v${rollout.version ?? '?'}.`
        : `Rollback: the ${reached} instances reached are being rolled back to v${stages.previousVersion} (rollout ${halt.rollbackRolloutId}; it alerts on its own if a rollback fails).`,
      `Untouched: ${never} instances were never sent this version.`,
      ...(stages.previousVersion === undefined
        ? []
        : [
            `Until you decide, new instances, drift repair and re-syncs write v${stages.previousVersion} of ${parameters}, not v${rollout.version ?? '?'}.`,
          ]),
      ...(failed.length > 0
        ? [
            '',
            'Failed in this stage:',
            ...failed
              .slice(0, MAX_LISTED)
              .map((t) => `  ${t.instanceId} ${t.path}: ${describeFailureLine(t)}`),
          ]
        : []),
      '',
      'Details:',
      `  npx serverless invoke -f status${stageFlag} --data '${JSON.stringify({ rolloutId: rollout.rolloutId })}'`,
      'If the value is right after all (the alarm had another cause): resume; the rolled-back instances get it again and the next stage starts:',
      decide('resume'),
      'If it is wrong: abandon; put a corrected value (it is staged from its own canary):',
      decide('abandon'),
    ],
    attributes: {
      kind: 'rollout-halted',
      rolloutId: rollout.rolloutId,
      environment: rollout.environment,
      stage: String(k + 1),
    },
  };
}
