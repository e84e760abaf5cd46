/** The benchmark's result table: one row per goal, `goal | measured | ratio | pass`. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface Row {
  /** The goal as the issue states it, with its N and conditions. */
  goal: string;
  /** What was measured, in words and units. */
  measured: string;
  /** measured / allowed (≤ 1 passes), when the goal is a bound; undefined otherwise. */
  ratio?: number;
  pass: boolean | 'info';
  /** A call-count goal: the only kind CI fails on. */
  callCount?: boolean;
  note?: string;
}

export function bound(
  goal: string,
  measuredValue: number,
  allowed: number,
  unit: string,
  extra: Partial<Row> = {},
): Row {
  const ratio =
    allowed === 0 ? (measuredValue === 0 ? 0 : Number.POSITIVE_INFINITY) : measuredValue / allowed;
  return {
    goal,
    measured: `${round(measuredValue)} ${unit} (allowed ${round(allowed)})`,
    ratio,
    pass: measuredValue <= allowed,
    ...extra,
  };
}

export function exact(goal: string, measured: number, expected: number, unit: string): Row {
  return {
    goal,
    measured: `${measured} ${unit} (expected ${expected})`,
    ratio: expected === 0 ? undefined : measured / expected,
    pass: measured === expected,
    callCount: true,
  };
}

export function info(goal: string, measured: string, note?: string): Row {
  return { goal, measured, pass: 'info', ...(note === undefined ? {} : { note }) };
}

export function round(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function printTable(rows: Row[]): void {
  const cells = rows.map((row) => [
    row.goal,
    row.measured,
    row.ratio === undefined ? '' : round(row.ratio),
    row.pass === 'info' ? 'info' : row.pass ? 'PASS' : 'FAIL',
  ]);
  const header = ['goal', 'measured', 'ratio', 'pass'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i] as number)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const c of cells) console.log(line(c));
  for (const row of rows.filter((r) => r.note)) console.log(`  note (${row.goal}): ${row.note}`);
}

export function writeJson(path: string, data: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
}
