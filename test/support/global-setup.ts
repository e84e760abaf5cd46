import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { packageService } from './package.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Directory holding the output of `serverless package` for stage `test`. */
    packagedDir: string;
  }
}

/** Packages the service once per test run; template and end-to-end tests read the output. */
export default async function setup(project: TestProject) {
  const dir = await mkdtemp(join(tmpdir(), 'secrets-fanout-package-'));
  await packageService(dir);
  project.provide('packagedDir', dir);
  return async () => {
    await rm(dir, { recursive: true, force: true });
  };
}
