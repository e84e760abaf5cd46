/**
 * `npm start`: the whole service on the local cloud with a demo fleet. Packages the service (or
 * reuses a fresh package), starts the cloud, prints where everything is, then plays the guided
 * demo (demo.ts): each step labelled as it happens, every rollout with its trigger, progress and
 * how it settled, every alert, and the instances of the environment at hand with the version on
 * disk. Then it waits for the user's own commands (`npm run local -- …`, cli.ts, through
 * .local-cloud/endpoints.json) until Ctrl-C, which stops everything.
 *
 * On a terminal the screen is redrawn in place; otherwise (CI, pipes) each event is one
 * timestamped line. Options:
 *   --no-demo      no story: the service exactly as serverless.yml maps it, no parameters put
 * Environment: LOCAL_CLOUD_CLOCK_SCALE (default 10), LOCAL_CLOUD_INFO (where endpoints.json
 * goes), SECRETS_FANOUT_PACKAGED_DIR (use this `serverless package` output as it is),
 * SECRETS_FANOUT_DEMO_PAUSE_MS (between demo steps; default 3000 on a terminal, else 0).
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { packageService, repoRoot, serviceCopy, withDemoDotenvFile } from '../support/package.ts';
import { startLocalCloud } from './cloud.ts';
import { type ConsoleDriver, lineDriver, terminalDriver } from './console/drivers.ts';
import { type ConsoleModel, emptyModel } from './console/model.ts';
import { playDemo } from './console/session.ts';
import { type Watcher, watchCloud } from './console/watch.ts';
import { consoleInfoPath, describeCloud, infoLines, writeConsoleInfo } from './console.ts';
import { DEMO_FLEET, DEMO_GROUPS } from './demo.ts';

const STAGE = 'dev';
const demo = !process.argv.slice(2).includes('--no-demo');
const unknown = process.argv.slice(2).filter((arg) => arg !== '--no-demo');
if (unknown.length > 0) {
  console.error(`npm start: unknown option ${unknown.join(' ')} (known: --no-demo)`);
  process.exit(2);
}

function newestMtime(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

/**
 * The packaged service: SECRETS_FANOUT_PACKAGED_DIR as it is, or .serverless/ (serverless.yml
 * as is) / .serverless-demo/ (with the demo's dotenv file), packaged again when older than the
 * sources. Shows progress while `serverless package` runs.
 */
async function ensurePackaged(model: ConsoleModel, driver: ConsoleDriver): Promise<string> {
  const given = process.env.SECRETS_FANOUT_PACKAGED_DIR;
  if (given) {
    driver.event({ kind: 'packaged', seconds: 0, reused: true });
    return given;
  }
  const dir = join(repoRoot, demo ? '.serverless-demo' : '.serverless');
  const template = join(dir, 'cloudformation-template-update-stack.json');
  const sources = [
    'serverless.yml',
    'functions',
    'shared',
    'documents',
    'package.json',
    // The demo's extra mapping (withDemoDotenvFile) is written there.
    ...(demo ? ['test/support/package.ts'] : []),
  ].map((entry) => join(repoRoot, entry));
  if (existsSync(template) && statSync(template).mtimeMs > Math.max(...sources.map(newestMtime))) {
    driver.event({ kind: 'packaged', seconds: 0, reused: true });
    return dir;
  }
  const startedAt = Date.now();
  model.packaging = { startedAt };
  driver.print(
    `Packaging the service (serverless package --stage ${STAGE}${demo ? ", with the demo's dotenv-checked file" : ''}) into ${dir}`,
  );
  driver.changed();
  const elapsed = () => Math.round((Date.now() - startedAt) / 1000);
  const ticker = setInterval(
    () => driver.event({ kind: 'packaging', elapsedSeconds: elapsed() }),
    5000,
  );
  try {
    if (demo) {
      const copy = await serviceCopy({ serverlessYml: withDemoDotenvFile });
      try {
        await packageService(dir, copy, STAGE);
      } finally {
        await rm(copy, { recursive: true, force: true });
      }
    } else {
      await packageService(dir, repoRoot, STAGE);
    }
  } finally {
    clearInterval(ticker);
  }
  model.packaging.doneAt = Date.now();
  driver.event({ kind: 'packaged', seconds: elapsed(), reused: false });
  driver.changed();
  return dir;
}

