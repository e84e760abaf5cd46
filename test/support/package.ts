import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
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

/** A package of an edited copy of the service (`serviceCopy`), and how to remove both. */
export interface PackagedVariant {
  packagedDir: string;
  remove: () => Promise<void>;
}

/** Copies the service with `edits` and packages it into a directory of its own. */
export async function packageVariant(
  name: string,
  edits: Parameters<typeof serviceCopy>[0],
): Promise<PackagedVariant> {
  const service = await serviceCopy(edits);
  const packagedDir = await mkdtemp(join(tmpdir(), `secrets-fanout-${name}-`));
  const remove = async () => {
    await rm(packagedDir, { recursive: true, force: true });
    await rm(service, { recursive: true, force: true });
  };
  try {
    await packageService(packagedDir, service);
  } catch (error) {
    await remove();
    throw error;
  }
  return { packagedDir, remove };
}

const ROLLOUT_PACE = 'fetchesPerSecond: 40, commandsPerSecond: 10 }';

/**
 * serverless.yml whose `custom.fanout.rollout` ends with `settings` instead of its pace
 * (`fetchesPerSecond: 40, commandsPerSecond: 10`): the pace, and whatever a test adds after it.
 */
export function withRolloutPace(yml: string, settings: string): string {
  if (!yml.includes(ROLLOUT_PACE)) throw new Error(`serverless.yml: no "${ROLLOUT_PACE}" line`);
  return yml.replace(ROLLOUT_PACE, `${settings} }`);
}

/** The dotenv-checked file the demo (and the format-check test) add next to env.php. */
export const DEMO_DOTENV_FILE = '/etc/app/secrets.env';

/**
 * serverless.yml with one more mapping: `/{env}/app/secrets.env` → /etc/app/secrets.env, checked
 * as dotenv on the instance. The shipped mapping is one `raw` file, whose only failing value is
 * an empty one, which Parameter Store refuses: a format check can only fail on a checked format.
 */
export function withDemoDotenvFile(yml: string): string {
  const marker = '    # SendCommand rate controls';
  if (!yml.includes(marker))
    throw new Error('serverless.yml: no "# SendCommand rate controls" line');
  return yml.replace(
    marker,
    [
      '      - parameter: /{env}/app/secrets.env',
      `        path: ${DEMO_DOTENV_FILE}`,
      '        owner: root',
      '        group: root',
      "        mode: '0400'",
      '        format: dotenv',
      marker,
    ].join('\n'),
  );
}
