/**
 * A pinned version end to end, without the fake `aws`: the document runs with the local cloud's
 * own `aws` (test/local-cloud/aws-cli.ts, what its instances use) and, when one is installed, the
 * real AWS CLI, both pointed at the local cloud's Parameter Store (test/local-cloud/ssm.ts) and
 * signing as a prod instance. So the document, the CLI's handling of `--name name:N` and of a
 * ParameterVersionNotFound error, and the stand-in's selectors and instance policy are checked
 * together. The real CLI gets the endpoint with `--endpoint-url`, which every version honours.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DocumentExitCode, parseResultLine } from '../../shared/document-contract.ts';
import { Fleet } from '../local-cloud/fleet.ts';
import { type LocalServer, startServer } from '../local-cloud/http.ts';
import { SsmService } from '../local-cloud/ssm.ts';
import {
  CANARY,
  lastLine,
  makeSandbox,
  placeFile,
  runDocument,
  SHELLS,
  snapshot,
} from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));
const PROD_INSTANCE = 'i-0a00000000000f001';
const VALUES = [1, 2, 3].map((version) => `APP_KEY=v${version}-${CANARY}\n`);

/** An AWS CLI that works with a minimal PATH (a pyenv shim does not), or undefined. */
function findRealAwsCli(): string | undefined {
  return ['/usr/local/bin/aws', '/usr/bin/aws'].find((candidate) => existsSync(candidate));
}

describe('a pinned version through a real CLI and the local cloud', { timeout: 60_000 }, () => {
  let root: string;
  let server: LocalServer;
  const clis: Array<{ name: string; wrapper: string }> = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'sfpin'));
    const fleet = new Fleet(join(root, 'fleet'));
    fleet.add({ id: PROD_INSTANCE, tags: { Environment: 'prod' } });
    const ssm = new SsmService({
      region: 'eu-west-1',
      fleet,
      environmentOf: (instance) => instance.tags.Environment,
      emit: () => undefined,
    });
    server = await startServer((request) => ssm.handle(request));
    for (const value of VALUES) {
      ssm.putParameter({
        Name: '/prod/env.php',
        Value: value,
        Type: 'SecureString',
        Overwrite: true,
      });
    }
    ssm.putParameter({ Name: '/dev/env.php', Value: `dev-${CANARY}`, Type: 'SecureString' });

    // Each CLI behind a two-line `aws` that adds --endpoint-url, so the document runs unchanged.
    const wrap = (name: string, command: string) => {
      const wrapper = join(root, `aws-${clis.length}`);
      writeFileSync(
        wrapper,
        `#!/bin/sh\nexec ${command} --endpoint-url '${server.endpoint}' "$@"\n`,
      );
      chmodSync(wrapper, 0o755);
      clis.push({ name, wrapper });
    };
    const localCli = join(here, '..', 'local-cloud', 'aws-cli.ts');
    wrap(
      "the local cloud's aws",
      `'${process.execPath}' --disable-warning=ExperimentalWarning '${localCli}'`,
    );
    const real = findRealAwsCli();
    if (real !== undefined) {
      const version = execFileSync(real, ['--version'], { encoding: 'utf8' }).split(' ')[0];
      wrap(version ?? 'the AWS CLI', `'${real}'`);
    }
  });

  afterAll(async () => {
    await server?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  function environment(home: string): Record<string, string> {
    return {
      HOME: home,
      // The local cloud knows an instance by the key id it signs with.
      AWS_ACCESS_KEY_ID: PROD_INSTANCE,
      AWS_SECRET_ACCESS_KEY: 'local-cloud-test-secret',
      AWS_DEFAULT_REGION: 'eu-west-1',
      AWS_CONFIG_FILE: join(home, 'no-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-credentials'),
      AWS_EC2_METADATA_DISABLED: 'true',
    };
  }

  // One shell: the shells are covered with the fake CLI (pinned-version.test.ts).
  const shell = SHELLS[0] ?? '/bin/sh';

  it('with every CLI: writes the version asked for, rolls back, and fails 68 on a missing one', async ({
    onTestFinished,
  }) => {
    expect(clis.length).toBeGreaterThan(0);
    for (const cli of clis) {
      const box = makeSandbox({ realAws: cli.wrapper });
      onTestFinished(() => box.cleanup());
      const env = environment(box.root);

      // A stage pinned to version 3, then rolled back to 2.
      const forward = await runDocument(shell, box, {
        parameters: { ParameterName: '/prod/env.php:3', Format: 'dotenv' },
        env,
      });
      const back = await runDocument(shell, box, {
        parameters: { ParameterName: '/prod/env.php:2', Format: 'dotenv' },
        env,
      });

      expect(forward.status, `${cli.name}: ${forward.stderr}`).toBe(0);
      expect(back.status, `${cli.name}: ${back.stderr}`).toBe(0);
      expect(parseResultLine(forward.stdout), cli.name).toEqual({ result: 'updated', version: 3 });
      expect(parseResultLine(back.stdout), cli.name).toEqual({ result: 'updated', version: 2 });
      expect(readFileSync(box.dest, 'utf8'), cli.name).toBe(VALUES[1]);
      expect(readFileSync(`${box.dest}.bak.1`, 'utf8'), cli.name).toBe(VALUES[2]);

      // A version Parameter Store does not have: permanent, its own code, the file untouched.
      const before = snapshot(box.dest);
      const missing = await runDocument(shell, box, {
        parameters: { ParameterName: '/prod/env.php:9', Format: 'dotenv' },
        env,
      });

      expect(missing.status, `${cli.name}: ${missing.stderr}`).toBe(
        DocumentExitCode.ParameterVersionNotFound,
      );
      expect(lastLine(missing.stdout)).toBe(
        'secrets-fanout result=failed reason=version-not-found',
      );
      expect(lastLine(missing.stderr), cli.name).toContain(
        'An error occurred (ParameterVersionNotFound) when calling the GetParameter operation: Systems Manager could not find version 9 of /prod/env.php.',
      );
      expect(snapshot(box.dest), cli.name).toEqual(before);

      for (const result of [forward, back, missing]) {
        expect(result.stdoutBytes.includes(CANARY), cli.name).toBe(false);
        expect(result.stderrBytes.includes(CANARY), cli.name).toBe(false);
      }
    }
  });

  it('with every CLI: the instance policy still keeps another environment out, pinned or not', async ({
    onTestFinished,
  }) => {
    for (const cli of clis) {
      const box = makeSandbox({ realAws: cli.wrapper });
      onTestFinished(() => box.cleanup());
      placeFile(box.dest, VALUES[0] ?? '', 0o400);
      const before = snapshot(box.dest);

      const result = await runDocument(shell, box, {
        parameters: { ParameterName: '/dev/env.php:1' },
        env: environment(box.root),
      });

      // AccessDeniedException is an ordinary failed fetch (75), as it is without a selector.
      expect(result.status, `${cli.name}: ${result.stderr}`).toBe(DocumentExitCode.FetchFailed);
      expect(lastLine(result.stderr), cli.name).toContain(
        'is not authorized to perform: ssm:GetParameter on resource: arn:aws:ssm:eu-west-1:123456789012:parameter/dev/env.php because',
      );
      expect(snapshot(box.dest), cli.name).toEqual(before);
    }
  });
});
