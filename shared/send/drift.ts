import { filesForEnvironment } from '../config.ts';
import type { DriftRequest } from '../messages/drift.ts';
import { correlate, logger } from '../platform/powertools.ts';
import { newRolloutId } from '../rollout/rollout-id.ts';
import { type FanOutDeps, fanOut, type RolloutSummary } from './fanout.ts';
import { stagingParameters } from './holds.ts';
import { currentVersion } from './parameters.ts';

export type DriftResult =
  | { status: 'started'; summary: RolloutSummary; skipped: string[] }
  | { status: 'nothing-to-do'; environment: string; reason: string };

/**
 * Scheduled drift repair of one environment: every mapped file of the environment, pushed again
 * to every running instance carrying its tag, through the one fan-out (so it takes its turns in
 * the shared GetParameter pace like any rollout). The document rewrites nothing whose content is
 * current, so a target that ends `Success` had drifted (edited by hand, restored from an old
 * snapshot, a missed event) and was repaired; instances no rollout ever reached (missed launch
 * events) are simply part of the environment and get their files too. The ledger counts the
 * repairs and alerts when there are any. Parameters that do not exist are skipped (logged).
 * The rollout id derives from the scheduled event's id, so a redelivered event continues the
 * same rollout. Throws RolloutBusyError while another run holds that rollout, and SDK errors.
 */
export async function repairDrift(deps: FanOutDeps, request: DriftRequest): Promise<DriftResult> {
  const { environment } = request;
  const files = filesForEnvironment(deps.config, environment);
  if (files.length === 0) {
    return {
      status: 'nothing-to-do',
      environment,
      reason: `environment ${environment} is not configured; configured: ${deps.config.environments.join(', ')}`,
    };
  }
  const names = [...new Set(files.map((f) => f.parameter))];
  // DescribeParameters: metadata only, never a value.
  const versions = new Map(
    await Promise.all(names.map(async (n) => [n, await currentVersion(deps.ssm, n)] as const)),
  );
  // A parameter a staged rollout is going out for is left to it (its stages reach every
  // instance; a repair now would take the unproven version past its canary, or undo it).
  const staging = await stagingParameters(deps.store, environment, names);
  const skipped = names.filter((n) => versions.get(n) === undefined || staging.has(n));
  const present = files.filter((f) => !skipped.includes(f.parameter));
  if (skipped.length > 0) {
    logger.warn('drift repair: parameters missing, or being staged, are skipped', {
      environment,
      skipped,
      staging: Object.fromEntries(staging),
    });
  }
  if (present.length === 0) {
    return {
      status: 'nothing-to-do',
      environment,
      reason:
        staging.size === 0
          ? `no mapped parameter of ${environment} exists in Parameter Store`
          : `every mapped parameter of ${environment} is missing or being staged (${[...staging].map(([name, id]) => `${name}: rollout ${id}`).join(', ')})`,
    };
  }
  const at = request.time === undefined ? deps.ledger.now() : new Date(request.time);
  const rolloutId = newRolloutId(
    at,
    request.eventId === undefined ? undefined : `drift:${request.eventId}:${environment}`,
  );
  const only = present.length === 1 ? versions.get(present[0]?.parameter ?? '') : undefined;
  correlate({ rolloutId, environment });
  const summary = await fanOut(deps, {
    rolloutId,
    trigger: {
      type: 'drift',
      ...(request.eventId === undefined ? {} : { eventId: request.eventId }),
    },
    environment,
    files: present,
    ...(only === undefined ? {} : { version: only }),
    skipIfEmpty: true,
  });
  if (summary.empty) {
    return {
      status: 'nothing-to-do',
      environment,
      reason: `no running instance is tagged ${deps.config.tagKey}=${environment}; no rollout was recorded`,
    };
  }
  return { status: 'started', summary, skipped };
}
