/**
 * Cold-start import cost of each packaged function (issue 11 item 4): the time `import()` of its
 * bundle takes in a fresh Node process, against a bundle of only the AWS SDK clients it uses
 * (built with the same esbuild options, each client constructed once), in paired, alternating
 * runs (A B A B …) so a machine that drifts slows both alike; the median of the pair ratios is
 * the figure. Also the cost of NODE_OPTIONS=--enable-source-maps (serverless.yml's provider
 * environment) on the same bundle.
 *
 * Which clients a function uses comes from esbuild's metafile of its entry point
 * (`@aws-sdk/client-*` and `lib-dynamodb` inputs), not from a list kept by hand.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const CHILD = `
const started = performance.now();
await import(process.argv[1]);
process.stdout.write(String(performance.now() - started));
process.exit(0);
`;

export interface ColdStartRow {
  fn: string;
  clients: string[];
  bundleBytes: number;
  baselineBytes: number;
  /** Medians, milliseconds. */
  importMs: number;
  baselineMs: number;
  /** Median of the paired ratios function / baseline. */
  ratio: number;
  /** Median of the paired ratios with / without --enable-source-maps, same bundle. */
  sourceMapsRatio: number;
  sourceMapsMs: number;
}

const CLIENT_CLASSES: Record<string, string> = {
  '@aws-sdk/client-auto-scaling': 'AutoScalingClient',
  '@aws-sdk/client-cloudwatch': 'CloudWatchClient',
  '@aws-sdk/client-dynamodb': 'DynamoDBClient',
  '@aws-sdk/client-ec2': 'EC2Client',
  '@aws-sdk/client-secrets-manager': 'SecretsManagerClient',
  '@aws-sdk/client-sns': 'SNSClient',
  '@aws-sdk/client-sqs': 'SQSClient',
  '@aws-sdk/client-ssm': 'SSMClient',
};

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** The AWS SDK packages a function's entry point pulls in (esbuild's metafile). */
export async function sdkPackagesOf(repoRoot: string, entry: string): Promise<string[]> {
  const result = await build({
    entryPoints: [join(repoRoot, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
    mainFields: ['module', 'main'],
  });
  const packages = new Set<string>();
  for (const input of Object.keys(result.metafile.inputs)) {
    const match = /node_modules\/(@aws-sdk\/(?:client-[a-z0-9-]+|lib-dynamodb))\//.exec(input);
    if (match?.[1]) packages.add(match[1]);
  }
  return [...packages].sort();
}

/** Builds the baseline: only these SDK packages, each client constructed once. */
export async function buildBaseline(
  packages: string[],
  outFile: string,
  cwd: string,
): Promise<void> {
  const lines = packages.map((pkg, i) => {
    if (pkg === '@aws-sdk/lib-dynamodb') {
      return `import { DynamoDBDocumentClient as D${i} } from '${pkg}';\nglobalThis.__keep${i} = D${i};`;
    }
    // The client class alone (a namespace import would keep every command of the package).
    const name = CLIENT_CLASSES[pkg];
    if (name === undefined) throw new Error(`no client class known for ${pkg}`);
    return `import { ${name} as C${i} } from '${pkg}';\nglobalThis.__keep${i} = new C${i}({});`;
  });
  await build({
    stdin: { contents: lines.join('\n'), resolveDir: cwd, loader: 'js' },
    bundle: true,
    minify: true,
    sourcemap: false,
    target: 'node24',
    platform: 'node',
    format: 'esm',
    outfile: outFile,
    mainFields: ['module', 'main'],
    banner: {
      js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
    },
    logLevel: 'silent',
  });
}

function importMs(file: string, env: NodeJS.ProcessEnv): number {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', CHILD, file], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return Number(out);
}

/**
 * Measures every function: `bundles` maps the function's key to its extracted .mjs and the
 * environment it starts with (its template's variables). `runs` pairs each.
 */
export async function measureColdStarts(options: {
  repoRoot: string;
  workDir: string;
  functions: Array<{ fn: string; entry: string; bundle: string; env: Record<string, string> }>;
  runs: number;
}): Promise<ColdStartRow[]> {
  mkdirSync(options.workDir, { recursive: true });
  const rows: ColdStartRow[] = [];
  for (const { fn, entry, bundle, env } of options.functions) {
    const clients = await sdkPackagesOf(options.repoRoot, entry);
    const baseline = join(options.workDir, `baseline-${fn}.mjs`);
    await buildBaseline(clients, baseline, options.repoRoot);
    const base: NodeJS.ProcessEnv = { PATH: process.env.PATH, ...env };
    delete base.NODE_OPTIONS;
    const withMaps = { ...base, NODE_OPTIONS: '--enable-source-maps' };
    // One warm-up of each (file cache), then paired alternating runs.
    importMs(bundle, base);
    importMs(baseline, base);
    const fnTimes: number[] = [];
    const baseTimes: number[] = [];
    const mapTimes: number[] = [];
    const ratios: number[] = [];
    const mapRatios: number[] = [];
    for (let i = 0; i < options.runs; i += 1) {
      // Alternate which goes first, so neither always runs on a warmer machine.
      const order = i % 2 === 0 ? ['fn', 'base', 'maps'] : ['maps', 'base', 'fn'];
      const t: Record<string, number> = {};
      for (const which of order) {
        t[which] =
          which === 'fn'
            ? importMs(bundle, base)
            : which === 'base'
              ? importMs(baseline, base)
              : importMs(bundle, withMaps);
      }
      fnTimes.push(t.fn as number);
      baseTimes.push(t.base as number);
      mapTimes.push(t.maps as number);
      ratios.push((t.fn as number) / (t.base as number));
      mapRatios.push((t.maps as number) / (t.fn as number));
    }
    rows.push({
      fn,
      clients,
      bundleBytes: readFileSync(bundle).length,
      baselineBytes: readFileSync(baseline).length,
      importMs: median(fnTimes),
      baselineMs: median(baseTimes),
      ratio: median(ratios),
      sourceMapsMs: median(mapTimes),
      sourceMapsRatio: median(mapRatios),
    });
  }
  return rows;
}

/** Writes the child script for an outside timer (whole-process figures). */
export function writeChild(path: string): void {
  writeFileSync(path, CHILD);
}