async function main(): Promise<void> {
  const clockScale = Number(process.env.LOCAL_CLOUD_CLOCK_SCALE ?? '10');
  const model = emptyModel(
    `secrets-fanout on the local cloud (clock ×${clockScale}${demo ? ', guided demo' : ''}) · Ctrl-C stops`,
  );
  const driver = process.stdout.isTTY ? terminalDriver(model) : lineDriver();
  const packagedDir = await ensurePackaged(model, driver);
  const cloud = await startLocalCloud({
    packagedDir,
    fleet: DEMO_FLEET,
    autoScalingGroups: DEMO_GROUPS,
    clockScale,
    functionEnvironment: { POWERTOOLS_LOG_LEVEL: 'WARN' },
    // A fast clock (tests run ×100) squeezes a retry's backoff below the DynamoDB commit
    // before it: the same floor as the e2e tests (test/e2e/local-cloud.ts).
    ...(clockScale > 10 ? { sqsDelayFloorMs: 250 } : {}),
  });
  const infoFile = consoleInfoPath(repoRoot);
  let stopping = false;
  let watcher: Watcher | undefined;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    watcher?.stop();
    driver.stop();
    console.log('\nStopping the local cloud …');
    await cloud.stop();
    rmSync(infoFile, { force: true });
    console.log('Stopped.');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  const info = describeCloud(cloud);
  writeConsoleInfo(infoFile, info);
  driver.print(banner(cloud, info, clockScale));
  watcher = watchCloud(cloud, model, {
    onEvent: (event) => driver.event(event),
    onChange: () => driver.changed(),
  });
  if (!demo) {
    model.step = { index: 0, total: 0, title: 'skipped (--no-demo): waiting for your commands' };
    driver.event({ kind: 'step', step: model.step });
    driver.changed();
    return;
  }
  // On a terminal, a pause between steps to read the screen (SECRETS_FANOUT_DEMO_PAUSE_MS).
  const pauseMs = Number(
    process.env.SECRETS_FANOUT_DEMO_PAUSE_MS ?? (process.stdout.isTTY ? 3000 : 0),
  );
  await playDemo(cloud, model, driver, watcher, { pauseMs });
}

function banner(
  cloud: Awaited<ReturnType<typeof startLocalCloud>>,
  info: ReturnType<typeof describeCloud>,
  clockScale: number,
): string {
  const instances = cloud.fleet.list().map((instance) => {
    const notes = instance.managed ? '' : '  (not SSM-managed)';
    return `  ${instance.id}  ${instance.tags.Environment?.padEnd(7)} ${instance.tags.Name?.padEnd(18)} ${instance.root}${notes}`;
  });
  return `
secrets-fanout on the local cloud (clock ×${clockScale})

${infoLines(info).join('\n')}

Instances (each directory is the instance's filesystem root):
${instances.join('\n')}
Auto Scaling group ${DEMO_GROUPS.map((g) => g.name).join(', ')} (staging, launch lifecycle hook secrets-fanout)
${demo ? `The demo maps one more file than serverless.yml: /{env}/app/secrets.env → /etc/app/secrets.env, checked as dotenv (npm start -- --no-demo runs serverless.yml as is).\n` : ''}
In another terminal:
  npm run local -- put /prod/env.php 'DB_PASSWORD=...'
  npm run local -- delete /dev/env.php
  npm run local -- status                    (each instance's files: version, owner, mode, size)
  npm run local -- resync /prod/env.php      (POST ${cloud.endpoints.api}/environments/prod/resync, SigV4-signed)
  npm run local -- resync --environment prod --dry-run
  npm run local -- rollouts /prod/env.php    (GET /environments/prod/rollouts?parameter=…)
  npm run local -- status <rolloutId>        (GET /environments/{env}/rollouts/{id})
  npm run local -- invoke status --stage ${info.stage} --data '{"rolloutId":"…"}'
                                             (what alerts print, in place of npx serverless invoke)
  npm run local -- info                      (this list again)
  cat ${cloud.fleet.list()[0]?.path('/var/www/html/env.php')}
or with the AWS CLI (the admin identity of the local cloud; the same keys sign the HTTP API):
  eval "$(npm run -s local -- env)"          (exports keys, region, AWS_ENDPOINT_URL_*; aws-cli 2.13+)
  export AWS_ACCESS_KEY_ID=${cloud.clientEnv.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${cloud.clientEnv.AWS_SECRET_ACCESS_KEY} AWS_REGION=${cloud.region} AWS_DEFAULT_REGION=${cloud.region}
  older CLIs (before 2.13) ignore AWS_ENDPOINT_URL_*: \`npm run local -- env\` lists each command with --endpoint-url, e.g.
  aws ssm put-parameter --endpoint-url ${cloud.endpoints.ssm} --name /prod/env.php --type SecureString --overwrite --value 'DB_PASSWORD=...'
  aws ssm list-commands --endpoint-url ${cloud.endpoints.ssm}
  aws ec2 describe-instances --endpoint-url ${cloud.endpoints.ec2}
  aws autoscaling describe-auto-scaling-groups --endpoint-url ${cloud.endpoints.autoscaling}
  aws sqs receive-message --endpoint-url ${cloud.endpoints.sqs} --queue-url ${cloud.queue('DeadLetterQueue').url}
Ctrl-C stops everything.
`;
}

await main();
