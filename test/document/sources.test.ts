/**
 * The document's other sources, run for real under dash and bash with the fake `aws`: a Secrets
 * Manager secret (AWSCURRENT), and a file composed from every parameter directly under a path, in
 * dotenv and in JSON, with the escaping rules the README states.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { DocumentExitCode, parseResultLine } from '../../shared/document-contract.ts';
import {
  CANARY,
  itInSandbox as it,
  lastLine,
  makeSandbox,
  placeFile,
  type RunResult,
  runDocument,
  type Sandbox,
  SHELLS,
  snapshot,
} from './harness.ts';

const VERSION_ID = 'a1b2c3d4-5678-90ab-cdef-EXAMPLE11111';

/** What `aws ssm get-parameters-by-path --query 'Parameters[].[Name,Value]' --output json` prints. */
function byPath(box: Sandbox, parameters: Array<[string, string]>): void {
  // json.dump(indent=4, ensure_ascii=False) + "\n" (awscli/formatter.py): JSON.stringify with
  // 4 spaces prints the same for a list of lists of strings.
  writeFileSync(join(box.state, 'by-path.json'), `${JSON.stringify(parameters, null, 4)}\n`);
}

function expectNoLeak(result: RunResult, ...values: string[]): void {
  for (const value of [CANARY, ...values]) {
    expect(result.stdout).not.toContain(value);
    expect(result.stderr).not.toContain(value);
  }
}

const secret = { SourceType: 'secret', ParameterName: 'prod/db' };
const dotenvPath = {
  SourceType: 'parametersByPath',
  ParameterName: '/prod/app/',
  Format: 'dotenv',
};
const jsonPath = { SourceType: 'parametersByPath', ParameterName: '/prod/app/', Format: 'json' };

// A value with both quotes, a backslash, newlines, a CR, a tab, $ and `, and non-ASCII text.
const TRICKY = `p"a'ss\\w$HOME\`id\`\r\nline 2\tend — ünïcødé ✓ 🔑\n${CANARY}`;

