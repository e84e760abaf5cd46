import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { packageService, serviceCopy } from './package.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Directory holding the output of `serverless package` for stage `test`. */
    packagedDir: string;
  }
}

/** Packages the service once per test run; template and end-to-end tests read the output. */
export default async function setup(project: TestProject) {
  const dir = await mkdtemp(join(tmpdir(), 'secrets-fanout-package-'));
  // From a copy: concurrent `serverless package` runs in one checkout share .esbuild/.
  const service = await serviceCopy({});
  await packageService(dir, service);
  project.provide('packagedDir', dir);
  return async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(service, { recursive: true, force: true });
  };
}
