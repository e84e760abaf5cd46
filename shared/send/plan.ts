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

/** A planned chunk and its turn in the shared pace, as its send message carries it. */
export interface Turn {
  chunk: SendChunk;
  notBefore: string;
}

/** `schedule` as turns. Pure. */
export function turnsFrom(chunks: readonly SendChunk[], start: Date, pace: Pace): Turn[] {
  return schedule(chunks, start, pace).map(({ chunk, at }) => ({
    chunk,
    notBefore: at.toISOString(),
  }));
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

// A part is one DynamoDB item, at most 400 KB
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html): a part
// also closes when this estimate of its size is reached (names can be long: 1,011 and 4,096
// characters at most), whatever its count of targets.
const PART_BYTES = 300_000;
const chunkBytes = (c: SendChunk) =>
  c.parameter.length + c.path.length + 64 + c.instanceIds.length * 24;
const unreachableBytes = (t: NewTarget) => t.parameter.length + t.path.length + 64;

/**
 * A large rollout's plan cut into parts of at most `maxTargets` targets: its chunks in turn
 * order (so the first part holds the first sends, of every file), whole chunks only. The first
 * part holds only its first `firstChunks` (the planner records it before its first command goes
 * out) and each next one at most twice the targets of the one before, so the early parts, whose
 * turns come soon, are written quickly. Then its unreachable targets, `maxTargets` a part. A
 * part also closes before it would pass PART_BYTES. Pure.
 */
export function splitIntoParts(
  turns: readonly Turn[],
  unreachable: readonly NewTarget[],
  maxTargets: number,
  firstChunks = Number.POSITIVE_INFINITY,
): PlanPart[] {
  const parts: PlanPart[] = [];
  let targets = 0;
  let bytes = 0;
  // Slow start: after the first part, each may hold twice the targets of the one before, up to
  // maxTargets, so that each is written while the sends before it take their turns.
  const capOf = (part: number) =>
    Number.isFinite(firstChunks) ? Math.min(maxTargets, 50 * firstChunks * 2 ** part) : maxTargets;
  /** The part to add to: the current one while this fits (a part is never left empty). */
  const partFor = (more: number, moreBytes: number, closed: boolean): PlanPart => {
    const current = parts.at(-1);
    const empty = current === undefined || current.chunks.length + current.unreachable.length === 0;
    const fits =
      current !== undefined &&
      targets + more <= capOf(current.part) &&
      bytes + moreBytes <= PART_BYTES;
    if (current !== undefined && (empty || (fits && !closed))) {
      targets += more;
      bytes += moreBytes;
      return current;
    }
    const next: PlanPart = { part: parts.length, chunks: [], unreachable: [] };
    parts.push(next);
    targets = more;
    bytes = moreBytes;
    return next;
  };
  for (const { chunk, notBefore } of turns) {
    const first = parts[0];
    const firstFull =
      parts.length === 1 && first !== undefined && first.chunks.length >= firstChunks;
    const { stage: _, ...plain } = chunk;
    partFor(chunk.instanceIds.length, chunkBytes(chunk), firstFull).chunks.push({
      ...plain,
      notBefore,
    });
  }
  unreachable.forEach((target, i) => {
    // Unreachable targets start a part of their own.
    partFor(1, unreachableBytes(target), i === 0).unreachable.push(target);
  });
  return parts;
}
