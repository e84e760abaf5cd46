/**
 * `npm start` as a user runs it (issue 13 item 1): on a terminal (a pseudo-terminal from
 * util-linux `script`), the live view drawn in place; with stdout a pipe, plain timestamped
 * lines. Both play the whole demo on the already packaged service (clock ×100) and stop
 * cleanly on Ctrl-C / SIGTERM.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import xterm from '@xterm/headless';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ADMIN_ARN } from '../local-cloud/cloud.ts';
import { STORY_OVER } from '../local-cloud/console/session.ts';
import { DEMO_INSTANCES, DEMO_STORY } from '../local-cloud/demo.ts';
import { repoRoot } from '../support/package.ts';

const SECRETS = ['demo-dev-password', 'demo-staging-password', 'demo-prod-password', 'demo-token'];

interface Started {
  child: ChildProcess;
  output: () => string;
  /** Resolves when the output satisfies `done`; rejects after `timeoutMs` with the output. */
  until(done: (output: string) => boolean, timeoutMs: number, what: string): Promise<string>;
  exited: Promise<number | null>;
}

const dirs: string[] = [];

function start(file: string, args: string[]): Started & { infoFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'npm-start-'));
  dirs.push(dir);
  const infoFile = join(dir, 'endpoints.json');
  const child = spawn(file, args, {
    cwd: repoRoot,
    env: {
      ...process.env,
      SECRETS_FANOUT_PACKAGED_DIR: inject('demoPackagedDir'),
      LOCAL_CLOUD_CLOCK_SCALE: '100',
      LOCAL_CLOUD_INFO: infoFile,
      // No pause for a reader between the steps: the test waits on the screen, not the clock.
      SECRETS_FANOUT_DEMO_PAUSE_MS: '0',
      TERM: 'xterm-256color',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    for (const check of waiters) check();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    infoFile,
    output: () => output,
    exited,
    until: (done, timeoutMs, what) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (!done(output)) return;
          cleanup();
          resolve(output);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`npm start: no ${what} within ${timeoutMs} ms; output:\n${output}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        void exited.then(() => {
          if (waiters.has(check)) {
            cleanup();
            reject(new Error(`npm start exited before ${what}; output:\n${output}`));
          }
        });
        check();
      }),
  };
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * What a terminal of `cols` × `rows` shows after `raw`: every row of its buffer (scrollback
 * included), as text. log-update rewrites only the lines that changed, so the screen is only
 * known by playing the escape sequences as a terminal does (@xterm/headless).
 */
async function terminalText(raw: string, cols: number, rows: number): Promise<string[]> {
  const term = new xterm.Terminal({ cols, rows, scrollback: 10_000, allowProposedApi: true });
  await new Promise<void>((resolve) => term.write(raw, resolve));
  const buffer = term.buffer.active;
  const lines: string[] = [];
  for (let y = 0; y < buffer.length; y++)
    lines.push(buffer.getLine(y)?.translateToString(true) ?? '');
  term.dispose();
  return lines;
}

describe('npm start', () => {
  it('on a terminal: draws the live view in place, labels each step, stops on Ctrl-C', async () => {
    // Arrange: `script` gives npm start a pseudo-terminal of 50 rows × 150 columns.
    expect(execFileSync('sh', ['-c', 'command -v script']).toString()).toMatch(/script/);
    const run = start('script', ['-qfec', 'stty rows 50 cols 150; exec npm start', '/dev/null']);
    try {
      // Act: the whole demo
      const raw = await run.until(
        (out) => stripVTControlCharacters(out).includes(`Demo: ${STORY_OVER}`),
        100_000,
        'end of the demo on screen',
      );
      // Assert: the screen, as a terminal shows it once the frame that said so is complete
      // (a pseudo-terminal may hand a frame over in several reads: wait for the next ones).
      const lastFrame = async (output: string) => {
        const buffer = await terminalText(output, 150, 50);
        return buffer
          .slice(
            buffer.findLastIndex((row) =>
              row.startsWith('secrets-fanout on the local cloud (clock'),
            ),
          )
          .join('\n');
      };
      let seen = raw;
      let screen = await lastFrame(seen);
      for (let reads = 0; reads < 50 && !screen.includes('Unchanged everywhere'); reads++) {
        const before = seen.length;
        seen = await run.until((out) => out.length > before, 30_000, 'the rest of the frame');
        screen = await lastFrame(seen);
      }
      expect(screen).toContain(`Demo: ${STORY_OVER}`);
      expect(screen).toMatch(/Rollouts \(0 in flight, \d+ settled\)/);
      const rows = screen.split('\n');
      const newest = rows.findIndex((row) => row.startsWith('Rollouts (')) + 1;
      expect(rows[newest]).toContain(`/dev/env.php v1 → dev  (resync by ${ADMIN_ARN})`);
      expect(rows[newest + 1]).toMatch(
        /^ {4}\[={20}\] 2 unchanged of 2 {2}Unchanged everywhere \(already current\)$/,
      );
      expect(screen).toContain('(bootstrap of i-');
      expect(screen).toContain('/prod/env.php v1 → prod  (parameter change)');
      expect(screen).toMatch(/\[#+\?+\] 2 updated, 1 unreachable of 3 {2}settled with problems/);
      expect(screen).toContain('Alerts (2)');
      expect(screen).toContain('secrets-fanout: prod /prod/env.php v1: 0 failed, 1 unreachable');
      expect(screen).toContain('secrets-fanout: staging /staging/app/secrets.env v2: 2 failed');
      expect(screen).toContain('Instances of dev');
      for (const id of [DEMO_INSTANCES.devA, DEMO_INSTANCES.devB])
        expect(screen).toMatch(new RegExp(`${id} .*running .*/var/www/html/env\\.php v1`));
      expect(screen).not.toContain(DEMO_INSTANCES.prodA);
      for (const row of rows) expect(row.length).toBeLessThan(150);
      // … redrawn in place: each step's label was on screen, in frames erased one after another
      const text = stripVTControlCharacters(raw);
      for (const [index, step] of DEMO_STORY.entries())
        expect(text).toContain(`Demo step ${index + 1}/${DEMO_STORY.length}: ${step.title}`);
      // The rollouts header was drawn many times, yet the terminal holds it once: in place.
      expect(text.split('Rollouts (').length - 1).toBeGreaterThan(5);
      const buffer = await terminalText(seen, 150, 50);
      expect(buffer.filter((row) => row.startsWith('Rollouts ('))).toHaveLength(1);
      expect(buffer.filter((row) => row.startsWith('Alerts ('))).toHaveLength(1);
      expect(text).not.toMatch(/^\d\d:\d\d:\d\d {2}rollout /m);
      for (const secret of SECRETS) expect(raw).not.toContain(secret);
      expect(existsSync(run.infoFile)).toBe(true);

      // Act: Ctrl-C, typed on the terminal
      run.child.stdin?.write('\u0003');
      // Assert: a clean stop. The terminal sends SIGINT to npm too, which then exits 130
      // (128 + SIGINT) as shells report an interrupted command; the service says it stopped.
      expect(await run.exited).toBe(130);
      expect(stripVTControlCharacters(run.output())).toMatch(
        /Stopping the local cloud …\s+Stopped\./,
      );
      expect(existsSync(run.infoFile)).toBe(false);
    } finally {
      run.child.kill('SIGKILL');
    }
  }, 150_000);

  it('with stdout a pipe: one timestamped line per event, stops on SIGTERM', async () => {
    const run = start('npm', ['start']);
    try {
      const out = await run.until(
        (text) => text.includes(`demo: ${STORY_OVER}`),
        100_000,
        'end of the demo',
      );
      expect(out).not.toContain('\u001b');
      const lines = out.slice(out.indexOf('Ctrl-C stops everything.')).split('\n').slice(1);
      const events = lines.filter((line) => line.trim() !== '');
      for (const line of events) expect(line).toMatch(/^\d\d:\d\d:\d\d {2}/);
      const text = events.map((line) => line.slice(10));
      expect(text[0]).toBe(`demo step 1/${DEMO_STORY.length}: ${DEMO_STORY[0]?.title}`);
      expect(text).toContainEqual(
        expect.stringMatching(
          /^rollout \S+ started \(parameter change\): \/dev\/env\.php v1 → dev, 2 targets$/,
        ),
      );
      expect(text).toContainEqual(
        expect.stringMatching(
          /^rollout \S+ settled: Success everywhere: 2 updated of 2 \(\/dev\/env\.php v1 → dev\)$/,
        ),
      );
      expect(text).toContainEqual(expect.stringMatching(/^rollout \S+ started \(bootstrap of i-/));
      expect(text).toContainEqual(
        expect.stringMatching(new RegExp(`^rollout \\S+ started \\(resync by ${ADMIN_ARN}\\)`)),
      );
      expect(text.filter((line) => line.startsWith('ALERT secrets-fanout: '))).toHaveLength(2);
      expect(text.at(-1)).toBe(`demo: ${STORY_OVER}`);
      for (const secret of SECRETS) expect(out).not.toContain(secret);

      // SIGTERM to the service's process (its pid is in endpoints.json), as `kill` would send.
      const { pid } = JSON.parse(readFileSync(run.infoFile, 'utf8')) as { pid: number };
      expect(pid).not.toBe(run.child.pid);
      process.kill(pid, 'SIGTERM');
      expect(await run.exited).toBe(0);
      expect(run.output()).toMatch(/Stopping the local cloud …\nStopped\.\n$/);
      expect(existsSync(run.infoFile)).toBe(false);
    } finally {
      run.child.kill('SIGKILL');
    }
  }, 150_000);
});