describe.each(SHELLS)('under %s', (shell) => {
  describe('a Secrets Manager secret', () => {
    it('fetches AWSCURRENT with the instance role and writes it exactly, reporting its VersionId', async ({
      box,
    }) => {
      // Arrange
      const value = `{"password":"${CANARY}"}\n`;
      writeFileSync(join(box.state, 'value'), value);
      writeFileSync(join(box.state, 'version'), VERSION_ID);
      // Act
      const result = await runDocument(shell, box, {
        parameters: { ...secret, Format: 'json' },
      });
      // Assert
      expect(result.status, result.stderr).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe(value);
      expect(box.awsArgv()).toEqual([
        'secretsmanager',
        'get-secret-value',
        '--secret-id',
        'prod/db',
        '--version-stage',
        'AWSCURRENT',
        '--query',
        '[VersionId,SecretString]',
        '--output',
        'text',
      ]);
      expect(lastLine(result.stdout)).toBe(`secrets-fanout result=updated revision=${VERSION_ID}`);
      expect(parseResultLine(result.stdout)).toEqual({ result: 'updated', revision: VERSION_ID });
      expectNoLeak(result);
    });

    it('reports an unchanged secret as unchanged', async ({ box }) => {
      placeFile(box.dest, `x-${CANARY}`, 0o400);
      writeFileSync(join(box.state, 'value'), `x-${CANARY}`);
      writeFileSync(join(box.state, 'version'), VERSION_ID);
      const result = await runDocument(shell, box, { parameters: secret });
      expect(result.status, result.stderr).toBe(0);
      expect(lastLine(result.stdout)).toBe(
        `secrets-fanout result=unchanged revision=${VERSION_ID}`,
      );
    });

    it('fails permanently (67) on a missing secret and leaves the file alone', async ({ box }) => {
      placeFile(box.dest, `old-${CANARY}`, 0o400);
      const before = snapshot(box.dest);
      box.setAwsMode('not-found');
      const result = await runDocument(shell, box, { parameters: secret });
      expect(result.status).toBe(DocumentExitCode.ParameterNotFound);
      expect(result.stderr).toContain('ResourceNotFoundException');
      expect(snapshot(box.dest)).toEqual(before);
    });

    it('refuses a binary-only secret (the CLI prints None) without touching the file', async ({
      box,
    }) => {
      placeFile(box.dest, `old-${CANARY}`, 0o400);
      const before = snapshot(box.dest);
      writeFileSync(join(box.state, 'value'), 'None');
      writeFileSync(join(box.state, 'version'), VERSION_ID);
      const result = await runDocument(shell, box, { parameters: secret });
      expect(result.status).toBe(DocumentExitCode.ContentInvalid);
      expect(lastLine(result.stderr)).toContain('no SecretString');
      expect(snapshot(box.dest)).toEqual(before);
    });

    it('refuses a secret name that begins with / or a dash', async ({ box }) => {
      for (const name of ['/prod/db', '-x']) {
        const result = await runDocument(shell, box, {
          parameters: { SourceType: 'secret' },
          env: { SSM_ParameterName: name },
        });
        expect(result.status, name).toBe(DocumentExitCode.BadArguments);
      }
    });
  });

  describe('a dotenv file composed from a path', () => {
    it('writes one KEY="value" line per parameter, sorted, with the four escapes', async ({
      box,
    }) => {
      // Arrange: out of order, as pages may come
      byPath(box, [
        ['/prod/app/TRICKY', TRICKY],
        ['/prod/app/API_KEY', `key-${CANARY}`],
        ['/prod/app/EMPTY', ''],
      ]);
      // Act
      const result = await runDocument(shell, box, { parameters: dotenvPath });
      // Assert
      expect(result.status, result.stderr).toBe(0);
      const escaped = TRICKY.replaceAll('\\', '\\\\')
        .replaceAll('"', '\\"')
        .replaceAll('\n', '\\n')
        .replaceAll('\r', '\\r');
      expect(readFileSync(box.dest, 'utf8')).toBe(
        `API_KEY="key-${CANARY}"\nEMPTY=""\nTRICKY="${escaped}"\n`,
      );
      expect(escaped).toContain('\t'); // a tab stays a tab
      expect(escaped).toContain('$HOME'); // $ and ` are not escaped: no interpolation intended
      expect(box.awsArgv()).toEqual([
        'ssm',
        'get-parameters-by-path',
        '--path',
        '/prod/app',
        '--with-decryption',
        '--query',
        'Parameters[].[Name,Value]',
        '--output',
        'json',
      ]);
      expect(lastLine(result.stdout)).toBe('secrets-fanout result=updated entries=3');
      expectNoLeak(result, 'ünïcødé');
    });

    it('decodes \\u escapes (control characters, and a CLI that escapes non-ASCII) to UTF-8', async ({
      box,
    }) => {
      writeFileSync(
        join(box.state, 'by-path.json'),
        '[\n    [\n        "/prod/app/A",\n        "caf\\u00e9 \\ud83d\\udd11 \\u0001 \\u000a \\/"\n    ]\n]\n',
      );
      const result = await runDocument(shell, box, { parameters: dotenvPath });
      expect(result.status, result.stderr).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe('A="café 🔑 \u0001 \\n /"\n');
    });

    it('fails the whole file (65) when a name is not a dotenv key, naming the parameter', async ({
      box,
    }) => {
      placeFile(box.dest, `OLD="${CANARY}"\n`, 0o400);
      const before = snapshot(box.dest);
      byPath(box, [
        ['/prod/app/GOOD', `g-${CANARY}`],
        ['/prod/app/db-password', `b-${CANARY}`],
      ]);
      const result = await runDocument(shell, box, { parameters: dotenvPath });
      expect(result.status).toBe(DocumentExitCode.ContentInvalid);
      expect(lastLine(result.stderr)).toContain('/prod/app/db-password');
      expect(snapshot(box.dest)).toEqual(before);
      expectNoLeak(result);
    });

    it('fails permanently (67) when nothing is under the path, and keeps the file', async ({
      box,
    }) => {
      placeFile(box.dest, `OLD="${CANARY}"\n`, 0o400);
      const before = snapshot(box.dest);
      writeFileSync(join(box.state, 'by-path.json'), '[]\n');
      const result = await runDocument(shell, box, { parameters: dotenvPath });
      expect(result.status).toBe(DocumentExitCode.ParameterNotFound);
      expect(snapshot(box.dest)).toEqual(before);
    });

    it('drops the key of a parameter deleted from the path', async ({ box }) => {
      byPath(box, [
        ['/prod/app/A', 'a'],
        ['/prod/app/B', 'b'],
      ]);
      expect((await runDocument(shell, box, { parameters: dotenvPath })).status).toBe(0);
      byPath(box, [['/prod/app/B', 'b']]);
      const result = await runDocument(shell, box, { parameters: dotenvPath });
      expect(result.status, result.stderr).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe('B="b"\n');
      expect(lastLine(result.stdout)).toBe('secrets-fanout result=updated entries=1');
    });

    it('refuses a path source without a dotenv or json format', async ({ box }) => {
      const result = await runDocument(shell, box, {
        parameters: { ...dotenvPath, Format: 'raw' },
      });
      expect(result.status).toBe(DocumentExitCode.BadArguments);
    });
  });

  describe('a JSON file composed from a path', () => {
    it('writes one object, each value the CLI’s own JSON string, and needs no jq', async ({
      box,
    }) => {
      byPath(box, [
        ['/prod/app/TRICKY', TRICKY],
        ['/prod/app/db.port', '5432'],
      ]);
      const result = await runDocument(shell, box, { parameters: jsonPath });
      expect(result.status, result.stderr).toBe(0);
      const written = readFileSync(box.dest, 'utf8');
      expect(JSON.parse(written)).toEqual({ TRICKY, 'db.port': '5432' });
      expect(written.startsWith('{\n  "TRICKY": ')).toBe(true);
      expectNoLeak(result, 'ünïcødé');
    });
  });
});

describe('a composed file without jq or python3', () => {
  it('still writes JSON (valid by construction)', async ({ onTestFinished }) => {
    const box = makeSandbox({ without: ['jq', 'python3'] });
    onTestFinished(() => box.cleanup());
    byPath(box, [['/prod/app/K', 'v']]);
    const result = await runDocument(SHELLS[0] as string, box, { parameters: jsonPath });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(readFileSync(box.dest, 'utf8'))).toEqual({ K: 'v' });
  });
});
