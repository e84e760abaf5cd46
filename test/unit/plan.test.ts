import { describe, expect, it } from 'vitest';
import type { NewTarget, SendChunk } from '../../shared/rollout/model.ts';
import { partItems } from '../../shared/rollout/parts.ts';
import { paceSeconds, schedule, splitIntoParts, turnsFrom } from '../../shared/send/plan.ts';

/** The send plan's pure parts: the pace, each chunk's turn, and a large plan cut into parts. */

const ids = (from: number, count: number) =>
  Array.from({ length: count }, (_, i) => `i-${String(from + i).padStart(17, '0')}`);
const chunk = (path: string, index: number, size = 50): SendChunk => ({
  parameter: '/prod/env.php',
  path,
  index,
  instanceIds: ids(index * 50, size),
});
const pace = { fetchesPerSecond: 40, commandsPerSecond: 10 };
const start = new Date('2026-11-29T12:00:00.000Z');

describe('the pace', () => {
  it('a set of chunks takes its fetches at the fetch rate, or its commands at theirs', () => {
    expect(paceSeconds([chunk('/a', 0), chunk('/a', 1, 30)], pace)).toBe(2);
    expect(paceSeconds([chunk('/a', 0, 1), chunk('/a', 1, 1)], pace)).toBe(0.2);
  });

  it('interleaves files and spaces each chunk by the fetches before it', () => {
    const turns = schedule([chunk('/b', 0), chunk('/b', 1), chunk('/a', 0)], start, pace);
    expect(
      turns.map((t) => [t.chunk.path, t.chunk.index, t.at.getTime() - start.getTime()]),
    ).toEqual([
      ['/a', 0, 0],
      ['/b', 0, 1250],
      ['/b', 1, 2500],
    ]);
  });
});

describe('a large plan in parts', () => {
  const turns = turnsFrom(
    Array.from({ length: 7 }, (_, i) => chunk('/a', i)),
    start,
    pace,
  );
  const unreachable: NewTarget[] = ids(900, 5).map((instanceId) => ({
    instanceId,
    parameter: '/prod/env.php',
    path: '/a',
    status: 'Unreachable',
    reason: 'ConnectionLost',
  }));

  it('cuts whole chunks in turn order, the first part only the planner’s own chunks', () => {
    const parts = splitIntoParts(turns, [], 120, 2);
    expect(parts.map((p) => p.chunks.map((c) => c.index))).toEqual([[0, 1], [2, 3], [4, 5], [6]]);
    expect(parts.map((p) => p.part)).toEqual([0, 1, 2, 3]);
    // Each chunk carries its turn.
    expect(parts[1]?.chunks[0]?.notBefore).toBe(turns[2]?.notBefore);
  });

  it('starts slowly: each part after the first holds at most twice the one before', () => {
    const many = turnsFrom(
      Array.from({ length: 40 }, (_, i) => chunk('/a', i)),
      start,
      pace,
    );
    const parts = splitIntoParts(many, [], 1000, 2);
    expect(parts.map((p) => p.chunks.length * 50)).toEqual([100, 200, 400, 800, 500]);
  });

  it('puts unreachable targets in parts of their own after the chunks', () => {
    const parts = splitIntoParts(turns, unreachable, 150, 2);
    expect(parts.map((p) => [p.chunks.length, p.unreachable.length])).toEqual([
      [2, 0],
      [3, 0],
      [2, 0],
      [0, 5],
    ]);
    // A chunk larger than a part still makes a part alone.
    expect(splitIntoParts(turns.slice(0, 2), [], 10).map((p) => p.chunks.length)).toEqual([1, 1]);
    const small = splitIntoParts([], unreachable, 2);
    expect(small.map((p) => p.unreachable.length)).toEqual([2, 2, 1]);
  });

  it('every chunk and unreachable target is in exactly one part', () => {
    const parts = splitIntoParts(turns, unreachable, 50);
    expect(parts.flatMap((p) => p.chunks.map((c) => c.index))).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(parts.flatMap((p) => p.unreachable)).toEqual(unreachable);
    expect(parts.every((p) => p.chunks.length <= 1)).toBe(true);
  });

  it('closes a part before its item would pass ~300 KB, whatever the count of targets', () => {
    // Names as long as the config allows: a parameter of 1,011 and a path of 4,096 characters.
    const parameter = `/${'p'.repeat(1010)}`;
    const path = `/${'d'.repeat(4095)}`;
    const long = Array.from({ length: 100 }, (_, i) => ({ ...chunk(path, i), parameter }));
    const lost: NewTarget[] = ids(5000, 5000).map((instanceId) => ({
      instanceId,
      parameter,
      path,
      status: 'Unreachable',
      reason: 'NotManagedBySSM',
    }));
    const parts = splitIntoParts(turnsFrom(long, start, pace), lost, 5000);
    const items = partItems('r-1', parts, 0);
    const biggest = Math.max(...items.map((item) => Buffer.byteLength(JSON.stringify(item))));
    expect(biggest).toBeLessThan(400 * 1024);
    expect(parts.flatMap((p) => p.chunks)).toHaveLength(100);
    expect(parts.flatMap((p) => p.unreachable)).toHaveLength(5000);
  });
});
