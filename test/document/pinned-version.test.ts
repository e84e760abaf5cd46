/**
 * A parameter pinned to one version (ParameterName `/prod/env.php:7`), for staged rollouts: a
 * stage gets exactly version N, and a failed stage is rolled back to an older version N-k. Run
 * for real under dash and bash with the fake `aws`, which answers `get-parameter --name name:N`
 * as GetParameter does (that version's number and value; ParameterVersionNotFound for a version
 * never created or no longer among the 100 kept: API_GetParameter.html,
 * sysman-paramstore-versions.html).
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { DocumentExitCode, parseResultLine } from '../../shared/document-contract.ts';
import {
  CANARY,
  itInSandbox as it,
  lastLine,
  placeFile,
  type RunResult,
  renderFor,
  runDocument,
  type Sandbox,
  SHELLS,
  snapshot,
} from './harness.ts';

const V5 = `<?php return ['db_password' => 'five-${CANARY}'];\n`;
const V6 = `<?php return ['db_password' => 'six-${CANARY}'];\n`;
const V7 = `<?php return ['db_password' => 'seven-${CANARY}'];\n`;

/** Versions 5 to 7 of /prod/env.php, 7 the latest. */
function history(box: Sandbox): void {
  box.setParameterVersion(5, V5);
  box.setParameterVersion(6, V6);
  box.setParameter(V7, 7);
}

function expectNoLeak(result: RunResult): void {
  expect(result.stdoutBytes.includes(CANARY)).toBe(false);
  expect(result.stderrBytes.includes(CANARY)).toBe(false);
}

function expectFailure(result: RunResult, code: number, reason: string): void {
  expect(result.status, result.stderr).toBe(code);
  expect(lastLine(result.stdout)).toBe(`secrets-fanout result=failed reason=${reason}`);
  expect(parseResultLine(result.stdout)).toEqual({ result: 'failed', reason });
  expect(lastLine(result.stderr)).toMatch(/^secrets-fanout: error: /);
  expectNoLeak(result);
}

function pinned(version: number | string): { parameters: Record<string, string> } {
  return { parameters: { ParameterName: `/prod/env.php:${version}` } };
}

