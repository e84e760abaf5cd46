/**
 * Executes the real ReplaceSecretsFile script under dash and bash against temp directories, with
 * a fake `aws` and `systemctl` (real `timeout`, `flock` and coreutils).
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect } from 'vitest';
import { DocumentExitCode, parseResultLine } from '../../shared/document-contract.ts';
import {
  CANARY,
  idOf,
  itInSandbox as it,
  lastLine,
  makeSandbox,
  placeFile,
  type RunResult,
  runDocument,
  type Sandbox,
  SHELLS,
  snapshot,
  type Tool,
} from './harness.ts';

const OLD = `<?php return ['db_password' => 'old-${CANARY}'];\n`;
const NEW = `<?php return ['db_password' => 'new-${CANARY}'];\n`;

/** A sandbox whose PATH lacks some tools; removed when the test ends. */
function sandboxWithout(tools: Tool[], onTestFinished: (fn: () => void) => void): Sandbox {
  const box = makeSandbox({ without: tools });
  onTestFinished(() => box.cleanup());
  return box;
}

/** Puts OLD in place as a previous run would have left it (0400 root:root) and snapshots it. */
function installOld(box: Sandbox): ReturnType<typeof snapshot> {
  placeFile(box.dest, OLD, 0o400);
  return snapshot(box.dest);
}

function expectNoLeak(result: RunResult): void {
  expect(result.stdoutBytes.includes(CANARY)).toBe(false);
  expect(result.stderrBytes.includes(CANARY)).toBe(false);
}

function expectFailure(result: RunResult, code: number, reason: string): void {
  expect(result.status).toBe(code);
  expect(parseResultLine(result.stdout)).toMatchObject({ result: 'failed', reason });
  expect(lastLine(result.stdout)).toMatch(/^secrets-fanout result=failed reason=/);
  expect(lastLine(result.stderr)).toMatch(/^secrets-fanout: error: /);
  expectNoLeak(result);
}

/** The live file is byte-for-byte, inode and mtime what it was, and no temp file is left. */
function expectUntouched(box: Sandbox, before: ReturnType<typeof snapshot>): void {
  expect(snapshot(box.dest)).toEqual(before);
  expect(box.listDir()).toEqual(['env.php']);
}

