import type { FanoutConfig } from '../config.ts';
import type { NewTarget, PlanPart, SendChunk } from '../rollout/model.ts';

/**
 * When each of a rollout's planned chunks (rollout/model.ts `planChunks`) may go, so that
 * every rollout's sends together keep to the configured pace. Pure functions.
 */

// SQS delays count whole seconds: a turn less than this far off is due now.
const DUE_WITHIN_MS = 1000;

/** Whether a chunk whose turn is `notBefore` may go at `now`. Never throws. */
export function isDue(notBefore: string, now: Date): boolean {
  return Date.parse(notBefore) - now.getTime() <= DUE_WITHIN_MS;
}

export type Pace = Pick<FanoutConfig['rollout'], 'fetchesPerSecond' | 'commandsPerSecond'>;

/** How long a set of chunks occupies the pace: its fetches at the fetch rate, its commands at theirs. */
export function paceSeconds(chunks: readonly SendChunk[], pace: Pace): number {
  const fetches = chunks.reduce((sum, c) => sum + c.instanceIds.length, 0);
  return Math.max(fetches / pace.fetchesPerSecond, chunks.length / pace.commandsPerSecond);
}

/**
 * Each chunk's turn, from `start`: a chunk may go once the instances before it had their
 * fetch time and the commands before it their command time. Files interleave (chunk 0 of
 * every file first), so several files of one change go out together.
 */
export function schedule(
  chunks: readonly SendChunk[],
  start: Date,
  pace: Pace,
): Array<{ chunk: SendChunk; at: Date }> {
  const order = [...chunks].sort((a, b) => a.index - b.index || a.path.localeCompare(b.path));
  let fetchesBefore = 0;
  return order.map((c, position) => {
    const offset = Math.max(
      fetchesBefore / pace.fetchesPerSecond,
      position / pace.commandsPerSecond,
    );
    fetchesBefore += c.instanceIds.length;
    return { chunk: c, at: new Date(start.getTime() + offset * 1000) };
  });
}

/**
 * A large rollout's plan cut into parts of about `maxTargets` targets: its chunks in turn order
 * (so the first part holds the first sends, of every file), whole chunks only, the first part
 * only its first `firstChunks` (the planner records it before its first command goes out); then
 * its unreachable targets, `maxTargets` a part. Pure.
 */
export function splitIntoParts(
  turns: ReadonlyArray<{ chunk: SendChunk; at: Date }>,
  unreachable: readonly NewTarget[],
  maxTargets: number,
  firstChunks = Number.POSITIVE_INFINITY,
): PlanPart[] {
  const parts: PlanPart[] = [];
  let current: PlanPart | undefined;
  let size = 0;
  for (const { chunk, at } of turns) {
    const full =
      current !== undefined &&
      (size >= maxTargets || (current.part === 0 && current.chunks.length >= firstChunks));
    if (current === undefined || full) {
      current = { part: parts.length, chunks: [], unreachable: [] };
      parts.push(current);
      size = 0;
    }
    const { stage: _, ...plain } = chunk;
    current.chunks.push({ ...plain, notBefore: at.toISOString() });
    size += chunk.instanceIds.length;
  }
  for (let start = 0; start < unreachable.length; start += maxTargets) {
    parts.push({
      part: parts.length,
      chunks: [],
      unreachable: unreachable.slice(start, start + maxTargets),
    });
  }
  return parts;
}
