import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { type FileTarget, filesForParameter, sourceOf } from '../config.ts';
import { type SecretChangeEvent, secretIdOf } from '../messages/secret-change.ts';
import { newRolloutId } from '../rollout/rollout-id.ts';
import { type FanOutDeps, fanOut, type RolloutSummary } from '../send/fanout.ts';
import { currentSecretVersion, secretNameOf } from './secrets.ts';
import type { SourceEvents } from './source-events.ts';

export interface SecretDeps extends FanOutDeps {
  secretsManager: SecretsManagerClient;
  sourceEvents: SourceEvents;
}

export type SecretChangeResult =
  | { status: 'sent'; secret: string; versionId: string; summary: RolloutSummary }
  | { status: 'skipped'; secret?: string; reason: string; rolloutId?: string }
  | { status: 'deleted'; secret: string; environment: string };

/** The files mapped from a secret name (all of one environment); [] when it is not mapped. */
export function filesForSecret(deps: Pick<FanOutDeps, 'config'>, name: string): FileTarget[] {
  return filesForParameter(deps.config, name).filter((file) => sourceOf(file) === 'secret');
}

/**
 * A Secrets Manager change: find which version is AWSCURRENT now (DescribeSecret, no value),
 * and push it to the secret's files, once per version: the several events one change makes
 * share one rollout (the first event's claim names it; a later one only finishes it if it was
 * left half-created). A failed call, an unmapped secret or one without AWSCURRENT sends nothing.
 * Throws the SDK error (the event is retried) and RolloutBusyError.
 */
export async function propagateSecret(
  deps: SecretDeps,
  event: SecretChangeEvent,
): Promise<SecretChangeResult> {
  if (event.detail.errorCode !== undefined) return { status: 'skipped', reason: 'call-failed' };
  const secretId = secretIdOf(event);
  if (secretId === undefined) return { status: 'skipped', reason: 'no-secret-id' };
  const name = secretNameOf(secretId);
  const files = filesForSecret(deps, name);
  const environment = files[0]?.environment;
  if (environment === undefined) return { status: 'skipped', secret: name, reason: 'not-mapped' };
  // Like a deleted parameter: nothing to push (instances keep their file), the caller alerts.
  if (event.detail.eventName === 'DeleteSecret') {
    return { status: 'deleted', secret: name, environment };
  }

  const current = await currentSecretVersion(deps.secretsManager, secretId);
  if (current === undefined) return { status: 'skipped', secret: name, reason: 'no-awscurrent' };
  const claim = await deps.sourceEvents.claim(
    `secret#${name}#${current.versionId}`,
    newRolloutId(new Date(event.time), event.id),
    new Date(),
  );
  if (!claim.first) {
    const existing = await deps.store.getRollout(claim.rolloutId);
    if (existing !== undefined && existing.state !== 'Creating') {
      return {
        status: 'skipped',
        secret: name,
        reason: 'version-already-pushed',
        rolloutId: claim.rolloutId,
      };
    }
  }
  const summary = await fanOut(deps, {
    rolloutId: claim.rolloutId,
    trigger: { type: 'event', eventId: event.id },
    environment,
    files,
    sources: [{ name, version: current.versionId }],
  });
  return { status: 'sent', secret: name, versionId: current.versionId, summary };
}
