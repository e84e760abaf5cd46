/**
 * Runs the real ReplaceSecretsFile script, rendered from documents/replace-secrets-file.yml the
 * way SSM Agent renders it, under a chosen shell, in a sandbox: a temp directory for the files, a
 * PATH made only of the tools a stock Linux instance has (symlinks to the real ones) plus a fake
 * `aws` and a fake `systemctl` (test/document/fixtures/bin). The document's root-only state
 * directory (/var/lib/secrets-fanout on an instance, where its lock lives) is
 * SECRETS_FANOUT_STATE_DIR inside the sandbox.
 */
import { execFile } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it as base } from 'vitest';
import {
  type AgentInterpolation,
  type CommandDocument,
  loadCommandDocument,
  renderRunShellScript,
  type SendCommandParameters,
  validateSendCommandParameters,
} from '../local-cloud/ssm-document.ts';

const here = dirname(fileURLToPath(import.meta.url));
export const DOCUMENT_PATH = join(here, '..', '..', 'documents', 'replace-secrets-file.yml');
const FAKE_BIN = join(here, 'fixtures', 'bin');

/** The canary every test secret contains; it must never show up in any output. */
export const CANARY = 's3cr3t-for-tests';

/** The shells the document must run under: dash (Debian/Ubuntu /bin/sh) and bash (Amazon Linux). */
export const SHELLS = ['/bin/dash', '/bin/bash'].filter((shell) => existsSync(shell));

// What the script may use. Anything not listed here is absent in the sandbox, so a dependency
// the document forgets to check for shows up as a failing test.
const SYSTEM_TOOLS = [
  'awk',
  'cat',
  'chmod',
  'chown',
  'cmp',
  'cp',
  'cut',
  'dd',
  'find',
  'flock',
  'grep',
  'head',
  'ln',
  'mkdir',
  'mktemp',
  'rmdir',
  'mv',
  'rm',
  'sed',
  'sha256sum',
  'sleep',
  'sort',
  'sync',
  'tail',
  'timeout',
  'wc',
];

export type Tool = 'jq' | 'python3' | 'aws' | 'systemctl' | 'flock' | 'timeout' | 'sha256sum';

let documentCache: CommandDocument | undefined;
export function theDocument(): CommandDocument {
  documentCache ??= loadCommandDocument(DOCUMENT_PATH);
  return documentCache;
}

function which(tool: string): string | undefined {
  for (const directory of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const candidate = join(directory, tool);
    if (existsSync(candidate)) return realpathSync(candidate);
  }
  return undefined;
}

/** Builds a bin directory; `without` leaves tools out, `realAws` links a real AWS CLI instead of the fake. */
export function makeBin(
  root: string,
  options: { without?: Tool[]; realAws?: string } = {},
): string {
  const bin = join(root, 'bin');
  mkdirSync(bin, { recursive: true });
  const without = new Set<string>(options.without ?? []);
  for (const tool of [...SYSTEM_TOOLS, 'jq', 'python3']) {
    if (without.has(tool)) continue;
    const target = which(tool);
    if (target) symlinkSync(target, join(bin, tool));
  }
  if (!without.has('aws')) symlinkSync(options.realAws ?? join(FAKE_BIN, 'aws'), join(bin, 'aws'));
  if (!without.has('systemctl')) symlinkSync(join(FAKE_BIN, 'systemctl'), join(bin, 'systemctl'));
  return bin;
}

export interface Sandbox {
  root: string;
  /** Directory of the destination file. */
  dir: string;
  /** The destination file (DestinationPath). */
  dest: string;
  /** The fake AWS CLI's control and log directory. */
  state: string;
  /** The document's root-only state directory (SECRETS_FANOUT_STATE_DIR; /var/lib/secrets-fanout on an instance). */
  stateRoot: string;
  /** Where the document keeps the lock for the sandbox destination. */
  lockPath(): string;
  bin: string;
  /** Sets what the fake `aws` returns: the latest version (also fetchable pinned, `name:<version>`). */
  setParameter(value: string | Buffer, version?: number): void;
  /** Keeps `value` as one version of the parameter's history, fetched with `name:<version>`. */
  setParameterVersion(version: number, value: string | Buffer): void;
  /** Drops a version from the history, as Parameter Store does past its last 100 versions. */
  dropParameterVersion(version: number): void;
  setAwsMode(mode: 'ok' | 'fail' | 'not-found' | 'hang' | 'empty' | 'garbage' | 'truncated'): void;
  /** Exit status of the n-th systemctl call (1-based). */
  setSystemctlStatus(call: number, status: number): void;
  systemctlCalls(): string[];
  systemctlSeen(call: number): Buffer | undefined;
  awsArgv(): string[];
  /** How many times the fake `aws` ran. */
  awsCalls(): number;
  awsEnv(): Record<string, string>;
  /** Names in the destination directory. */
  listDir(): string[];
  cleanup(): void;
}