describe.each(SHELLS)(
  'a pinned version under %s',
  { concurrent: true, timeout: 30_000 },
  (shell) => {
    it('writes exactly the version asked for, not the latest, and reports it', async ({ box }) => {
      // Arrange
      history(box);

      // Act
      const result = await runDocument(shell, box, pinned(6));

      // Assert
      expect(result.status, result.stderr).toBe(DocumentExitCode.Success);
      expect(readFileSync(box.dest, 'utf8')).toBe(V6);
      expect(statSync(box.dest).mode & 0o7777).toBe(0o400);
      expect(box.awsArgv()).toEqual([
        'ssm',
        'get-parameter',
        '--name',
        '/prod/env.php:6',
        '--with-decryption',
        '--query',
        'Parameter.[Version,Value]',
        '--output',
        'text',
      ]);
      expect(box.awsCalls()).toBe(1);
      expect(result.stdout).toContain('secrets-fanout: fetching version 6 of /prod/env.php\n');
      expect(lastLine(result.stdout)).toBe('secrets-fanout result=updated version=6');
      expect(parseResultLine(result.stdout)).toEqual({ result: 'updated', version: 6 });
      expect(box.listDir()).toEqual(['env.php']);
      expectNoLeak(result);
    });

    it('pins the latest version by its number just as well', async ({ box }) => {
      history(box);

      const result = await runDocument(shell, box, pinned(7));

      expect(result.status, result.stderr).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe(V7);
      expect(lastLine(result.stdout)).toBe('secrets-fanout result=updated version=7');
    });

    it('rolls a stage back: version 6 replaces 7, 7 becomes .bak.1, the unit is reloaded', async ({
      box,
    }) => {
      // Arrange: the instance had 6, the stage pinned it to 7.
      history(box);
      placeFile(box.dest, V6, 0o400);
      const forward = await runDocument(shell, box, {
        parameters: { ParameterName: '/prod/env.php:7', ReloadService: 'php-fpm' },
      });
      expect(forward.status, forward.stderr).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe(V7);

      // Act: the stage failed; roll back to the version before.
      const back = await runDocument(shell, box, {
        parameters: { ParameterName: '/prod/env.php:6', ReloadService: 'php-fpm' },
      });

      // Assert
      expect(back.status, back.stderr).toBe(0);
      expect(lastLine(back.stdout)).toBe('secrets-fanout result=updated version=6');
      expect(readFileSync(box.dest, 'utf8')).toBe(V6);
      expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(V7);
      expect(readFileSync(`${box.dest}.bak.2`, 'utf8')).toBe(V6);
      for (const backup of ['.bak.1', '.bak.2']) {
        const stat = statSync(`${box.dest}${backup}`);
        expect(stat.mode & 0o7777, backup).toBe(0o400);
        expect(stat.uid, backup).toBe(0);
      }
      expect(box.systemctlCalls()).toEqual([
        'reload-or-try-restart php-fpm',
        'reload-or-try-restart php-fpm',
      ]);
      // The unit saw 7 after the first run and 6 after the rollback.
      expect(box.systemctlSeen(1)?.toString()).toBe(V7);
      expect(box.systemctlSeen(2)?.toString()).toBe(V6);
      expect(box.listDir()).toEqual(['env.php', 'env.php.bak.1', 'env.php.bak.2']);
      expectNoLeak(back);
    });

    it('rolls back over several versions: 5 replaces 7', async ({ box }) => {
      history(box);
      placeFile(box.dest, V7, 0o400);

      const result = await runDocument(shell, box, pinned(5));

      expect(result.status, result.stderr).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe(V5);
      expect(readFileSync(`${box.dest}.bak.1`, 'utf8')).toBe(V7);
      expect(parseResultLine(result.stdout)).toEqual({ result: 'updated', version: 5 });
    });

    it('a rollback whose reload fails restores the file it replaced, as any update does', async ({
      box,
    }) => {
      history(box);
      placeFile(box.dest, V7, 0o400);
      const before = snapshot(box.dest);
      box.setSystemctlStatus(1, 1);

      const result = await runDocument(shell, box, {
        parameters: { ParameterName: '/prod/env.php:6', ReloadService: 'php-fpm' },
      });

      expect(result.status).toBe(DocumentExitCode.ReloadFailedRolledBack);
      expect(lastLine(result.stdout)).toBe(
        'secrets-fanout result=failed reason=reload-failed version=6',
      );
      expect(snapshot(box.dest)).toEqual(before);
      expect(box.systemctlSeen(1)?.toString()).toBe(V6);
      expect(box.systemctlSeen(2)?.toString()).toBe(V7);
      expect(box.listDir()).toEqual(['env.php']);
      expectNoLeak(result);
    });

    it('reports a pinned version already in place as unchanged, rewriting nothing', async ({
      box,
    }) => {
      history(box);
      placeFile(box.dest, V6, 0o400);
      const before = snapshot(box.dest);

      const result = await runDocument(shell, box, {
        parameters: { ParameterName: '/prod/env.php:6', ReloadService: 'php-fpm' },
      });

      expect(result.status, result.stderr).toBe(0);
      expect(lastLine(result.stdout)).toBe('secrets-fanout result=unchanged version=6');
      expect(snapshot(box.dest)).toEqual(before);
      expect(box.systemctlCalls()).toEqual([]);
    });

    describe('a version Parameter Store does not have', () => {
      const cases: Record<string, (box: Sandbox) => number> = {
        'never created (above the latest)': (box) => {
          history(box);
          return 8;
        },
        'no longer kept (past the last 100 versions)': (box) => {
          for (let version = 1; version <= 101; version += 1) {
            box.setParameterVersion(version, `v${version}-${CANARY}\n`);
          }
          box.setParameter(`v101-${CANARY}\n`, 101);
          box.dropParameterVersion(1);
          return 1;
        },
      };

      it.for(Object.keys(cases))(
        '%s: fails permanently with its own code (68), once, the file untouched',
        async (name, { box }) => {
          // Arrange
          const missing = cases[name]?.(box) ?? 0;
          placeFile(box.dest, V7, 0o400);
          const before = snapshot(box.dest);

          // Act
          const result = await runDocument(shell, box, {
            parameters: { ParameterName: `/prod/env.php:${missing}`, ReloadService: 'php-fpm' },
          });

          // Assert
          expectFailure(result, DocumentExitCode.ParameterVersionNotFound, 'version-not-found');
          expect(lastLine(result.stderr)).toContain(
            `version ${missing} of /prod/env.php is not in Parameter Store`,
          );
          expect(lastLine(result.stderr)).toContain('(ParameterVersionNotFound)');
          // Not retried (that is for throttling), nothing written, nothing reloaded.
          expect(box.awsCalls()).toBe(1);
          expect(snapshot(box.dest)).toEqual(before);
          expect(box.listDir()).toEqual(['env.php']);
          expect(box.systemctlCalls()).toEqual([]);
        },
      );
    });

    it('refuses an answer for another version than the one asked for', async ({ box }) => {
      history(box);
      placeFile(box.dest, V7, 0o400);
      const before = snapshot(box.dest);
      writeFileSync(join(box.state, 'answer-version'), '7');

      const result = await runDocument(shell, box, pinned(6));

      expectFailure(result, DocumentExitCode.FetchFailed, 'fetch-failed');
      expect(lastLine(result.stderr)).toContain('answered version 7 of /prod/env.php');
      expect(snapshot(box.dest)).toEqual(before);
    });

    it('pins through the {{ }} fallback of agents without ENV_VAR support too', async ({ box }) => {
      history(box);

      const result = await runDocument(shell, box, { ...pinned(5), agent: 'legacy' });

      expect(result.status, result.stderr).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe(V5);
      expect(box.awsArgv()[3]).toBe('/prod/env.php:5');
    });

    describe('selectors the script refuses itself (bad-arguments, nothing fetched)', () => {
      // SendCommand already refuses most of these (allowedPattern); the script checks again, and is
      // the only check for a selector on a secret: one allowedPattern serves every SourceType.
      const cases: Record<string, Record<string, string>> = {
        'a label': { SSM_ParameterName: '/prod/env.php:Production' },
        'a label that looks like a version': { SSM_ParameterName: '/prod/env.php:v7' },
        'version 0': { SSM_ParameterName: '/prod/env.php:0' },
        'a leading zero': { SSM_ParameterName: '/prod/env.php:07' },
        'a negative version': { SSM_ParameterName: '/prod/env.php:-7' },
        'an empty selector': { SSM_ParameterName: '/prod/env.php:' },
        'two selectors': { SSM_ParameterName: '/prod/env.php:6:7' },
        'more than 18 digits': { SSM_ParameterName: '/prod/env.php:1234567890123456789' },
        'a selector and no name': { SSM_ParameterName: ':7' },
        'a selector inside the name': { SSM_ParameterName: '/prod:7/env.php' },
        'a version on a secret': { SSM_SourceType: 'secret', SSM_ParameterName: 'prod/db:3' },
        'a label on a secret': {
          SSM_SourceType: 'secret',
          SSM_ParameterName: 'prod/db:AWSCURRENT',
        },
        'a version on a path': {
          SSM_SourceType: 'parametersByPath',
          SSM_Format: 'dotenv',
          SSM_ParameterName: '/prod/app/:3',
        },
        'a version inside a path': {
          SSM_SourceType: 'parametersByPath',
          SSM_Format: 'dotenv',
          SSM_ParameterName: '/prod/app:3/',
        },
      };

      it.for(Object.keys(cases))('%s', async (name, { box }) => {
        history(box);
        placeFile(box.dest, V7, 0o400);
        const before = snapshot(box.dest);

        const result = await runDocument(shell, box, { rawEnv: cases[name] });

        expectFailure(result, DocumentExitCode.BadArguments, 'bad-arguments');
        expect(box.awsCalls()).toBe(0);
        expect(snapshot(box.dest)).toEqual(before);
      });

      it('says why a secret or a path cannot be pinned', async ({ box }) => {
        const result = await runDocument(shell, box, {
          parameters: { SourceType: 'secret', ParameterName: 'prod/db:3' },
        });

        expectFailure(result, DocumentExitCode.BadArguments, 'bad-arguments');
        expect(lastLine(result.stderr)).toContain('only a parameter (SourceType parameter)');
      });
    });
  },
);

describe('SendCommand validation of a pinned ParameterName', () => {
  it('accepts a version on any name (the script tells a secret apart), never a label', () => {
    expect(() =>
      renderFor({ ParameterName: '/prod/env.php:7', DestinationPath: '/a/b' }),
    ).not.toThrow();
    expect(() =>
      renderFor({ SourceType: 'secret', ParameterName: 'prod/db:7', DestinationPath: '/a/b' }),
    ).not.toThrow();
    for (const name of ['/prod/env.php:Production', '/prod/app/:7', '/prod/env.php:07']) {
      expect(() => renderFor({ ParameterName: name, DestinationPath: '/a/b' }), name).toThrow(
        expect.objectContaining({ name: 'InvalidParameters' }),
      );
    }
  });
});
