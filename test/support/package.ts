import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const serverlessBin = join(repoRoot, 'node_modules', '.bin', 'serverless');

export interface PackageResult {
  dir: string;
  stdout: string;
  stderr: string;
}

/**
 * Runs `serverless package` (offline, like `npm run package`) into `outDir`, from `serviceDir`.
 * Rejects with the framework's output when packaging fails.
 */
export async function packageService(
  outDir: string,
  serviceDir = repoRoot,
  stage = 'test',
): Promise<PackageResult> {
  const { stdout, stderr } = await run(
    serverlessBin,
    ['package', '--stage', stage, '--region', 'eu-west-1', '--package', outDir],
    { cwd: serviceDir, env: { ...process.env, SLS_TELEMETRY_DISABLED: '1' }, maxBuffer: 1 << 24 },
  );
  return { dir: outDir, stdout, stderr };
}

/**
 * A throwaway copy of the service with edited serverless.yml and/or document, sharing
 * node_modules: for testing what packaging does with files the real ones are not.
 */
export async function serviceCopy(edits: {
  serverlessYml?: (text: string) => string;
  document?: (text: string) => string;
}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'secrets-fanout-service-'));
  for (const entry of ['package.json', 'tsconfig.json', 'functions', 'shared', 'documents']) {
    await cp(join(repoRoot, entry), join(dir, entry), { recursive: true });
  }
  await symlink(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));
  const edit = async (path: string, change: (text: string) => string = (text) => text) =>
    writeFile(join(dir, path), change(await readFile(join(repoRoot, path), 'utf8')));
  await edit('serverless.yml', edits.serverlessYml);
  await edit('documents/replace-secrets-file.yml', edits.document);
  await mkdir(join(dir, '.serverless'), { recursive: true });
  return dir;
}
