/**
 * NeverOlder and the version record. Run Command does not order two commands sent to one
 * instance, and the document's lock serialises runs without ordering them, so a staged
 * rollout's pinned command of version 7 can land after one of version 8. Every successful run
 * from a parameter records which version of which parameter the file holds (with a hash of its
 * content) in the root-only state directory; with NeverOlder true, a pinned run older than the
 * recorded version writes nothing and fetches nothing. Executed for real under dash and bash with
 * the fake `aws` (which counts its calls) and `systemctl`.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect } from 'vitest';
import {
  DocumentExitCode,
  parseResultLine,
  UNCHANGED_REASONS,
} from '../../shared/document-contract.ts';
import { classify } from '../../shared/track/outcomes.ts';
import {
  CANARY,
  itInSandbox as it,
  lastLine,
  makeSandbox,
  placeFile,
  type RunOptions,
  type RunResult,
  renderFor,
  runDocument,
  type Sandbox,
  SHELLS,
  snapshot,
} from './harness.ts';

const V6 = `<?php return ['db_password' => 'six-${CANARY}'];\n`;
const V7 = `<?php return ['db_password' => 'seven-${CANARY}'];\n`;
const V8 = `<?php return ['db_password' => 'eight-${CANARY}'];\n`;
const BY_HAND = `<?php return ['db_password' => 'by-hand-${CANARY}'];\n`;

const NEWER_ON_DISK_8 = 'secrets-fanout result=unchanged version=8 reason=newer-on-disk';

/** Versions 6 to 8 of /prod/env.php, 8 the latest. */
function history(box: Sandbox): void {
  box.setParameterVersion(6, V6);
  box.setParameterVersion(7, V7);
  box.setParameter(V8, 8);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Where the document records the version of the sandbox destination. */
function recordPath(box: Sandbox): string {
  return join(box.stateRoot, 'versions', realpathSync(box.dir), '@env.php');
}

function recordOf(box: Sandbox): string | undefined {
  const path = recordPath(box);
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

function pinned(
  version: number,
  neverOlder?: 'true' | 'false',
  extra: Record<string, string> = {},
): RunOptions {
  return {
    parameters: {
      ParameterName: `/prod/env.php:${version}`,
      ...(neverOlder === undefined ? {} : { NeverOlder: neverOlder }),
      ...extra,
    },
  };
}

function expectNoLeak(result: RunResult): void {
  expect(result.stdoutBytes.includes(CANARY)).toBe(false);
  expect(result.stderrBytes.includes(CANARY)).toBe(false);
}

function expectFailure(result: RunResult, code: number, reason: string): void {
  expect(result.status, result.stderr).toBe(code);
  expect(lastLine(result.stdout)).toBe(`secrets-fanout result=failed reason=${reason}`);
  expect(lastLine(result.stderr)).toMatch(/^secrets-fanout: error: /);
  expectNoLeak(result);
}

/** Version 8 written by a staged (NeverOlder) run, as the forward rollout leaves it. */
async function forwardTo8(shell: string, box: Sandbox, extra: Record<string, string> = {}) {
  history(box);
  placeFile(box.dest, V6, 0o400);
  const forward = await runDocument(shell, box, pinned(8, 'true', extra));
  expect(forward.status, forward.stderr).toBe(0);
  expect(lastLine(forward.stdout)).toBe('secrets-fanout result=updated version=8');
  expect(readFileSync(box.dest, 'utf8')).toBe(V8);
}

describe.each(SHELLS)(
  'NeverOlder and the version record under %s',
  { concurrent: true, timeout: 30_000 },
  (shell) => {
    describe('an older pinned run after a newer one', () => {
      it('NeverOlder true: unchanged, nothing fetched, written, backed up or reloaded; reports the version on disk', async ({
        box,
      }) => {
        // Arrange
        await forwardTo8(shell, box, { ReloadService: 'php-fpm' });
        const before = snapshot(box.dest);
        const listing = box.listDir();
        const backup = snapshot(`${box.dest}.bak.1`);
        const record = recordOf(box);
        const fetches = box.awsCalls();
        const reloads = box.systemctlCalls().length;

        // Act: the stage's command of version 7 lands late.
        const late = await runDocument(shell, box, pinned(7, 'true', { ReloadService: 'php-fpm' }));

        // Assert
        expect(late.status, late.stderr).toBe(DocumentExitCode.Success);
        expect(lastLine(late.stdout)).toBe(NEWER_ON_DISK_8);
        expect(late.stdout).toContain(
          'already holds version 8 of /prod/env.php, newer than the pinned version 7',
        );
        expect(snapshot(box.dest)).toEqual(before);
        expect(box.listDir()).toEqual(listing);
        expect(snapshot(`${box.dest}.bak.1`)).toEqual(backup);
        expect(recordOf(box)).toBe(record);
        expect(box.awsCalls()).toBe(fetches);
        expect(box.systemctlCalls()).toHaveLength(reloads);
        expectNoLeak(late);
      });

      it('the service reads it as Unchanged with version 8 written', async ({ box }) => {
        await forwardTo8(shell, box);

        const late = await runDocument(shell, box, pinned(6, 'true'));

        expect(parseResultLine(late.stdout)).toEqual({
          result: 'unchanged',
          version: 8,
          reason: 'newer-on-disk',
        });
        expect(
          classify({ status: 'Success', stdout: late.stdout, stderr: late.stderr }, 'running'),
        ).toEqual({
          kind: 'Unchanged',
          versionWritten: 8,
        });
      });

      it('NeverOlder false: the older version is written (a rollback), the record follows', async ({
        box,
      }) => {
        await forwardTo8(shell, box);
        const fetches = box.awsCalls();

        const back = await runDocument(shell, box, pinned(7, 'false'));

        expect(back.status, back.stderr).toBe(0);
        expect(lastLine(back.stdout)).toBe('secrets-fanout result=updated version=7');
        expect(readFileSync(box.dest, 'utf8')).toBe(V7);
        expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(V8);
        expect(box.awsCalls()).toBe(fetches + 1);
        expect(recordOf(box)).toBe(`/prod/env.php 7 ${sha256(V7)} -\n`);
        expectNoLeak(back);
      });

      it('NeverOlder left out is false: the older version is written', async ({ box }) => {
        await forwardTo8(shell, box);

        const back = await runDocument(shell, box, pinned(6));

        expect(back.status, back.stderr).toBe(0);
        expect(lastLine(back.stdout)).toBe('secrets-fanout result=updated version=6');
        expect(readFileSync(box.dest, 'utf8')).toBe(V6);
      });

      it('an unpinned run is never held back: it fetches and writes the latest', async ({
        box,
      }) => {
        await forwardTo8(shell, box);
        box.setParameter(V7, 9); // version 9 holds what 7 held

        const latest = await runDocument(shell, box, {
          parameters: { ParameterName: '/prod/env.php', NeverOlder: 'true' },
        });

        expect(latest.status, latest.stderr).toBe(0);
        expect(lastLine(latest.stdout)).toBe('secrets-fanout result=updated version=9');
        expect(readFileSync(box.dest, 'utf8')).toBe(V7);
        expect(recordOf(box)).toBe(`/prod/env.php 9 ${sha256(V7)} -\n`);
      });

      it('the same version pinned again goes on as usual and is found unchanged', async ({
        box,
      }) => {
        await forwardTo8(shell, box);
        const before = snapshot(box.dest);
        const fetches = box.awsCalls();

        const again = await runDocument(shell, box, pinned(8, 'true'));

        expect(again.status, again.stderr).toBe(0);
        expect(lastLine(again.stdout)).toBe('secrets-fanout result=unchanged version=8');
        expect(parseResultLine(again.stdout)).toEqual({ result: 'unchanged', version: 8 });
        expect(box.awsCalls()).toBe(fetches + 1);
        expect(snapshot(box.dest)).toEqual(before);
      });

      it('a newer pinned version goes forward as usual', async ({ box }) => {
        history(box);
        await runDocument(shell, box, pinned(7, 'true'));

        const forward = await runDocument(shell, box, pinned(8, 'true'));

        expect(forward.status, forward.stderr).toBe(0);
        expect(lastLine(forward.stdout)).toBe('secrets-fanout result=updated version=8');
        expect(readFileSync(box.dest, 'utf8')).toBe(V8);
      });

      it('two stages racing on one instance always leave the newer version, whichever runs first', async ({
        box,
      }) => {
        history(box);

        for (let round = 0; round < 3; round += 1) {
          const [seven, eight] = await Promise.all([
            runDocument(shell, box, pinned(7, 'true')),
            runDocument(shell, box, pinned(8, 'true')),
          ]);

          expect([seven.status, eight.status]).toEqual([0, 0]);
          expect(readFileSync(box.dest, 'utf8')).toBe(V8);
          expect(recordOf(box)).toBe(`/prod/env.php 8 ${sha256(V8)} -\n`);
          // The first round may run 7 first (then 8 replaces it); once 8 is in, 7 never is.
          const sevenMayWrite = round === 0 ? ['secrets-fanout result=updated version=7'] : [];
          expect([NEWER_ON_DISK_8, ...sevenMayWrite]).toContain(lastLine(seven.stdout));
          expect(lastLine(eight.stdout)).toMatch(
            /^secrets-fanout result=(updated|unchanged) version=8$/,
          );
        }
      });

      it('works the same with an agent that only substitutes {{ }} (no ENV_VAR)', async ({
        box,
      }) => {
        await forwardTo8(shell, box);
        const before = snapshot(box.dest);

        const late = await runDocument(shell, box, { ...pinned(7, 'true'), agent: 'legacy' });

        expect(late.status, late.stderr).toBe(0);
        expect(lastLine(late.stdout)).toBe(NEWER_ON_DISK_8);
        expect(snapshot(box.dest)).toEqual(before);
      });
    });

    describe('a record that no longer describes the file is ignored', () => {
      it('the file edited by hand since: the pinned version is fetched and written', async ({
        box,
      }) => {
        await forwardTo8(shell, box);
        placeFile(box.dest, BY_HAND, 0o400);
        const fetches = box.awsCalls();

        const late = await runDocument(shell, box, pinned(7, 'true'));

        expect(late.status, late.stderr).toBe(0);
        expect(late.stdout).toContain('the record is ignored');
        expect(lastLine(late.stdout)).toBe('secrets-fanout result=updated version=7');
        expect(readFileSync(box.dest, 'utf8')).toBe(V7);
        expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(BY_HAND);
        expect(box.awsCalls()).toBe(fetches + 1);
        expect(recordOf(box)).toBe(`/prod/env.php 7 ${sha256(V7)} -\n`);
        expectNoLeak(late);
      });

      it('the file replaced by another (renamed over it): written', async ({ box }) => {
        await forwardTo8(shell, box);
        const other = join(box.dir, 'other');
        placeFile(other, V6, 0o400);
        renameSync(other, box.dest);

        const late = await runDocument(shell, box, pinned(7, 'true'));

        expect(lastLine(late.stdout)).toBe('secrets-fanout result=updated version=7');
        expect(readFileSync(box.dest, 'utf8')).toBe(V7);
      });

      it('the file removed since: written', async ({ box }) => {
        await forwardTo8(shell, box);
        rmSync(box.dest);

        const late = await runDocument(shell, box, pinned(7, 'true'));

        expect(lastLine(late.stdout)).toBe('secrets-fanout result=updated version=7');
        expect(readFileSync(box.dest, 'utf8')).toBe(V7);
      });

      it('a record of another parameter: written', async ({ box }) => {
        await forwardTo8(shell, box);
        box.setParameterVersion(3, V7);

        const other = await runDocument(shell, box, {
          parameters: { ParameterName: '/prod/other.php:3', NeverOlder: 'true' },
        });

        expect(lastLine(other.stdout)).toBe('secrets-fanout result=updated version=3');
        expect(recordOf(box)).toBe(`/prod/other.php 3 ${sha256(V7)} -\n`);
      });

      it('a record from another Region: written', async ({ box }) => {
        await forwardTo8(shell, box, { Region: 'eu-west-1' });
        expect(recordOf(box)).toBe(`/prod/env.php 8 ${sha256(V8)} eu-west-1\n`);

        const late = await runDocument(shell, box, pinned(7, 'true', { Region: 'us-east-1' }));

        expect(lastLine(late.stdout)).toBe('secrets-fanout result=updated version=7');
        expect(recordOf(box)).toBe(`/prod/env.php 7 ${sha256(V7)} us-east-1\n`);
      });

      it.for([
        ['empty', ''],
        ['cut short', '/prod/env.php 9'],
        ['a leading zero', `/prod/env.php 09 ${sha256(V8)} -\n`],
        ['a short hash', `/prod/env.php 9 ${sha256(V8).slice(1)} -\n`],
        ['an upper-case hash', `/prod/env.php 9 ${sha256(V8).toUpperCase()} -\n`],
      ] as const)(
        'a record in another shape (%s): ignored with a warning, written',
        async ([, text], { box }) => {
          await forwardTo8(shell, box);
          writeFileSync(recordPath(box), text, { mode: 0o600 });

          const late = await runDocument(shell, box, pinned(7, 'true'));

          expect(late.stderr).toContain('ignoring the version record');
          expect(lastLine(late.stdout)).toBe('secrets-fanout result=updated version=7');
        },
      );

      it('a failed reload leaves the record of the restored file, which still holds back older runs', async ({
        box,
      }) => {
        await forwardTo8(shell, box, { ReloadService: 'php-fpm' });
        const record = recordOf(box);
        box.setParameterVersion(9, V6);
        const reloadsSoFar = box.systemctlCalls().length;
        box.setSystemctlStatus(reloadsSoFar + 1, 1);

        const failed = await runDocument(
          shell,
          box,
          pinned(9, 'true', { ReloadService: 'php-fpm' }),
        );
        const late = await runDocument(shell, box, pinned(7, 'true', { ReloadService: 'php-fpm' }));

        expect(failed.status).toBe(DocumentExitCode.ReloadFailedRolledBack);
        expect(recordOf(box)).toBe(record);
        expect(lastLine(late.stdout)).toBe(NEWER_ON_DISK_8);
        expect(readFileSync(box.dest, 'utf8')).toBe(V8);
      });

      it('a failed run leaves the record as it was', async ({ box }) => {
        await forwardTo8(shell, box);
        const record = recordOf(box);
        box.setParameterVersion(9, '');

        const failed = await runDocument(shell, box, pinned(9, 'true'));

        expect(failed.status).toBe(DocumentExitCode.ContentInvalid);
        expect(recordOf(box)).toBe(record);
      });
    });

    describe('the record', () => {
      it('an unpinned run records the version it fetched: one line, 0600 root in 0700 directories', async ({
        box,
      }) => {
        box.setParameter(V8, 8);

        const result = await runDocument(shell, box);

        expect(result.status, result.stderr).toBe(0);
        const path = recordPath(box);
        expect(readFileSync(path, 'utf8')).toBe(`/prod/env.php 8 ${sha256(V8)} -\n`);
        const stat = lstatSync(path);
        expect(stat.isFile()).toBe(true);
        expect(stat.mode & 0o7777).toBe(0o600);
        expect([stat.uid, stat.gid]).toEqual([0, 0]);
        for (
          let directory = dirname(path);
          directory !== box.root;
          directory = dirname(directory)
        ) {
          expect(lstatSync(directory).mode & 0o7777, directory).toBe(0o700);
          expect(lstatSync(directory).uid, directory).toBe(0);
        }
        // Only the record: its temporary file was renamed over it.
        expect(readdirSync(dirname(path))).toEqual(['@env.php']);
        expect(box.listDir()).toEqual(['env.php']);
        expectNoLeak(result);
      });

      it('a pinned run records the pinned version (not the latest)', async ({ box }) => {
        history(box);

        await runDocument(shell, box, pinned(7));

        expect(recordOf(box)).toBe(`/prod/env.php 7 ${sha256(V7)} -\n`);
      });

      it('an unchanged run records too', async ({ box }) => {
        box.setParameter(V8, 8);
        placeFile(box.dest, V8, 0o400);

        const result = await runDocument(shell, box);

        expect(lastLine(result.stdout)).toBe('secrets-fanout result=unchanged version=8');
        expect(recordOf(box)).toBe(`/prod/env.php 8 ${sha256(V8)} -\n`);
      });

      it('is replaced, never written in place: a new inode each run', async ({ box }) => {
        history(box);
        await runDocument(shell, box, pinned(7));
        const first = statSync(recordPath(box)).ino;

        await runDocument(shell, box, pinned(8));

        expect(statSync(recordPath(box)).ino).not.toBe(first);
        expect(readdirSync(dirname(recordPath(box)))).toEqual(['@env.php']);
      });

      it('a temporary record a killed run left behind is removed', async ({ box }) => {
        box.setParameter(V8, 8);
        await runDocument(shell, box);
        const stale = join(dirname(recordPath(box)), '.@env.php.AbCdEf1234');
        writeFileSync(stale, 'half', { mode: 0o600 });

        await runDocument(shell, box);

        expect(readdirSync(dirname(recordPath(box)))).toEqual(['@env.php']);
      });

      it('without sha256sum: works, warns, records nothing, and cannot hold an older run back', async ({
        onTestFinished,
      }) => {
        const box = makeSandbox({ without: ['sha256sum'] });
        onTestFinished(() => box.cleanup());
        history(box);
        await runDocument(shell, box, pinned(8, 'true'));

        const late = await runDocument(shell, box, pinned(7, 'true'));

        expect(late.status, late.stderr).toBe(0);
        expect(late.stderr).toContain('sha256sum not found');
        expect(lastLine(late.stdout)).toBe('secrets-fanout result=updated version=7');
        expect(existsSync(join(box.stateRoot, 'versions'))).toBe(false);
      });

      it('is kept even without flock (the state directory is made for it)', async ({
        onTestFinished,
      }) => {
        const box = makeSandbox({ without: ['flock'] });
        onTestFinished(() => box.cleanup());
        await forwardTo8(shell, box);

        const late = await runDocument(shell, box, pinned(7, 'true'));

        expect(lastLine(late.stdout)).toBe(NEWER_ON_DISK_8);
        expect(statSync(box.stateRoot).mode & 0o7777).toBe(0o700);
      });
    });

    describe('unsafe state is refused (66), the file untouched, nothing fetched', () => {
      const cases: [string, (box: Sandbox, record: string) => void][] = [
        [
          'the versions directory is a symbolic link',
          (box) => {
            mkdirSync(box.stateRoot, { mode: 0o700 });
            mkdirSync(join(box.root, 'elsewhere'));
            symlinkSync(join(box.root, 'elsewhere'), join(box.stateRoot, 'versions'));
          },
        ],
        [
          'a directory on the way is a symbolic link',
          (box, record) => {
            const parent = dirname(dirname(record));
            mkdirSync(dirname(parent), { recursive: true, mode: 0o700 });
            mkdirSync(join(box.root, 'elsewhere'));
            symlinkSync(join(box.root, 'elsewhere'), parent);
          },
        ],
        [
          'a directory on the way belongs to another user',
          (box, record) => {
            mkdirSync(dirname(record), { recursive: true, mode: 0o700 });
            chownSync(join(box.stateRoot, 'versions'), 65534, 65534);
          },
        ],
        [
          'the record directory is group-writable',
          (_box, record) => {
            mkdirSync(dirname(record), { recursive: true, mode: 0o700 });
            chmodSync(dirname(record), 0o770);
          },
        ],
        [
          'the record directory is world-writable',
          (_box, record) => {
            mkdirSync(dirname(record), { recursive: true, mode: 0o700 });
            chmodSync(dirname(record), 0o703);
          },
        ],
        [
          'the record is a symbolic link',
          (box, record) => {
            mkdirSync(dirname(record), { recursive: true, mode: 0o700 });
            writeFileSync(join(box.root, 'planted'), `/prod/env.php 9 ${sha256(V8)} -\n`);
            symlinkSync(join(box.root, 'planted'), record);
          },
        ],
        [
          'the record belongs to another user',
          (_box, record) => {
            mkdirSync(dirname(record), { recursive: true, mode: 0o700 });
            writeFileSync(record, `/prod/env.php 9 ${sha256(V8)} -\n`, { mode: 0o600 });
            chownSync(record, 65534, 65534);
          },
        ],
        [
          'the record is group-writable',
          (_box, record) => {
            mkdirSync(dirname(record), { recursive: true, mode: 0o700 });
            writeFileSync(record, `/prod/env.php 9 ${sha256(V8)} -\n`);
            chmodSync(record, 0o620);
          },
        ],
        [
          'the record has a second hard link',
          (box, record) => {
            mkdirSync(dirname(record), { recursive: true, mode: 0o700 });
            writeFileSync(record, `/prod/env.php 9 ${sha256(V8)} -\n`, { mode: 0o600 });
            linkSync(record, join(box.stateRoot, 'second-name'));
          },
        ],
        [
          'the record is a directory',
          (_box, record) => {
            mkdirSync(record, { recursive: true, mode: 0o700 });
          },
        ],
      ];

      it.for(cases)('%s', async ([, plant], { box }) => {
        // Arrange
        history(box);
        placeFile(box.dest, V6, 0o400);
        const before = snapshot(box.dest);
        plant(box, recordPath(box));

        // Act
        const result = await runDocument(shell, box, pinned(7, 'true'));

        // Assert
        expectFailure(result, DocumentExitCode.DestinationUnusable, 'destination-unusable');
        expect(parseResultLine(result.stdout)).toEqual({
          result: 'failed',
          reason: 'destination-unusable',
        });
        expect(snapshot(box.dest)).toEqual(before);
        expect(box.listDir()).toEqual(['env.php']);
        expect(box.awsCalls()).toBe(0);
        const elsewhere = join(box.root, 'elsewhere');
        if (existsSync(elsewhere)) expect(readdirSync(elsewhere)).toEqual([]);
      });

      it('refused for an unpinned run too: the record could not be kept', async ({ box }) => {
        box.setParameter(V8, 8);
        placeFile(box.dest, V6, 0o400);
        const before = snapshot(box.dest);
        mkdirSync(dirname(recordPath(box)), { recursive: true, mode: 0o700 });
        symlinkSync(join(box.root, 'nowhere'), recordPath(box));

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.DestinationUnusable, 'destination-unusable');
        expect(snapshot(box.dest)).toEqual(before);
        expect(existsSync(join(box.root, 'nowhere'))).toBe(false);
      });
    });

    describe('secrets and paths', () => {
      it.for([
        ['secret', { SourceType: 'secret', ParameterName: 'prod/db' }],
        [
          'parametersByPath',
          { SourceType: 'parametersByPath', ParameterName: '/prod/app/', Format: 'dotenv' },
        ],
      ] as const)(
        'NeverOlder true is refused for a %s (64), nothing fetched',
        async ([, source], { box }) => {
          placeFile(box.dest, V6, 0o400);
          const before = snapshot(box.dest);

          const result = await runDocument(shell, box, {
            parameters: { ...source, NeverOlder: 'true' },
          });

          expectFailure(result, DocumentExitCode.BadArguments, 'bad-arguments');
          expect(result.stderr).toContain('NeverOlder true applies only to a parameter');
          expect(snapshot(box.dest)).toEqual(before);
          expect(box.awsCalls()).toBe(0);
        },
      );

      it('a secret records nothing (NeverOlder false is accepted)', async ({ box }) => {
        box.setParameter('{"password":"s3cr3t-for-tests"}', 7);

        const result = await runDocument(shell, box, {
          parameters: { SourceType: 'secret', ParameterName: 'prod/db', NeverOlder: 'false' },
        });

        expect(result.status, result.stderr).toBe(0);
        expect(existsSync(join(box.stateRoot, 'versions'))).toBe(false);
      });

      it('a path records nothing', async ({ box }) => {
        writeFileSync(
          join(box.state, 'by-path.json'),
          `${JSON.stringify([['/prod/app/DB_PASSWORD', CANARY]], null, 4)}\n`,
        );

        const result = await runDocument(shell, box, {
          parameters: {
            SourceType: 'parametersByPath',
            ParameterName: '/prod/app/',
            Format: 'dotenv',
          },
        });

        expect(result.status, result.stderr).toBe(0);
        expect(existsSync(join(box.stateRoot, 'versions'))).toBe(false);
      });
    });

    it('refuses a NeverOlder outside true/false when SendCommand validation is bypassed (64)', async ({
      box,
    }) => {
      history(box);

      const result = await runDocument(shell, box, {
        ...pinned(7),
        rawEnv: { SSM_NeverOlder: 'yes' },
      });

      expectFailure(result, DocumentExitCode.BadArguments, 'bad-arguments');
      expect(box.awsCalls()).toBe(0);
    });
  },
);

describe('the newer-on-disk result line and the contract', () => {
  it('every unchanged reason the script prints is one the contract lists', () => {
    const script = renderFor({
      ParameterName: '/prod/env.php',
      DestinationPath: '/var/www/html/env.php',
    }).script;
    const printed = [...script.matchAll(/result=unchanged%s reason=([a-z-]+)/g)].map(
      (match) => match[1],
    );

    expect(printed.length).toBeGreaterThan(0);
    for (const reason of printed) expect(UNCHANGED_REASONS).toContain(reason);
  });

  it('parses the reason, and an unknown one is still an unchanged file', () => {
    expect(parseResultLine(`noise\n${NEWER_ON_DISK_8}\n`)).toEqual({
      result: 'unchanged',
      version: 8,
      reason: 'newer-on-disk',
    });
    expect(
      parseResultLine('secrets-fanout result=unchanged version=8 reason=later-idea\n'),
    ).toEqual({ result: 'unchanged', version: 8 });
    expect(
      parseResultLine('secrets-fanout result=updated version=8 reason=newer-on-disk\n'),
    ).toEqual({
      result: 'updated',
      version: 8,
    });
  });
});
