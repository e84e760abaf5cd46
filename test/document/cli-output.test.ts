/**
 * The fetch relies on one fact about the AWS CLI: `get-parameter --query 'Parameter.[Version,Value]'
 * --output text` prints the version, a tab, the value verbatim and one newline (awscli/text.py,
 * _format_scalar_list: '\t'.join(...) then '\n'). These tests always check that the fake CLI the
 * other tests use prints exactly those bytes and that the document writes the value from them;
 * when a real AWS CLI is installed they also check the real one (through a local endpoint
 * speaking the SSM JSON protocol) and run the document with it. Nothing is skipped without one.
 * The endpoint is given with `--endpoint-url`, which every CLI version honours; AWS_ENDPOINT_URL
 * is ignored before aws-cli 2.13 (Debian ships 2.9), which then calls ssm.eu-west-1.amazonaws.com.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseResultLine } from '../../shared/document-contract.ts';
import { CANARY, makeSandbox, runDocument, SHELLS } from './harness.ts';

const HOSTILE = `${CANARY}\n\tTAB\t"dq" 'sq' $(touch /nonexistent/pwned) \`x\` \\n \\\\ é ✓\r\n%s\n\n`;

/** An AWS CLI that works with a minimal PATH (a pyenv shim does not), or undefined. */
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

describe('the AWS CLI text output the fetch depends on', { timeout: 30_000 }, () => {
  const requests: { target: string | undefined; body: string }[] = [];
  let server: Server;
  let endpoint: string;

  beforeAll(async () => {
    // Answers GetParameter like SSM (JSON 1.1 protocol) with HOSTILE as version 42.
    server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => {
        body += chunk;
      });
      request.on('end', () => {
        requests.push({ target: request.headers['x-amz-target'] as string | undefined, body });
        const { Name } = JSON.parse(body) as { Name: string };
        response.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        response.end(
          JSON.stringify({
            Parameter: {
              Name,
              Type: 'SecureString',
              Value: HOSTILE,
              Version: 42,
              DataType: 'text',
            },
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  /**
   * The real CLI pointed at the endpoint: a two-line `aws` that adds `--endpoint-url` before the
   * document's own arguments, so the document runs unchanged.
   */
  function realCliWithEndpoint(onTestFinished: (fn: () => void) => void): string {
    const dir = mkdtempSync(join(tmpdir(), 'sfcli'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const wrapper = join(dir, 'aws');
    writeFileSync(wrapper, `#!/bin/sh\nexec '${realAws}' --endpoint-url '${endpoint}' "$@"\n`);
    chmodSync(wrapper, 0o755);
    return wrapper;
  }

  function cliEnvironment(home: string): Record<string, string> {
    return {
      HOME: home,
      AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_DEFAULT_REGION: 'eu-west-1',
      AWS_CONFIG_FILE: join(home, 'no-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-credentials'),
      AWS_EC2_METADATA_DISABLED: 'true',
    };
  }

  it('is version, tab, the value verbatim and one newline, from the fake and any real CLI', async ({
    onTestFinished,
  }) => {
    const box = makeSandbox();
    onTestFinished(() => box.cleanup());
    box.setParameter(HOSTILE, 42);
    const args = [
      'ssm',
      'get-parameter',
      '--name',
      '/prod/env.php',
      '--with-decryption',
      '--query',
      'Parameter.[Version,Value]',
      '--output',
      'text',
    ];
    const env = {
      PATH: '/usr/bin:/bin',
      LC_ALL: 'C',
      AWS_PAGER: '',
      PYTHONIOENCODING: 'UTF-8',
      AWS_CLI_OUTPUT_ENCODING: 'UTF-8',
      ...cliEnvironment(box.root),
    };

    const fake = execFileSync(join(box.bin, 'aws'), args, {
      env: { PATH: box.bin, FAKE_AWS_STATE: box.state },
    });
    expect(fake).toEqual(Buffer.from(`42\t${HOSTILE}\n`));

    if (realAws !== undefined) {
      const real = await new Promise<Buffer>((resolve, reject) => {
        execFile(
          realAws,
          ['--endpoint-url', endpoint, ...args],
          { env, encoding: 'buffer' },
          (error, stdout) => (error ? reject(error) : resolve(stdout)),
        );
      });
      expect(real).toEqual(fake);
      const request = requests.at(-1);
      expect(request?.target).toBe('AmazonSSM.GetParameter');
      expect(JSON.parse(request?.body ?? '{}')).toEqual({
        Name: '/prod/env.php',
        WithDecryption: true,
      });
    }
  });

  // One shell is enough here: both run the script with the fake CLI, which prints these bytes.
  describe.each(SHELLS.slice(0, 1))('the document under %s', (shell) => {
    it('writes the exact bytes the CLI fetched (the real one when installed)', async ({
      onTestFinished,
    }) => {
      const box = makeSandbox(
        realAws === undefined ? {} : { realAws: realCliWithEndpoint(onTestFinished) },
      );
      onTestFinished(() => box.cleanup());
      box.setParameter(HOSTILE, 42);

      const result = await runDocument(shell, box, {
        env: realAws === undefined ? {} : cliEnvironment(box.root),
      });

      expect(result.status).toBe(0);
      expect(readFileSync(box.dest)).toEqual(Buffer.from(HOSTILE));
      expect(parseResultLine(result.stdout)).toEqual({ result: 'updated', version: 42 });
      expect(result.stdoutBytes.includes(CANARY)).toBe(false);
      expect(result.stderrBytes.includes(CANARY)).toBe(false);
    });
  });
});
