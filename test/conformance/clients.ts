/**
 * The real clients the conformance tests drive: every AWS CLI found on this machine (Debian's
 * /usr/bin/aws 2.9 speaks SQS Query/XML; a pip or pyenv aws v1 or a newer v2 speaks SQS JSON),
 * always pointed at the local cloud with --endpoint-url (which every CLI version honours;
 * AWS_ENDPOINT_URL_* needs aws-cli 2.13+), and the JS SDK.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Cli {
  path: string;
  version: string;
}

/** Each distinct working AWS CLI: /usr/bin/aws, /usr/local/bin/aws and the `aws` on PATH. */
export function findClis(): Cli[] {
  const candidates = ['/usr/bin/aws', '/usr/local/bin/aws'];
  try {
    candidates.push(execFileSync('sh', ['-c', 'command -v aws'], { encoding: 'utf8' }).trim());
  } catch {
    // none on PATH
  }
  const seen = new Set<string>();
  const clis: Cli[] = [];
  for (const path of candidates) {
    if (path === '' || !existsSync(path)) continue;
    const real = realpathSync(path);
    if (seen.has(real)) continue;
    seen.add(real);
    try {
      const out = execFileSync(path, ['--version'], { encoding: 'utf8', stdio: 'pipe' });
      const version = /aws-cli\/(\S+)/.exec(out)?.[1];
      if (version) clis.push({ path, version });
    } catch {
      // a shim without its interpreter: not a working CLI
    }
  }
  return clis;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

const home = mkdtempSync(join(tmpdir(), 'conformance-home-'));

/** Runs `aws --endpoint-url <endpoint> <args>` with the admin's credentials; never rejects. */
export function runCli(
  cli: Cli,
  endpoint: string,
  env: Record<string, string>,
  args: string[],
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      cli.path,
      ['--endpoint-url', endpoint, '--output', 'json', ...args],
      {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          ...(process.env.PYENV_ROOT ? { PYENV_ROOT: process.env.PYENV_ROOT } : {}),
          HOME: home,
          AWS_CONFIG_FILE: join(home, 'no-config'),
          AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-credentials'),
          AWS_EC2_METADATA_DISABLED: 'true',
          AWS_PAGER: '',
          AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID ?? '',
          AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY ?? '',
          AWS_DEFAULT_REGION: env.AWS_DEFAULT_REGION ?? 'eu-west-1',
          AWS_MAX_ATTEMPTS: '1',
        },
        timeout: 60_000,
      },
      (error, stdout, stderr) => {
        let json: any;
        try {
          json = stdout.trim() === '' ? undefined : JSON.parse(stdout);
        } catch {
          json = undefined;
        }
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : Number.NaN;
        resolve({ code, stdout, stderr, json });
      },
    );
  });
}

/** The error code the CLI printed: "An error occurred (<Code>) when calling …". */
export function errorCode(result: CliResult): string | undefined {
  return /An error occurred \(([^)]+)\)/.exec(result.stderr)?.[1];
}
