import { createHash, randomBytes } from 'node:crypto';

/**
 * A rollout id sorts by time (to the millisecond, so two rollouts of one parameter in the same
 * second keep their order) and reads well in a page: `20261123T161300123Z-3f9a1c2b`.
 * Given a seed (an EventBridge event id) it is deterministic, so a redelivered event maps to
 * the same rollout; without one it is random. Never throws for a valid date.
 */
export function newRolloutId(at: Date, seed?: string): string {
  const suffix =
    seed === undefined
      ? randomBytes(4).toString('hex')
      : createHash('sha256').update(seed).digest('hex').slice(0, 8);
  return `${rolloutIdFloor(at)}-${suffix}`;
}

/** The smallest id a rollout created at or after `at` can have: for "rollouts since launch". */
export function rolloutIdFloor(at: Date): string {
  return at.toISOString().replace(/[-:.]/g, '');
}