export function makeSandbox(options: { without?: Tool[]; realAws?: string } = {}): Sandbox {
  const root = mkdtempSync(join(tmpdir(), 'sfdoc'));
  const dir = join(root, 'www');
  const state = join(root, 'state');
  const stateRoot = join(root, 'var-lib-secrets-fanout');
  mkdirSync(dir);
  mkdirSync(state);
  const bin = makeBin(root, options);
  const dest = join(dir, 'env.php');
  const setParameterVersion = (version: number, value: string | Buffer) => {
    mkdirSync(join(state, 'versions'), { recursive: true });
    writeFileSync(join(state, 'versions', String(version)), value);
  };
  return {
    root,
    dir,
    dest,
    state,
    stateRoot,
    bin,
    lockPath() {
      return join(stateRoot, 'locks', realpathSync(dir), '@env.php');
    },
    setParameter(value, version = 7) {
      writeFileSync(join(state, 'value'), value);
      writeFileSync(join(state, 'version'), String(version));
      setParameterVersion(version, value);
    },
    setParameterVersion,
    dropParameterVersion(version) {
      rmSync(join(state, 'versions', String(version)), { force: true });
    },
    setAwsMode(mode) {
      writeFileSync(join(state, 'mode'), mode);
    },
    setSystemctlStatus(call, status) {
      writeFileSync(join(state, `systemctl.status.${call}`), String(status));
    },
    systemctlCalls() {
      const log = join(state, 'systemctl.log');
      return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
    },
    systemctlSeen(call) {
      const file = join(state, `systemctl.seen.${call}`);
      return existsSync(file) ? readFileSync(file) : undefined;
    },
    awsArgv() {
      return readFileSync(join(state, 'aws.argv'), 'utf8').split('\n').slice(0, -1);
    },
    awsCalls() {
      const file = join(state, 'aws.calls');
      return existsSync(file) ? Number(readFileSync(file, 'utf8')) : 0;
    },
    awsEnv() {
      const entries = readFileSync(join(state, 'aws.env'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const at = line.indexOf('=');
          return [line.slice(0, at), line.slice(at + 1)] as const;
        });
      return Object.fromEntries(entries);
    },
    listDir() {
      return readdirSync(dir).sort();
    },
    cleanup() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Raw bytes, to look for the canary whatever the encoding. */
  stdoutBytes: Buffer;
  stderrBytes: Buffer;
}

export interface RunOptions {
  /** SendCommand parameters; DestinationPath defaults to the sandbox destination. */
  parameters?: Record<string, string>;
  agent?: AgentInterpolation;
  /** Extra environment (e.g. SECRETS_FANOUT_FETCH_TIMEOUT), applied last. */
  env?: Record<string, string>;
  /** Run the shell with -x, tracing every command to stderr. */
  trace?: boolean;
  /** Bypass SendCommand validation and set these SSM_* variables directly. */
  rawEnv?: Record<string, string>;
}

/** Renders the document for these parameters as SSM Agent would. Throws InvalidParameters like SendCommand. */
export function renderFor(
  parameters: Record<string, string>,
  agent: AgentInterpolation = 'env-var',
) {
  const document = theDocument();
  const sendCommand: SendCommandParameters = Object.fromEntries(
    Object.entries(parameters).map(([name, value]) => [name, [value]]),
  );
  const resolved = validateSendCommandParameters(document, sendCommand);
  const [step] = renderRunShellScript(document, resolved, {
    agent,
    instanceId: 'i-0123456789abcdef0',
  });
  if (!step) throw new Error('the document has no aws:runShellScript step for Linux');
  return step;
}

/** Runs the document's script under `shell` in the sandbox. Never rejects on a non-zero exit. */
export function runDocument(
  shell: string,
  box: Sandbox,
  options: RunOptions = {},
): Promise<RunResult> {
  const parameters = {
    ParameterName: '/prod/env.php',
    DestinationPath: box.dest,
    ...options.parameters,
  };
  const step = renderFor(parameters, options.agent);
  const scriptPath = join(box.root, `_script.${Math.random().toString(36).slice(2)}.sh`);
  writeFileSync(scriptPath, step.script, { mode: 0o700 });
  const env: Record<string, string> = {
    PATH: box.bin,
    FAKE_AWS_STATE: box.state,
    FAKE_DEST: box.dest,
    SECRETS_FANOUT_STATE_DIR: box.stateRoot,
    ...step.env,
    ...options.rawEnv,
    ...options.env,
  };
  const args = options.trace ? ['-x', scriptPath] : [scriptPath];
  return new Promise((resolve) => {
    execFile(
      shell,
      args,
      { env, cwd: box.root, encoding: 'buffer', timeout: 20_000 },
      (error, stdout, stderr) => {
        const status = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({
          status,
          signal: error?.signal ?? null,
          stdout: stdout.toString('utf8'),
          stderr: stderr.toString('utf8'),
          stdoutBytes: stdout,
          stderrBytes: stderr,
        });
      },
    );
  });
}

/** Writes a file as root with the given mode (umask does not apply). */
export function placeFile(path: string, content: string | Buffer, mode: number): void {
  writeFileSync(path, content);
  chmodSync(path, mode);
}

/** Content, inode and mtime of a file: "byte-identical and untouched". */
export function snapshot(path: string): {
  content: Buffer;
  ino: number;
  mtimeMs: number;
  mode: number;
} {
  const stat = statSync(path);
  return {
    content: readFileSync(path),
    ino: stat.ino,
    mtimeMs: stat.mtimeMs,
    mode: stat.mode & 0o7777,
  };
}

export function lastLine(text: string): string {
  const lines = text.split('\n').filter((line) => line !== '');
  return lines.at(-1) ?? '';
}

/** Resolves a user or group name to its numeric id with getent-free /etc parsing. */
export function idOf(file: '/etc/passwd' | '/etc/group', name: string): number | undefined {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [entry, , id] = line.split(':');
    if (entry === name && id !== undefined) return Number(id);
  }
  return undefined;
}

/**
 * `it` with a sandbox of its own for every test (`{ box }`), cleaned up after it: the tests,
 * mostly waiting on processes, run concurrently.
 */
export const itInSandbox = base.extend<{ box: Sandbox }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads fixture dependencies from the pattern
  box: async ({}, use) => {
    const box = makeSandbox();
    await use(box);
    box.cleanup();
  },
});
