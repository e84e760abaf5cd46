/**
 * What the other sources rely on in the AWS CLI's output, checked against the fake `aws` the
 * document tests use and, when a real AWS CLI is installed, against the real one (through a
 * local endpoint speaking the SSM and Secrets Manager JSON protocols), then running the document
 * with it:
 * - `ssm get-parameters-by-path --query 'Parameters[].[Name,Value]' --output json` prints
 *   json.dump(indent=4, ensure_ascii=False) of every page together (awscli/formatter.py
 *   JSONFormatter; the CLI follows NextToken itself);
 * - `secretsmanager get-secret-value --query '[VersionId,SecretString]' --output text` prints the
 *   id, a tab, the value verbatim and one newline, as for a parameter.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CANARY, makeSandbox, runDocument, SHELLS } from './harness.ts';

const HOSTILE = `${CANARY}\n\tTAB\t"dq" 'sq' $(x) \`x\` \\n \\\\ é ✓ 🔑\r\n%s\u0001\n`;
const VERSION_ID = 'a1b2c3d4-5678-90ab-cdef-EXAMPLE11111';
const PAGES = [
  {
    Parameters: [{ Name: '/prod/app/A', Type: 'SecureString', Value: HOSTILE, Version: 3 }],
    NextToken: 'page-2',
  },
  { Parameters: [{ Name: '/prod/app/B', Type: 'SecureString', Value: 'b ✓', Version: 1 }] },
];

function findRealAwsCli(): string | undefined {
  const candidates: string[] = ['/usr/local/bin/aws', '/usr/bin/aws'];
  if (!candidates.some((candidate) => existsSync(candidate))) {
    try {
      candidates.push(execFileSync('pyenv', ['which', 'aws'], { encoding: 'utf8' }).trim());
    } catch {
      // no pyenv either
    }
  }
  return candidates.find((candidate) => candidate !== '' && existsSync(candidate));
}

const realAws = findRealAwsCli();
// Asynchronous: the endpoint answering the real CLI runs in this process's event loop.
const run = promisify(execFile);

describe('the AWS CLI output the other sources depend on', { timeout: 60_000 }, () => {
  let server: Server;
  let endpoint: string;
  const targets: string[] = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => {
        body += chunk;
      });
      request.on('end', () => {
        const target = String(request.headers['x-amz-target'] ?? '');
        targets.push(target);
        const input = JSON.parse(body || '{}');
        let reply: unknown;
        if (target === 'AmazonSSM.GetParametersByPath') {
          reply = input.NextToken === 'page-2' ? PAGES[1] : PAGES[0];
        } else if (target === 'secretsmanager.GetSecretValue') {
          reply = {
            ARN: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf',
            Name: 'prod/db',
            VersionId: VERSION_ID,
            SecretString: HOSTILE,
            VersionStages: ['AWSCURRENT'],
            CreatedDate: 1795450385,
          };
        } else {
          response.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
          response.end(JSON.stringify({ __type: 'UnknownOperationException' }));
          return;
        }
        response.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        response.end(JSON.stringify(reply));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  function realCliWithEndpoint(onTestFinished: (fn: () => void) => void): string {
    const dir = mkdtempSync(join(tmpdir(), 'sfcli'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const wrapper = join(dir, 'aws');
    writeFileSync(wrapper, `#!/bin/sh\nexec '${realAws}' --endpoint-url '${endpoint}' "$@"\n`);
    chmodSync(wrapper, 0o755);
    return wrapper;
  }

  const cliEnvironment = (home: string): Record<string, string> => ({
    HOME: home,
    AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_DEFAULT_REGION: 'eu-west-1',
    AWS_CONFIG_FILE: join(home, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  });

  const byPathArgs = [
    'ssm',
    'get-parameters-by-path',
    '--path',
    '/prod/app',
    '--with-decryption',
    '--query',
    'Parameters[].[Name,Value]',
    '--output',
    'json',
  ];
  // What the fake prints (the document tests write it): both pages, 4-space JSON, one newline.
  const expectedByPath = `${JSON.stringify(
    [
      ['/prod/app/A', HOSTILE],
      ['/prod/app/B', 'b ✓'],
    ],
    null,
    4,
  )}\n`;

  it('prints every page of a path as 4-space JSON with non-ASCII kept, like the fake', async ({
    onTestFinished,
  }) => {
    const box = makeSandbox();
    onTestFinished(() => box.cleanup());
    writeFileSync(join(box.state, 'by-path.json'), expectedByPath);
    const fake = execFileSync(join(box.bin, 'aws'), byPathArgs, {
      env: { PATH: box.bin, FAKE_AWS_STATE: box.state },
    });
    expect(fake.toString('utf8')).toBe(expectedByPath);
    expect(expectedByPath).toContain('é ✓ 🔑'); // ensure_ascii=False: not \u escapes
    if (realAws !== undefined) {
      const { stdout: real } = await run(realCliWithEndpoint(onTestFinished), byPathArgs, {
        encoding: 'buffer',
        env: {
          PATH: '/usr/bin:/bin',
          LC_ALL: 'C',
          AWS_PAGER: '',
          PYTHONIOENCODING: 'UTF-8',
          AWS_CLI_OUTPUT_ENCODING: 'UTF-8',
          ...cliEnvironment(box.root),
        },
      });
      expect(real.toString('utf8')).toBe(expectedByPath);
      expect(
        targets.filter((t) => t === 'AmazonSSM.GetParametersByPath').length,
      ).toBeGreaterThanOrEqual(2);
    }
  });

  it('prints a secret as id, tab, the value verbatim and one newline, like the fake', async ({
    onTestFinished,
  }) => {
    const box = makeSandbox();
    onTestFinished(() => box.cleanup());
    writeFileSync(join(box.state, 'value'), HOSTILE);
    writeFileSync(join(box.state, 'version'), VERSION_ID);
    const args = [
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
    ];
    const expected = Buffer.from(`${VERSION_ID}\t${HOSTILE}\n`);
    const fake = execFileSync(join(box.bin, 'aws'), args, {
      env: { PATH: box.bin, FAKE_AWS_STATE: box.state },
    });
    expect(fake).toEqual(expected);
    if (realAws !== undefined) {
      const { stdout: real } = await run(realCliWithEndpoint(onTestFinished), args, {
        encoding: 'buffer',
        env: {
          PATH: '/usr/bin:/bin',
          LC_ALL: 'C',
          AWS_PAGER: '',
          PYTHONIOENCODING: 'UTF-8',
          AWS_CLI_OUTPUT_ENCODING: 'UTF-8',
          ...cliEnvironment(box.root),
        },
      });
      expect(real).toEqual(expected);
    }
  });

  for (const shell of SHELLS) {
    it(`composes the dotenv and writes the secret from the CLI’s output under ${shell}`, async ({
      onTestFinished,
    }) => {
      // With a real CLI the document runs against the endpoint; without, against the fake.
      const box = makeSandbox(
        realAws === undefined ? {} : { realAws: realCliWithEndpoint(onTestFinished) },
      );
      onTestFinished(() => box.cleanup());
      writeFileSync(join(box.state, 'by-path.json'), expectedByPath);
      writeFileSync(join(box.state, 'value'), HOSTILE);
      writeFileSync(join(box.state, 'version'), VERSION_ID);
      const env = realAws === undefined ? {} : cliEnvironment(box.root);
      const path = await runDocument(shell, box, {
        parameters: {
          SourceType: 'parametersByPath',
          ParameterName: '/prod/app/',
          Format: 'dotenv',
        },
        env,
      });
      expect(path.status, path.stderr).toBe(0);
      const escaped = HOSTILE.replaceAll('\\', '\\\\')
        .replaceAll('"', '\\"')
        .replaceAll('\n', '\\n')
        .replaceAll('\r', '\\r');
      expect(readFileSync(box.dest, 'utf8')).toBe(`A="${escaped}"\nB="b ✓"\n`);
      const secret = await runDocument(shell, box, {
        parameters: { SourceType: 'secret', ParameterName: 'prod/db' },
        env,
      });
      expect(secret.status, secret.stderr).toBe(0);
      expect(readFileSync(box.dest, 'utf8')).toBe(HOSTILE);
      for (const result of [path, secret])
        expect(result.stdout + result.stderr).not.toContain(CANARY);
    });
  }
});
