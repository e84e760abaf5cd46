import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { packageService, serviceCopy, withDemoDotenvFile } from './package.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Directory holding the output of `serverless package` for stage `test`. */
    packagedDir: string;
    /** The same with the demo's dotenv-checked file mapped too (`withDemoDotenvFile`). */
    demoPackagedDir: string;
  }
}

/**
 * Packages the service once per test run (and its demo variant, in parallel); template and
 * end-to-end tests read the output.
 */
export default async function setup(project: TestProject) {
  const cleanup: string[] = [];
  const build = async (edits: Parameters<typeof serviceCopy>[0]) => {
    const dir = await mkdtemp(join(tmpdir(), 'secrets-fanout-package-'));
    // From a copy: concurrent `serverless package` runs in one checkout share .esbuild/.
    const service = await serviceCopy(edits);
    cleanup.push(dir, service);
    await packageService(dir, service);
    return dir;
  };
  const [plain, demo] = await Promise.all([
    build({}),
    build({ serverlessYml: withDemoDotenvFile }),
  ]);
  project.provide('packagedDir', plain);
  project.provide('demoPackagedDir', demo);
  return async () => {
    for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
  };
}