// Each test runs the script one to three times; on a loaded two-core runner that can exceed the
// default 5 s, so the budget is explicit whatever config runs this file.
describe.each(SHELLS)(
  'ReplaceSecretsFile under %s',
  { concurrent: true, timeout: 30_000 },
  (shell) => {
    describe('happy path', () => {
      it('writes the value exactly, 0400 root:root by default, and reports the version', async ({
        box,
      }) => {
        // Arrange
        box.setParameter(NEW, 7);

        // Act
        const result = await runDocument(shell, box);

        // Assert
        expect(result.status).toBe(DocumentExitCode.Success);
        expect(readFileSync(box.dest)).toEqual(Buffer.from(NEW));
        const stat = statSync(box.dest);
        expect(stat.mode & 0o7777).toBe(0o400);
        expect(stat.uid).toBe(0);
        expect(stat.gid).toBe(0);
        expect(lastLine(result.stdout)).toBe('secrets-fanout result=updated version=7');
        expect(parseResultLine(result.stdout)).toEqual({ result: 'updated', version: 7 });
        expect(box.listDir()).toEqual(['env.php']);
        expectNoLeak(result);
      });

      it('sets the requested owner, group and mode', async ({ box }) => {
        const uid = idOf('/etc/passwd', 'daemon');
        const gid = idOf('/etc/group', 'daemon');
        expect(uid).toBeDefined();
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box, {
          parameters: { FileOwner: 'daemon', FileGroup: 'daemon', FileMode: '0440' },
        });

        expect(result.status).toBe(0);
        const stat = statSync(box.dest);
        expect(stat.uid).toBe(uid);
        expect(stat.gid).toBe(gid);
        expect(stat.mode & 0o7777).toBe(0o440);
      });

      it('calls get-parameter once: decrypted, version and value in one text query, no pager', async ({
        box,
      }) => {
        box.setParameter(NEW, 7);

        await runDocument(shell, box);

        expect(box.awsArgv()).toEqual([
          'ssm',
          'get-parameter',
          '--name',
          '/prod/env.php',
          '--with-decryption',
          '--query',
          'Parameter.[Version,Value]',
          '--output',
          'text',
        ]);
        expect(box.awsEnv()).toMatchObject({ AWS_PAGER: '', AWS_CLI_AUTO_PROMPT: 'off' });
        // throttled fetches are retried by the CLI itself, with backoff and jitter
        expect(box.awsEnv()).toMatchObject({ AWS_RETRY_MODE: 'standard', AWS_MAX_ATTEMPTS: '6' });
        expect(box.awsCalls()).toBe(1);
      });

      it('adds --region only when Region is set', async ({ box }) => {
        box.setParameter(NEW, 7);

        await runDocument(shell, box, { parameters: { Region: 'eu-west-1' } });

        expect(box.awsArgv().slice(-2)).toEqual(['--region', 'eu-west-1']);
      });

      it("falls back to the agent's region for AWS CLI v1 when nothing else sets one", async ({
        box,
      }) => {
        box.setParameter(NEW, 7);

        await runDocument(shell, box, { env: { AWS_SSM_REGION_NAME: 'eu-central-1' } });

        expect(box.awsArgv()).not.toContain('--region');
        expect(box.awsEnv().AWS_DEFAULT_REGION).toBe('eu-central-1');
      });

      it('replaces the previous version atomically (new inode) and keeps a root-only copy as .bak.1', async ({
        box,
      }) => {
        const before = installOld(box);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box);

        expect(result.status).toBe(0);
        expect(statSync(box.dest).ino).not.toBe(before.ino);
        expect(readFileSync(box.dest, 'utf8')).toBe(NEW);
        expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(OLD);
        // A copy, never the replaced inode itself: another name for that inode keeps its owner.
        expect(statSync(`${box.dest}.bak.1`).ino).not.toBe(before.ino);
        expect(box.listDir()).toEqual(['env.php', 'env.php.bak.1']);
      });

      it('works the same when the agent only substitutes {{ }} (before 3.3.2746.0)', async ({
        box,
      }) => {
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box, {
          agent: 'legacy',
          parameters: { FileMode: '0440', Backups: '0', Format: 'raw' },
        });

        expect(result.status).toBe(0);
        expect(readFileSync(box.dest, 'utf8')).toBe(NEW);
        expect(statSync(box.dest).mode & 0o7777).toBe(0o440);
      });

      it('removes temp files a killed run left behind', async ({ box }) => {
        for (const suffix of ['fetch', 'new', 'prev', 'err']) {
          writeFileSync(join(box.dir, `.env.php.secrets-fanout.4242.${suffix}`), 'stale');
        }
        // What earlier versions of the document kept beside the file: their lock.
        writeFileSync(join(box.dir, '.env.php.secrets-fanout.lock'), '');
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box);

        expect(result.status).toBe(0);
        expect(box.listDir()).toEqual(['env.php']);
      });
    });

    describe('unchanged content', () => {
      it('rewrites nothing and reloads nothing', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(OLD, 8);

        const result = await runDocument(shell, box, { parameters: { ReloadService: 'php-fpm' } });

        expect(result.status).toBe(0);
        expect(lastLine(result.stdout)).toBe('secrets-fanout result=unchanged version=8');
        expectUntouched(box, before);
        expect(box.systemctlCalls()).toEqual([]);
      });

      it('repairs owner and mode in place when they drifted', async ({ box }) => {
        installOld(box);
        chmodSync(box.dest, 0o644);
        const before = snapshot(box.dest);
        box.setParameter(OLD, 6);

        const result = await runDocument(shell, box, { parameters: { ReloadService: 'php-fpm' } });

        expect(result.status).toBe(0);
        expect(parseResultLine(result.stdout)).toEqual({ result: 'unchanged', version: 6 });
        const after = snapshot(box.dest);
        expect(after.mode).toBe(0o400);
        expect(after.ino).toBe(before.ino);
        expect(after.mtimeMs).toBe(before.mtimeMs);
        expect(after.content).toEqual(before.content);
        expect(result.stdout).toContain('owner and mode set');
        expect(box.systemctlCalls()).toEqual([]);
        expect(box.listDir()).toEqual(['env.php']);
      });
    });

    describe('backups', () => {
      it('keeps the N newest previous versions, rotated, with a restrictive mode', async ({
        box,
      }) => {
        // Arrange: what two earlier runs with Backups=2 left (a group-readable live file).
        placeFile(box.dest, `v3-${CANARY}\n`, 0o440);
        placeFile(`${box.dest}.bak.1`, `v2-${CANARY}\n`, 0o400);
        placeFile(`${box.dest}.bak.2`, `v1-${CANARY}\n`, 0o400);

        // Act: two more versions
        for (const version of [4, 5]) {
          box.setParameter(`v${version}-${CANARY}\n`, version);
          const result = await runDocument(shell, box, {
            parameters: { Backups: '2', FileMode: '0440' },
          });
          expect(result.status).toBe(0);
        }

        // Assert
        expect(readFileSync(box.dest, 'utf8')).toBe(`v5-${CANARY}\n`);
        expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(`v4-${CANARY}\n`);
        expect(readFileSync(`${box.dest}.bak.2`, 'utf8')).toBe(`v3-${CANARY}\n`);
        expect(statSync(box.dest).mode & 0o7777).toBe(0o440);
        expect(statSync(`${box.dest}.bak.1`).mode & 0o7777).toBe(0o400);
        expect(statSync(`${box.dest}.bak.2`).mode & 0o7777).toBe(0o400);
        expect(box.listDir()).toEqual(['env.php', 'env.php.bak.1', 'env.php.bak.2']);
      });

      it('are root-only, so a web server running as the file owner cannot serve them', async ({
        box,
      }) => {
        const uid = idOf('/etc/passwd', 'daemon');
        placeFile(box.dest, OLD, 0o440);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box, {
          parameters: { FileOwner: 'daemon', FileGroup: 'daemon', FileMode: '0440' },
        });

        expect(result.status).toBe(0);
        expect(statSync(box.dest)).toMatchObject({ uid });
        const backup = statSync(`${box.dest}.bak.1`);
        expect([backup.uid, backup.gid, backup.mode & 0o7777]).toEqual([0, 0, 0o400]);
      });

      it('starts the chain from nothing', async ({ box }) => {
        for (const version of [1, 2]) {
          box.setParameter(`v${version}\n`, version);
          await runDocument(shell, box, { parameters: { Backups: '2' } });
        }

        expect(box.listDir()).toEqual(['env.php', 'env.php.bak.1']);
        expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe('v1\n');
      });

      it('prunes backups beyond a lowered Backups', async ({ box }) => {
        placeFile(box.dest, 'v4\n', 0o400);
        for (const index of [1, 2, 3])
          placeFile(`${box.dest}.bak.${index}`, `v${4 - index}\n`, 0o400);
        box.setParameter('v5\n', 5);

        const result = await runDocument(shell, box, { parameters: { Backups: '1' } });

        expect(result.status).toBe(0);
        expect(box.listDir()).toEqual(['env.php', 'env.php.bak.1']);
        expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe('v4\n');
      });

      it('keeps none with Backups=0', async ({ box }) => {
        installOld(box);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box, { parameters: { Backups: '0' } });

        expect(result.status).toBe(0);
        expect(readFileSync(box.dest, 'utf8')).toBe(NEW);
        expect(box.listDir()).toEqual(['env.php']);
      });
    });

    describe('failures leave the live file byte-for-byte as it was', () => {
      it('fetch fails (retryable)', async ({ box }) => {
        const before = installOld(box);
        box.setAwsMode('fail');

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.FetchFailed, 'fetch-failed');
        expect(lastLine(result.stderr)).toContain('AccessDeniedException');
        expectUntouched(box, before);
      });

      it('the parameter does not exist (permanent: retrying cannot help)', async ({ box }) => {
        const before = installOld(box);
        box.setAwsMode('not-found');

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.ParameterNotFound, 'parameter-not-found');
        expect(lastLine(result.stderr)).toContain('does not exist in Parameter Store');
        expectUntouched(box, before);
      });

      it('fetch hangs past the timeout', async ({ box }) => {
        const before = installOld(box);
        box.setAwsMode('hang');
        const started = Date.now();

        const result = await runDocument(shell, box, {
          env: { SECRETS_FANOUT_FETCH_TIMEOUT: '1' },
        });

        expect(Date.now() - started).toBeLessThan(8_000);
        expectFailure(result, DocumentExitCode.FetchFailed, 'fetch-timeout');
        expectUntouched(box, before);
      });

      it('fetch prints nothing', async ({ box }) => {
        const before = installOld(box);
        box.setAwsMode('empty');

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.FetchFailed, 'fetch-failed');
        expectUntouched(box, before);
      });

      it('fetch prints something that is not version<TAB>value', async ({ box }) => {
        const before = installOld(box);
        box.setAwsMode('garbage');

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.FetchFailed, 'fetch-failed');
        expectUntouched(box, before);
      });

      it('fetch output lacks the final newline the CLI always prints', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(`no-newline-${CANARY}`, 7);
        box.setAwsMode('truncated');

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.FetchFailed, 'fetch-failed');
        expectUntouched(box, before);
      });

      it('invalid dotenv: names the line number, never its content', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(`# comment\nexport GOOD=1\n\nnot a pair ${CANARY}\nOK=2\n`, 9);

        const result = await runDocument(shell, box, { parameters: { Format: 'dotenv' } });

        expectFailure(result, DocumentExitCode.ContentInvalid, 'content-invalid');
        expect(lastLine(result.stderr)).toContain('line 4 ');
        expect(parseResultLine(result.stdout)).toEqual({
          result: 'failed',
          reason: 'content-invalid',
          version: 9,
        });
        expectUntouched(box, before);
      });

      it('valid dotenv passes (export, comments, blank and CRLF lines)', async ({ box }) => {
        const value = `# c\n\nexport A=1\r\nB="two words"\n  C=${CANARY}\n\t# indented comment\n`;
        box.setParameter(value, 9);

        const result = await runDocument(shell, box, { parameters: { Format: 'dotenv' } });

        expect(result.status).toBe(0);
        expect(readFileSync(box.dest, 'utf8')).toBe(value);
      });

      it('invalid json, checked with jq', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(`{"password": "${CANARY}",\n "broken": }\n`, 9);

        const result = await runDocument(shell, box, { parameters: { Format: 'json' } });

        expectFailure(result, DocumentExitCode.ContentInvalid, 'content-invalid');
        expect(lastLine(result.stderr)).toMatch(/not a single valid JSON document at line 2/);
        expectUntouched(box, before);
      });

      it('two JSON documents in one value are refused', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(`{"a": "${CANARY}"}\n{"b": 2}\n`, 9);

        const result = await runDocument(shell, box, { parameters: { Format: 'json' } });

        expectFailure(result, DocumentExitCode.ContentInvalid, 'content-invalid');
        expectUntouched(box, before);
      });

      it('empty value', async ({ box }) => {
        const before = installOld(box);
        box.setParameter('', 9);

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.ContentInvalid, 'content-invalid');
        expectUntouched(box, before);
      });

      it('destination directory missing: nothing fetched', async ({ box }) => {
        const before = installOld(box);

        const result = await runDocument(shell, box, {
          parameters: { DestinationPath: join(box.root, 'missing', 'env.php') },
        });

        expectFailure(result, DocumentExitCode.DestinationUnusable, 'destination-unusable');
        expect(existsSync(join(box.root, 'missing'))).toBe(false);
        expect(box.awsCalls()).toBe(0);
        expectUntouched(box, before);
      });

      it('destination is a symbolic link', async ({ box }) => {
        const before = installOld(box);
        const link = join(box.dir, 'link.php');
        symlinkSync(box.dest, link);

        const result = await runDocument(shell, box, { parameters: { DestinationPath: link } });

        expectFailure(result, DocumentExitCode.DestinationUnusable, 'destination-unusable');
        expect(box.listDir()).toEqual(['env.php', 'link.php']);
        expect(snapshot(box.dest)).toEqual(before);
      });

      it('directory writable by every user and not sticky: refused, nothing fetched', async ({
        box,
      }) => {
        const before = installOld(box);
        chmodSync(box.dir, 0o777);

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.DestinationUnusable, 'destination-unusable');
        expect(lastLine(result.stderr)).toMatch(/writable by every user and not sticky/);
        expect(box.awsCalls()).toBe(0);
        expectUntouched(box, before);
      });

      it('a world-writable sticky directory (like /tmp) is accepted', async ({ box }) => {
        chmodSync(box.dir, 0o1777);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box);

        expect(result.status).toBe(0);
        expect(readFileSync(box.dest, 'utf8')).toBe(NEW);
      });

      it('the state directory is a symbolic link: refused, nothing created where it points', async ({
        box,
      }) => {
        const before = installOld(box);
        const elsewhere = join(box.root, 'elsewhere');
        mkdirSync(elsewhere);
        symlinkSync(elsewhere, box.stateRoot);

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.DestinationUnusable, 'destination-unusable');
        expect(readdirSync(elsewhere)).toEqual([]);
        expectUntouched(box, before);
      });

      it('the state directory belongs to another user: refused', async ({ box }) => {
        const before = installOld(box);
        mkdirSync(box.stateRoot, { mode: 0o700 });
        chownSync(box.stateRoot, 65534, 65534);

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.DestinationUnusable, 'destination-unusable');
        expect(readdirSync(box.stateRoot)).toEqual([]);
        expectUntouched(box, before);
      });

      it('keeps the lock in a 0700 state directory, never beside the file', async ({ box }) => {
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box);

        expect(result.status).toBe(0);
        expect(existsSync(box.lockPath())).toBe(true);
        expect(statSync(box.stateRoot).mode & 0o7777).toBe(0o700);
        expect(box.listDir()).toEqual(['env.php']);
      });

      it('owner does not exist (write failed)', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box, { parameters: { FileOwner: 'nosuchuser' } });

        expectFailure(result, DocumentExitCode.WriteFailed, 'write-failed');
        expectUntouched(box, before);
      });

      it('another run holds the lock for too long', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(NEW, 7);
        const lock = box.lockPath();
        mkdirSync(dirname(lock), { recursive: true });
        const holder = spawn('flock', [lock, 'sleep', '10'], { stdio: 'ignore' });
        try {
          await waitFor(() => lockIsHeld(lock));

          const result = await runDocument(shell, box, { env: { SECRETS_FANOUT_LOCK_WAIT: '1' } });

          expectFailure(result, DocumentExitCode.LockBusy, 'lock-busy');
          expectUntouched(box, before);
          expect(box.awsCalls()).toBe(0);
        } finally {
          holder.kill('SIGKILL');
        }
      });
    });

    describe('reload', () => {
      it('reloads the unit after the swap, with the new file in place', async ({ box }) => {
        installOld(box);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box, { parameters: { ReloadService: 'php-fpm' } });

        expect(result.status).toBe(0);
        expect(box.systemctlCalls()).toEqual(['reload-or-try-restart php-fpm']);
        expect(box.systemctlSeen(1)?.toString()).toBe(NEW);
        expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(OLD);
        expectNoLeak(result);
      });

      it('restores the previous file and reloads again when the reload fails', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(NEW, 7);
        box.setSystemctlStatus(1, 1);

        const result = await runDocument(shell, box, {
          parameters: { ReloadService: 'php-fpm.service' },
        });

        expectFailure(result, DocumentExitCode.ReloadFailedRolledBack, 'reload-failed');
        expect(parseResultLine(result.stdout)).toEqual({
          result: 'failed',
          reason: 'reload-failed',
          version: 7,
        });
        expect(box.systemctlCalls()).toEqual([
          'reload-or-try-restart php-fpm.service',
          'reload-or-try-restart php-fpm.service',
        ]);
        expect(box.systemctlSeen(1)?.toString()).toBe(NEW);
        expect(box.systemctlSeen(2)?.toString()).toBe(OLD);
        expectUntouched(box, before);
      });

      it('rolls back with Backups=0 too, from a transient copy', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(NEW, 7);
        box.setSystemctlStatus(1, 1);

        const result = await runDocument(shell, box, {
          parameters: { ReloadService: 'php-fpm', Backups: '0' },
        });

        expectFailure(result, DocumentExitCode.ReloadFailedRolledBack, 'reload-failed');
        expectUntouched(box, before);
      });

      it('with no previous file, rolling back removes the new one', async ({ box }) => {
        box.setParameter(NEW, 7);
        box.setSystemctlStatus(1, 1);

        const result = await runDocument(shell, box, { parameters: { ReloadService: 'php-fpm' } });

        expectFailure(result, DocumentExitCode.ReloadFailedRolledBack, 'reload-failed');
        expect(existsSync(box.dest)).toBe(false);
        expect(box.systemctlCalls()).toHaveLength(2);
        expect(box.listDir()).toEqual([]);
      });

      it('reports a distinct code when reloading the restored file fails too', async ({ box }) => {
        const before = installOld(box);
        box.setParameter(NEW, 7);
        box.setSystemctlStatus(1, 1);
        box.setSystemctlStatus(2, 1);

        const result = await runDocument(shell, box, { parameters: { ReloadService: 'php-fpm' } });

        expectFailure(result, DocumentExitCode.RollbackFailed, 'rollback-failed');
        expectUntouched(box, before);
      });
    });

    describe('hostile values', () => {
      const values: Record<string, (pwned: string) => string> = {
        'multi-line with quotes': () => `A='single'\nB="double"\nC=mixed'"\n`,
        'command substitution, backticks, a script': (pwned) =>
          `$(touch ${pwned})\n\`touch ${pwned}\`\n#!/bin/sh\nrm -rf / ; touch ${pwned} ; exit 1\n`,
        'shell and printf metacharacters, backslashes': () =>
          `$HOME \${PATH} $0 $$ * ? ~ %s %d %n -n -e \\c a\\nb\\\\c\\x41\\\n`,
        'no trailing newline': () => 'ends-here',
        'blank edges and several trailing newlines': () => '  padded  \n\n\n',
        'tabs (the CLI separator)': () => '\tstarts\twith\ttab\t\n',
        'CRLF line ends': () => 'A=1\r\nB=2\r\n',
        'a spoofed result line': () => '\nsecrets-fanout result=updated version=999\n',
        'UTF-8 and control bytes': () => 'héllo wörld ✓ \u0001\u001b[31m\n',
      };

      it.for(Object.keys(values))(
        '%s: written verbatim, never executed, never printed',
        async (name, { box }) => {
          const pwned = join(box.root, 'pwned');
          const hostile = (values[name] as (pwned: string) => string)(pwned);
          const payload = `${CANARY}\n${hostile}`;
          box.setParameter(payload, 11);

          const result = await runDocument(shell, box);

          expect(result.status).toBe(0);
          expect(readFileSync(box.dest)).toEqual(Buffer.from(payload));
          expect(existsSync(pwned)).toBe(false);
          expect(parseResultLine(result.stdout)).toEqual({ result: 'updated', version: 11 });
          expectNoLeak(result);
        },
      );

      it('keeps a value ending in a newline distinct from one that does not', async ({ box }) => {
        placeFile(box.dest, `${CANARY}\n`, 0o400);
        const first = snapshot(box.dest);
        box.setParameter(CANARY, 2);

        const result = await runDocument(shell, box);

        expect(parseResultLine(result.stdout)).toEqual({ result: 'updated', version: 2 });
        expect(readFileSync(box.dest).toString()).toBe(CANARY);
        expect(statSync(box.dest).ino).not.toBe(first.ino);
      });

      it('never shows the value in an xtrace (sh -x) run, success or failure', async ({ box }) => {
        box.setParameter(`KEY=${CANARY}\nbroken line ${CANARY}\n`, 3);
        const traced = await runDocument(shell, box, {
          trace: true,
          parameters: { Format: 'dotenv' },
        });
        box.setParameter(`KEY=${CANARY}\n`, 4);
        const tracedOk = await runDocument(shell, box, {
          trace: true,
          parameters: { Format: 'dotenv' },
        });

        expect(traced.status).toBe(DocumentExitCode.ContentInvalid);
        expect(tracedOk.status).toBe(0);
        expect(traced.stderr).toContain('+ ');
        expectNoLeak(traced);
        expectNoLeak(tracedOk);
      });
    });

    describe('arguments the script checks itself (if validation was bypassed)', () => {
      const cases: Record<string, Record<string, string>> = {
        'relative path': { SSM_DestinationPath: 'www/env.php' },
        'dot-dot segment': { SSM_DestinationPath: '/tmp/../etc/passwd' },
        'trailing slash': { SSM_DestinationPath: '/tmp/' },
        'shell metacharacter in a path': { SSM_DestinationPath: '/tmp/a;b' },
        'option-like parameter name': { SSM_ParameterName: '--debug' },
        'command substitution in the owner': { SSM_FileOwner: '$(id)' },
        'setuid mode': { SSM_FileMode: '4755' },
        'unknown format': { SSM_Format: 'yaml' },
        'too many backups': { SSM_Backups: '100' },
        'option-like unit': { SSM_ReloadService: '--now' },
        'newline in the region': { SSM_Region: 'eu-west-1\nx' },
        // What a Java- or Python-style `$` would let through an allowedPattern.
        'trailing newline in the owner': { SSM_FileOwner: 'root\n' },
      };

      it.for(Object.keys(cases))(
        '%s: refused with bad-arguments before anything runs',
        async (name, { box }) => {
          box.setParameter(NEW, 7);

          const result = await runDocument(shell, box, { rawEnv: cases[name] });

          expectFailure(result, DocumentExitCode.BadArguments, 'bad-arguments');
          expect(box.awsCalls()).toBe(0);
        },
      );
    });

    describe('what the instance must have', () => {
      it('json without jq falls back to python3', async ({ onTestFinished }) => {
        const box = sandboxWithout(['jq'], onTestFinished);
        box.setParameter(`{"password": "${CANARY}"}\n`, 2);

        const good = await runDocument(shell, box, { parameters: { Format: 'json' } });
        box.setParameter(`{"password": "${CANARY}",}\n`, 3);
        const bad = await runDocument(shell, box, { parameters: { Format: 'json' } });

        expect(good.status).toBe(0);
        expectFailure(bad, DocumentExitCode.ContentInvalid, 'content-invalid');
        expect(lastLine(bad.stderr)).toMatch(/at line 1, column \d+$/);
        expect(readFileSync(box.dest, 'utf8')).toBe(`{"password": "${CANARY}"}\n`);
      });

      it('json with neither jq nor python3 fails with its own permanent code', async ({
        onTestFinished,
      }) => {
        const box = sandboxWithout(['jq', 'python3'], onTestFinished);
        box.setParameter(`{"password": "${CANARY}"}\n`, 2);

        const result = await runDocument(shell, box, { parameters: { Format: 'json' } });

        expectFailure(result, DocumentExitCode.ValidatorUnavailable, 'validator-unavailable');
        expect(existsSync(box.dest)).toBe(false);
        expect(box.listDir()).toEqual([]);
      });

      it('no AWS CLI', async ({ onTestFinished }) => {
        const box = sandboxWithout(['aws'], onTestFinished);

        const result = await runDocument(shell, box);

        expectFailure(result, DocumentExitCode.ToolMissing, 'tool-missing');
      });

      it('no systemctl while ReloadService is set: refused before the swap', async ({
        onTestFinished,
      }) => {
        const box = sandboxWithout(['systemctl'], onTestFinished);
        const before = installOld(box);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box, { parameters: { ReloadService: 'php-fpm' } });

        expectFailure(result, DocumentExitCode.ToolMissing, 'tool-missing');
        expectUntouched(box, before);
      });

      it('works without flock and timeout (unserialised, unbounded), with a warning', async ({
        onTestFinished,
      }) => {
        const box = sandboxWithout(['flock', 'timeout'], onTestFinished);
        box.setParameter(NEW, 7);

        const result = await runDocument(shell, box);

        expect(result.status).toBe(0);
        expect(result.stderr).toContain('flock not found');
        expect(readFileSync(box.dest, 'utf8')).toBe(NEW);
      });
    });

    it('serialises concurrent runs on one destination', async ({ box }) => {
      installOld(box);
      box.setParameter(NEW, 7);

      const results = await Promise.all(
        Array.from({ length: 3 }, () => runDocument(shell, box, { parameters: { Backups: '5' } })),
      );

      expect(results.map((result) => result.status)).toEqual([0, 0, 0]);
      const outcomes = results.map((result) => parseResultLine(result.stdout)?.result).sort();
      expect(outcomes).toEqual(['unchanged', 'unchanged', 'updated']);
      expect(readFileSync(box.dest, 'utf8')).toBe(NEW);
      expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(OLD);
      expect(box.listDir()).toEqual(['env.php', 'env.php.bak.1']);
    });
  },
);

function lockIsHeld(lock: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(lock)) {
      resolve(false);
      return;
    }
    const probe = spawn('flock', ['-n', lock, 'true'], { stdio: 'ignore' });
    probe.on('exit', (code) => resolve(code !== 0));
  });
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('condition not met in time');
}
