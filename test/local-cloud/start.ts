/**
 * `npm start`: the whole service on the local cloud with a demo fleet. Packages the service (or
 * reuses a fresh .serverless/), starts the cloud, puts a demo parameter and prints each rollout
 * and each instance's state as it settles; then stays up until Ctrl-C, which stops everything.
 * `npm run local -- put|delete|status` (cli.ts) talks to it through .local-cloud/endpoints.json.
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { packageService, repoRoot } from '../support/package.ts';
import { type InstanceSpec, startLocalCloud } from './cloud.ts';
import { describeCloud, infoLines, writeConsoleInfo } from './console.ts';

const STAGE = 'dev';
const packagedDir = join(repoRoot, '.serverless');
const stateDir = join(repoRoot, '.local-cloud');

function newestMtime(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

async function ensurePackaged(): Promise<void> {
  const template = join(packagedDir, 'cloudformation-template-update-stack.json');
  const sources = ['serverless.yml', 'functions', 'shared', 'documents', 'package.json'].map(
    (entry) => join(repoRoot, entry),
  );
  if (existsSync(template) && statSync(template).mtimeMs > Math.max(...sources.map(newestMtime))) {
    console.log('Using the packaged service in .serverless/ (newer than the sources).');
    return;
  }
  console.log(`Packaging the service (serverless package --stage ${STAGE}) …`);
  await packageService(packagedDir, repoRoot, STAGE);
}

const DEMO_FLEET: InstanceSpec[] = [
  { id: 'i-0de0000000000a001', tags: { Environment: 'prod', Name: 'web-prod-a' } },
  { id: 'i-0de0000000000a002', tags: { Environment: 'prod', Name: 'web-prod-b' } },
  // Its agent fails the first fetch (a network blip): the first run ends Failed, a retry succeeds.
  {
    id: 'i-0de0000000000a003',
    tags: { Environment: 'prod', Name: 'web-prod-flaky' },
    faults: { fetchFailures: 1 },
  },
  // Tagged and running, but the SSM agent is not registered: reported as unreachable.
  {
    id: 'i-0de0000000000a004',
    tags: { Environment: 'prod', Name: 'web-prod-no-agent' },
    managed: false,
  },
  { id: 'i-0de0000000000b001', tags: { Environment: 'dev', Name: 'web-dev-a' } },
  { id: 'i-0de0000000000b002', tags: { Environment: 'dev', Name: 'web-dev-b' } },
];

const TERMINAL = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled']);

async function main(): Promise<void> {
  await ensurePackaged();
  const clockScale = Number(process.env.LOCAL_CLOUD_CLOCK_SCALE ?? '10');
  const cloud = await startLocalCloud({
    packagedDir,
    fleet: DEMO_FLEET,
    clockScale,
    functionEnvironment: { POWERTOOLS_LOG_LEVEL: 'WARN' },
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping the local cloud …');
    await cloud.stop();
    rmSync(join(stateDir, 'endpoints.json'), { force: true });
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  const info = describeCloud(cloud);
  writeConsoleInfo(join(stateDir, 'endpoints.json'), info);

  const line = (text: string) => console.log(`${new Date().toISOString().slice(11, 19)}  ${text}`);
  console.log(`\nsecrets-fanout on the local cloud (clock ×${clockScale})\n`);
  console.log(infoLines(info).join('\n'));
  console.log("\nInstances (each directory is the instance's filesystem root):");
  for (const instance of cloud.fleet.list()) {
    const notes = [
      instance.managed ? '' : 'not SSM-managed',
      instance.faults.fetchFailures ? 'flaky agent' : '',
    ]
      .filter(Boolean)
      .join(', ');
    console.log(
      `  ${instance.id}  ${instance.tags.Environment?.padEnd(5)} ${instance.tags.Name?.padEnd(18)} ${instance.root}${notes ? `  (${notes})` : ''}`,
    );
  }
  console.log(`
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
  aws ec2 create-tags --endpoint-url ${cloud.endpoints.ec2} --resources i-… --tags Key=Environment,Value=prod
  aws sqs list-queues --endpoint-url ${cloud.endpoints.sqs}
  aws sqs receive-message --endpoint-url ${cloud.endpoints.sqs} --queue-url ${cloud.queue('DeadLetterQueue').url}
Ctrl-C stops everything.
`);

  cloud.bus.onEvent((event) => {
    if (event['detail-type'] === 'Parameter Store Change') {
      line(`parameter ${event.detail.name}: ${event.detail.operation}`);
    } else if (
      event['detail-type'] === 'EC2 Command Invocation Status-change Notification' &&
      TERMINAL.has(event.detail.status)
    ) {
      const command = cloud.ssm.commands.get(event.detail['command-id']);
      const invocation = command?.invocations.get(event.detail['instance-id']);
      const last = invocation?.stdout.trimEnd().split('\n').at(-1) ?? '';
      const error = invocation?.stderr.trimEnd().split('\n').at(-1) ?? '';
      line(
        `  ${event.detail['instance-id']}  ${invocation?.statusDetails ?? event.detail.status}  exit ${invocation?.responseCode}  ${last}${invocation?.statusDetails === 'Success' ? '' : `  ${error}`}`,
      );
    } else if (
      event['detail-type'] === 'EC2 Command Status-change Notification' &&
      TERMINAL.has(event.detail.status)
    ) {
      const command = cloud.ssm.commands.get(event.detail['command-id']);
      const counts = command ? cloud.ssm.counts(command) : undefined;
      line(
        `command ${event.detail['command-id']} ${command?.statusDetails ?? event.detail.status}: ${counts?.CompletedCount}/${command?.instanceIds.length} done, ${counts?.ErrorCount} failed`,
      );
    }
  });
  for (const fn of cloud.functions.values()) {
    fn.onInvocation((record) => {
      const result = record.result as any;
      if (record.error)
        line(`${fn.name} failed: ${record.error.errorType}: ${record.error.errorMessage}`);
      else if (result?.status === 'sent') {
        const rollout = result.rollout;
        line(
          `rollout ${rollout.rolloutId}: ${rollout.parameters.join(', ')} v${rollout.version ?? '?'} → ${rollout.environment}: ${rollout.targeted} targeted, ${rollout.unreachable.length} unreachable${rollout.unreachable.length ? ` (${rollout.unreachable.map((u: any) => `${u.instanceId} ${u.reason}`).join(', ')})` : ''}`,
        );
      } else if (result?.status === 'skipped')
        line(
          `${fn.name}: ${result.operation} on ${result.parameter}: nothing sent (${result.reason})`,
        );
    });
  }
  cloud.sns.onPublish((message) =>
    line(`ALERT ${message.subject ?? ''}\n${message.message.replace(/^/gm, '          ')}`),
  );

  line('putting the demo parameters');
  cloud.putParameter('/prod/env.php', "<?php\nreturn ['db_password' => 'demo-prod-secret'];\n");
  cloud.putParameter('/dev/env.php', "<?php\nreturn ['db_password' => 'demo-dev-secret'];\n");
}

await main();
