/**
 * What `npm start` tells the on-call engineer about the running local cloud, and what it writes
 * to .local-cloud/endpoints.json for `npm run local` (cli.ts): endpoints, the admin's
 * credentials (the same for the AWS endpoints and the SigV4-checked HTTP API), the stage, the
 * document, queues, topics, tables and functions of the stack, and where the instances' files
 * are. The banner, `npm run local -- info` and `npm run local -- env` print from this.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Endpoints, LocalCloud } from './cloud.ts';

export interface ConsoleInfo {
  pid: number;
  stage: string;
  region: string;
  stackName: string;
  endpoints: Endpoints;
  /** Environment for the AWS CLI or an SDK client as the local cloud's admin. */
  env: Record<string, string>;
  documentName: string;
  /** serverless function key (`status`) → deployed name. */
  functions: Record<string, string>;
  queues: Array<{ logicalId: string; name: string; url: string; arn: string }>;
  topics: Array<{ logicalId: string; arn: string }>;
  tables: Array<{ logicalId: string; name: string }>;
  /** Each instance's filesystem root is `<fleetRoot>/<instance id>`. */
  fleetRoot: string;
  instances: Array<{ id: string; tags: Record<string, string>; root: string; managed: boolean }>;
}

export function describeCloud(cloud: LocalCloud): ConsoleInfo {
  const functions = Object.fromEntries(
    [...cloud.functions.entries()].map(([key, fn]) => [key, fn.name]),
  );
  const stage =
    [...cloud.functions.values()].map((fn) => fn.options.environment.STAGE).find(Boolean) ??
    cloud.stackName.split('-').at(-1) ??
    'dev';
  return {
    pid: process.pid,
    stage,
    region: cloud.region,
    stackName: cloud.stackName,
    endpoints: { ...cloud.endpoints },
    env: { ...cloud.clientEnv },
    documentName: cloud.documentName,
    functions,
    queues: cloud.stack.resources('AWS::SQS::Queue').map(([logicalId]) => {
      const queue = cloud.queue(logicalId);
      return { logicalId, name: queue.name, url: queue.url, arn: queue.arn };
    }),
    topics: cloud.stack
      .resources('AWS::SNS::Topic')
      .map(([logicalId]) => ({ logicalId, arn: String(cloud.stack.ref(logicalId)) })),
    tables: cloud.stack
      .resources('AWS::DynamoDB::Table')
      .map(([logicalId]) => ({ logicalId, name: cloud.stack.physicalName(logicalId) })),
    fleetRoot: cloud.fleet.root,
    instances: cloud.fleet.list().map((instance) => ({
      id: instance.id,
      tags: instance.tags,
      root: instance.root,
      managed: instance.managed,
    })),
  };
}

