import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/support/setup-env.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Two test files at a time. Vitest's default on a 2-core machine (CI's) is one (cores - 1),
    // which ran the whole suite file after file: 513 s on CI. Most files wait on the local
    // cloud's processes or on dynalite more than they compute; two at a time took 315 s here,
    // and every test waits on events or the scaled clock, never on wall-clock time.
    maxWorkers: 2,
    testTimeout: 90_000,
    hookTimeout: 180_000,
  },
});
