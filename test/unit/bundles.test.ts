import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { extractZip } from '../local-cloud/zip.ts';
import { repoRoot } from '../support/package.ts';

// What each packaged function carries, read from its bundle's source map (the global setup
// packages the service as `npm run package` does). Each rule keeps work off every cold start
// (issue 11, item 4: import ≤ 1.3× a bundle of only the function's AWS SDK clients).

const work = mkdtempSync(join(tmpdir(), 'secrets-fanout-bundles-'));
/** Function name → the source files its bundle was built from (paths under node_modules/…). */
const sources = new Map<string, string[]>();

beforeAll(() => {
  const packagedDir = inject('packagedDir');
  for (const zip of readdirSync(packagedDir).filter((name) => name.endsWith('.zip'))) {
    const fn = zip.replace(/\.zip$/, '');
    const files = extractZip(join(packagedDir, zip), join(work, fn));
    const map = files.find((file) => file.endsWith('.mjs.map'));
    if (map === undefined) throw new Error(`${zip} holds no source map`);
    sources.set(fn, JSON.parse(readFileSync(join(work, fn, map), 'utf8')).sources);
  }
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

const carrying = (pattern: RegExp) =>
  [...sources].filter(([, files]) => files.some((file) => pattern.test(file))).map(([fn]) => fn);

describe('function bundles', () => {
  it('were all read', () => {
    expect([...sources.keys()]).toContain('status');
    expect(sources.size).toBeGreaterThanOrEqual(11);
  });

  it('build schemas with zod/mini, never classic zod (shared/zod.ts)', () => {
    expect(carrying(/node_modules\/zod\/v4\/mini\//)).toHaveLength(sources.size);
    expect(carrying(/node_modules\/zod\/v4\/classic\//)).toEqual([]);
  });

  it('leave semver to the X-Ray SDK patcher we never call (shared/build/esbuild-plugins.cjs)', () => {
    expect(carrying(/node_modules\/semver\/(index|preload)\.js$/)).toEqual([]);
    expect(carrying(/node_modules\/semver\/(ranges|classes\/range)/)).toEqual([]);
  });

  it('carry no Metrics in a function that emits none', () => {
    expect(carrying(/@aws-lambda-powertools\/metrics\/lib\/esm\/Metrics\.js$/)).not.toContain(
      'status',
    );
    expect(carrying(/@aws-lambda-powertools\/metrics\/lib\/esm\/Metrics\.js$/)).toContain(
      'propagate',
    );
  });
});

describe('the lazy semver stand-in for aws-xray-sdk-core', () => {
  it('answers as semver.gte does when the AWS SDK v2 patcher calls it', async () => {
    // Arrange: the patcher alone, bundled with our plugins as serverless.yml bundles it.
    const plugins = createRequire(import.meta.url)(
      join(repoRoot, 'shared', 'build', 'esbuild-plugins.cjs'),
    );
    const outfile = join(work, 'aws-p.cjs');
    await build({
      stdin: {
        contents: "module.exports = require('aws-xray-sdk-core/dist/lib/patchers/aws_p');",
        resolveDir: repoRoot,
      },
      bundle: true,
      platform: 'node',
      format: 'cjs',
      outfile,
      plugins,
      logLevel: 'silent',
    });
    const { captureAWS } = (await import(pathToFileURL(outfile).href)).default;

    // Act / Assert: below the patcher's minimum version it refuses, at or above it accepts.
    expect(() => captureAWS({ VERSION: '2.7.14' })).toThrow(/2\.7\.15 or greater required/);
    expect(captureAWS({ VERSION: '2.7.15' })).toEqual({ VERSION: '2.7.15' });
    expect(captureAWS({ VERSION: '2.1692.0' })).toEqual({ VERSION: '2.1692.0' });
  });
});