export function writeConsoleInfo(file: string, info: ConsoleInfo): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(info, null, 2)}\n`);
}

/** The default place of the running cloud's description (LOCAL_CLOUD_INFO overrides it). */
export function consoleInfoPath(repoRoot: string): string {
  return process.env.LOCAL_CLOUD_INFO ?? join(repoRoot, '.local-cloud', 'endpoints.json');
}

/** Resources and credentials, for the banner and `npm run local -- info`. */
export function infoLines(info: ConsoleInfo): string[] {
  const width = Math.max(...Object.keys(info.endpoints).map((key) => key.length)) + 2;
  return [
    `Stack ${info.stackName} (stage ${info.stage}, region ${info.region})`,
    '',
    'Endpoints:',
    ...Object.entries(info.endpoints).map(
      ([service, endpoint]) => `  ${service.padEnd(width)}${endpoint}`,
    ),
    `  HTTP API   ${info.endpoints.api}  (POST /environments/{env}/resync, GET /environments/{env}/rollouts[/{id}]; SigV4, execute-api)`,
    '',
    'Credentials (the admin: every endpoint, the HTTP API included; `npm run local -- env` exports them):',
    `  AWS_ACCESS_KEY_ID=${info.env.AWS_ACCESS_KEY_ID}`,
    `  AWS_SECRET_ACCESS_KEY=${info.env.AWS_SECRET_ACCESS_KEY}`,
    `  region ${info.region}`,
    '',
    `SSM document:  ${info.documentName}`,
    'Queues:',
    ...info.queues.map((queue) => `  ${queue.logicalId.padEnd(28)} ${queue.url}`),
    'Topics:',
    ...info.topics.map((topic) => `  ${topic.logicalId.padEnd(28)} ${topic.arn}`),
    'Tables:',
    ...info.tables.map((table) => `  ${table.logicalId.padEnd(28)} ${table.name}`),
    'Functions (npm run local -- invoke <function> --data …):',
    ...Object.entries(info.functions).map(([key, name]) => `  ${key.padEnd(28)} ${name}`),
  ];
}

const CLI_SERVICES: Array<[keyof Endpoints, string]> = [
  ['ssm', 'SSM'],
  ['secretsmanager', 'SECRETS_MANAGER'],
  ['ec2', 'EC2'],
  ['sqs', 'SQS'],
  ['sns', 'SNS'],
  ['dynamodb', 'DYNAMODB'],
  ['autoscaling', 'AUTO_SCALING'],
  ['cloudwatch', 'CLOUDWATCH'],
  ['lambda', 'LAMBDA'],
];

/** Single-quotes a word for sh. */
export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * `npm run local -- env`: shell exports (`eval "$(npm run -s local -- env)"`), then, as comments,
 * the runbook's AWS CLI commands with `--endpoint-url` for CLIs before 2.13 (which ignore
 * AWS_ENDPOINT_URL_*).
 */
export function envLines(info: ConsoleInfo): string[] {
  const exports: Array<[string, string]> = [
    ['AWS_ACCESS_KEY_ID', info.env.AWS_ACCESS_KEY_ID ?? ''],
    ['AWS_SECRET_ACCESS_KEY', info.env.AWS_SECRET_ACCESS_KEY ?? ''],
    ['AWS_REGION', info.region],
    ['AWS_DEFAULT_REGION', info.region],
    ...CLI_SERVICES.map(
      ([key, suffix]) => [`AWS_ENDPOINT_URL_${suffix}`, info.endpoints[key]] as [string, string],
    ),
    ['SECRETS_FANOUT_API', info.endpoints.api],
  ];
  const dlq = info.queues.find((queue) => /dead/i.test(queue.logicalId)) ?? info.queues[0];
  const topic = info.topics[0];
  const table = info.tables.find((t) => /rollout/i.test(t.logicalId)) ?? info.tables[0];
  const status = info.functions.status ?? `${info.stackName}-status`;
  const e = (key: keyof Endpoints) => `--endpoint-url ${info.endpoints[key]}`;
  const commands = [
    `aws ssm put-parameter ${e('ssm')} --name /prod/env.php --type SecureString --overwrite --value '…'`,
    `aws ssm describe-parameters ${e('ssm')}`,
    `aws ssm describe-document ${e('ssm')} --name ${info.documentName}`,
    `aws ssm list-commands ${e('ssm')} --filters key=DocumentName,value=${info.documentName}`,
    `aws ssm list-command-invocations ${e('ssm')} --instance-id i-… --details`,
    `aws ssm describe-instance-information ${e('ssm')}`,
    `aws ec2 describe-instances ${e('ec2')}`,
    `aws ec2 create-tags ${e('ec2')} --resources i-… --tags Key=Environment,Value=prod`,
    `aws sqs list-queues ${e('sqs')}`,
    ...(dlq
      ? [
          `aws sqs get-queue-attributes ${e('sqs')} --queue-url ${dlq.url} --attribute-names ApproximateNumberOfMessages`,
          `aws sqs receive-message ${e('sqs')} --queue-url ${dlq.url}`,
        ]
      : []),
    ...(topic ? [`aws sns list-subscriptions-by-topic ${e('sns')} --topic-arn ${topic.arn}`] : []),
    ...(table
      ? [`aws dynamodb scan ${e('dynamodb')} --table-name ${table.name} --max-items 5`]
      : []),
    `aws autoscaling describe-auto-scaling-groups ${e('autoscaling')}`,
    `aws lambda invoke ${e('lambda')} --function-name ${status} --payload '{"rolloutId":"…"}' /dev/stdout   # aws-cli v2: add --cli-binary-format raw-in-base64-out`,
  ];
  return [
    `# The local cloud (stack ${info.stackName}, stage ${info.stage}): eval "$(npm run -s local -- env)"`,
    ...exports.map(([key, value]) => `export ${key}=${shellQuote(value)}`),
    '#',
    '# aws-cli before 2.13 ignores AWS_ENDPOINT_URL_*: the same commands with --endpoint-url',
    ...commands.map((command) => `#   ${command}`),
    '#',
    '# With these exports the commands alerts print work as printed (serverless sends Invoke to',
    '# AWS_ENDPOINT_URL_LAMBDA), or without them, with `npm run local -- invoke` in their place:',
    `#   npx serverless invoke -f status --stage ${info.stage} --data '{"rolloutId":"…"}'`,
    `#   npm run local -- invoke status --stage ${info.stage} --data '{"rolloutId":"…"}'`,
    `#   npm run local -- invoke resync --stage ${info.stage} --data '{"parameter":"/prod/env.php"}'`,
  ];
}
