import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/support/setup-env.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // At least two test files at a time. Vitest's default is cores - 1, which on CI's 2-core
    // machine ran the whole suite file after file: 513 s. Most files wait on the local cloud's
    // processes or on dynalite more than they compute; two at a time took 315 s here. Tests wait
    // on events or the scaled clock; the one wall-clock bound (a 1 s fetch timeout must end
    // within 8 s, document tests) has room for a busy machine.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 90_000,
    hookTimeout: 180_000,
  },
});
