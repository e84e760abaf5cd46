/**
 * `npm run local -- <command>`: talks to the cloud `npm start` runs (through the endpoints it
 * wrote to .local-cloud/endpoints.json), with the SDK, as the local cloud's admin.
 *   put <name> <value> [--type String|SecureString]   PutParameter (overwrite)
 *   put-secret <name> <value>                        CreateSecret, or PutSecretValue (AWSCURRENT)
 *   delete <name>                                      DeleteParameter
 *   status                                             each instance's files on disk (path,
 *                                                      version written, owner, mode, size, mtime)
 *   status <rolloutId>                                 GET /environments/{env}/rollouts/{id} (signed)
 *   rollouts <parameter> [limit]                       GET /environments/{env}/rollouts?parameter=…
 *   resync <parameter> | --environment <env> [--instances i-1,i-2] [--dry-run]
 *                                                      POST /environments/{env}/resync, signed
 *   resume <rolloutId> | abandon <rolloutId>           a halted staged rollout: POST
 *                                                      /environments/{env}/resync {rolloutId, action}
 *   invoke [-f] <function> [--stage s] [--data '{…}' | --path file.json]
 *                                                      as `serverless invoke -f`, on the local stack
 *   alarm <name> <OK|ALARM|INSUFFICIENT_DATA> [--reason text]
 *                                                      SetAlarmState; an alarm CloudWatch does not
 *                                                      have (SetAlarmState would answer
 *                                                      ResourceNotFound) is first created with
 *                                                      PutMetricAlarm on a placeholder metric, and
 *                                                      the command says so
 *   alarms                                             every alarm: name, state, since, reason
 *   info                                               document, queues, topics, tables, API URL
 *   env                                                shell exports for the AWS CLI / SDKs, and
 *                                                      the runbook's commands with --endpoint-url
 * The file it reads is LOCAL_CLOUD_INFO, default .local-cloud/endpoints.json. No command prints
 * a secret value: `status` reads the files' metadata only, never their content.
 */
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CloudWatchClient,
  DescribeAlarmsCommand,
  type MetricAlarm,
  PutMetricAlarmCommand,
  paginateDescribeAlarms,
  SetAlarmStateCommand,
} from '@aws-sdk/client-cloudwatch';
import { EC2Client, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import {
  type Command,
  type CommandInvocation,
  DeleteParameterCommand,
  PutParameterCommand,
  paginateListCommandInvocations,
  paginateListCommands,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { repoRoot } from '../support/package.ts';
import { placeholderAlarm } from './cloudwatch.ts';
import { type ConsoleInfo, consoleInfoPath, envLines, infoLines } from './console.ts';
import { recordedOwner } from './fleet.ts';
import { signedFetch } from './sigv4.ts';

function running(): ConsoleInfo {
  const file = consoleInfoPath(repoRoot);
  if (!existsSync(file)) {
    console.error('No local cloud is running: start one with `npm start` in another terminal.');
    process.exit(1);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as ConsoleInfo;
}

/** `secrets-fanout result=updated version=7` (the document's last stdout line), parsed. */
function resultOf(invocation: CommandInvocation): Record<string, string> | undefined {
  const line = invocation.CommandPlugins?.[0]?.Output?.split('\n')
    .filter((text) => text.startsWith('secrets-fanout result='))
    .at(-1);
  if (line === undefined) return undefined;
  return Object.fromEntries(
    line
      .slice('secrets-fanout '.length)
      .split(' ')
      .map((pair) => [pair.split('=')[0] ?? '', pair.slice(pair.indexOf('=') + 1)]),
  );
}

/**
 * The files secrets-fanout manages on one instance, from the instance's directory (metadata
 * only: the content is never read) and its command history: which version the last successful
 * run wrote (or found already there).
 */
async function filesOf(
  ssm: SSMClient,
  cloud: ConsoleInfo,
  instanceId: string,
): Promise<{ last?: CommandInvocation; lines: string[] }> {
  const commands = new Map<string, Command>();
  for await (const page of paginateListCommands({ client: ssm }, { InstanceId: instanceId }))
    for (const command of page.Commands ?? []) commands.set(command.CommandId ?? '', command);
  const invocations: CommandInvocation[] = [];
  for await (const page of paginateListCommandInvocations(
    { client: ssm },
    { InstanceId: instanceId, Details: true },
  ))
    invocations.push(...(page.CommandInvocations ?? []));
  // Newest first, whatever order the pages came in.
  invocations.sort(
    (a, b) => (b.RequestedDateTime?.getTime() ?? 0) - (a.RequestedDateTime?.getTime() ?? 0),
  );
  const ofDocument = invocations.filter(
    (invocation) => invocation.DocumentName === cloud.documentName,
  );
  const paths = new Map<string, string>();
  for (const invocation of ofDocument) {
    const parameters = commands.get(invocation.CommandId ?? '')?.Parameters ?? {};
    const path = parameters.DestinationPath?.[0];
    if (path && !paths.has(path)) paths.set(path, parameters.ParameterName?.[0] ?? '?');
  }
  const root = join(cloud.fleetRoot, instanceId);
  const lines: string[] = [];
  for (const [path, parameter] of paths) {
    const runs = ofDocument.filter(
      (invocation) =>
        commands.get(invocation.CommandId ?? '')?.Parameters?.DestinationPath?.[0] === path,
    );
    const written = runs.find(
      (invocation) =>
        invocation.StatusDetails === 'Success' &&
        ['updated', 'unchanged'].includes(resultOf(invocation)?.result ?? ''),
    );
    const latest = runs[0];
    const local = join(root, path);
    let stat: ReturnType<typeof lstatSync> | undefined;
    try {
      stat = lstatSync(local);
    } catch {
      stat = undefined;
    }
    const owner = recordedOwner(join(root, '.local-cloud'), local);
    const version = written ? `v${resultOf(written)?.version ?? '?'}` : '-';
    const backups = Array.from({ length: 99 }, (_, index) => `${local}.bak.${index + 1}`).filter(
      (backup) => existsSync(backup),
    ).length;
    const notes = [
      `parameter ${parameter}`,
      written
        ? `${resultOf(written)?.result} by command ${written.CommandId}`
        : 'no successful run',
      latest && latest !== written
        ? `latest run ${latest.StatusDetails}${resultOf(latest)?.reason ? ` (${resultOf(latest)?.reason}${resultOf(latest)?.version ? ` v${resultOf(latest)?.version}` : ''})` : ''}`
        : '',
      backups > 0 ? `${backups} backup${backups === 1 ? '' : 's'}` : '',
    ].filter(Boolean);
    lines.push(
      stat === undefined
        ? `  ${path}  no file  (${notes.join('; ')})`
        : [
            `  ${path}`,
            version.padEnd(4),
            (owner ? `${owner.owner}:${owner.group}` : 'owner ?').padEnd(15),
            `0${(Number(stat.mode) & 0o7777).toString(8)}`.slice(-4),
            `${stat.size} B`.padStart(8),
            new Date(Number(stat.mtimeMs)).toISOString(),
            `(${notes.join('; ')})`,
          ].join('  '),
    );
  }
  return { ...(invocations[0] ? { last: invocations[0] } : {}), lines };
}

/** The value of `--name value` / `-n value` (removed from args), or undefined. */
function takeFlag(args: string[], ...names: string[]): string | undefined {
  const at = args.findIndex((arg) => names.includes(arg));
  if (at < 0) return undefined;
  const [, value] = args.splice(at, 2);
  if (value === undefined) throw new Error(`${names[0]} needs a value`);
  return value;
}

// The demo's environments (serverless.yml custom.fanout.environments).
const ENVIRONMENTS = ['dev', 'staging', 'prod'];

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  const cloud = running();
  const credentials = {
    accessKeyId: cloud.env.AWS_ACCESS_KEY_ID ?? '',
    secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY ?? '',
  };
  if (command === 'info') {
    console.log(infoLines(cloud).join('\n'));
    return;
  }
  if (command === 'env') {
    console.log(envLines(cloud).join('\n'));
    return;
  }
  if (command === 'invoke') {
    await invoke(cloud, credentials, args);
    return;
  }
  if (command === 'alarm' || command === 'alarms') {
    await alarms(cloud, credentials, command, args);
    return;
  }
  const ssm = new SSMClient({
    region: cloud.region,
    endpoint: cloud.endpoints.ssm,
    credentials,
    maxAttempts: 1,
  });
  const api = async (path: string, body?: unknown) => {
    const response = await signedFetch(`${cloud.endpoints.api}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      credentials,
      region: cloud.region,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    let shown = text;
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // not JSON: show as is
    }
    console.log(`HTTP ${response.status}\n${shown}`);
    if (response.status >= 400) process.exitCode = 1;
  };
  /** The first of these GET paths the API answers 200, or undefined. */
  const firstAnswering = async (paths: string[]) => {
    for (const path of paths) {
      const response = await signedFetch(`${cloud.endpoints.api}${path}`, {
        method: 'GET',
        credentials,
        region: cloud.region,
      });
      await response.text();
      if (response.status === 200) return path;
    }
    return undefined;
  };
  /** The environment a mapped parameter belongs to (the API says 404 for the others). */
  const environmentOf = async (parameter: string) => {
    const query = new URLSearchParams({ parameter, limit: '1' });
    const found = await firstAnswering(
      ENVIRONMENTS.map((env) => `/environments/${env}/rollouts?${query}`),
    );
    return found?.split('/')[2] ?? 'prod';
  };
  try {
    // `status` alone lists the instances; with a rollout id it asks the status endpoint.
    switch (command === 'status' && args.length === 0 ? 'instances' : command) {
      case 'resync': {
        const flag = (name: string) => {
          const at = args.indexOf(name);
          return at >= 0 ? args.splice(at, 2)[1] : undefined;
        };
        const dryRun = args.includes('--dry-run');
        const environment = flag('--environment');
        const instances = flag('--instances');
        const [parameter] = args.filter((arg) => arg !== '--dry-run');
        if ((parameter === undefined) === (environment === undefined))
          throw new Error(
            'usage: npm run local -- resync <parameter> | --environment <env> [--instances i-1,i-2] [--dry-run]',
          );
        // The environment is in the route (IAM grants it per environment): the flag's, or the
        // one whose rollouts of the parameter the API agrees to list.
        const env = environment ?? (await environmentOf(parameter ?? ''));
        await api(`/environments/${env}/resync`, {
          ...(parameter === undefined ? {} : { parameter }),
          ...(instances === undefined ? {} : { instanceIds: instances.split(',') }),
          ...(dryRun ? { dryRun: true } : {}),
        });
        break;
      }
      case 'resume':
      case 'abandon': {
        // A halted staged rollout: the environment is the one whose API knows the rollout.
        const [rolloutId] = args;
        if (!rolloutId) throw new Error(`usage: npm run local -- ${command} <rolloutId>`);
        const found = await firstAnswering(
          ENVIRONMENTS.map(
            (env) => `/environments/${env}/rollouts/${encodeURIComponent(rolloutId)}`,
          ),
        );
        const env = found?.split('/')[2] ?? 'prod';
        await api(`/environments/${env}/resync`, { rolloutId, action: command });
        break;
      }
      case 'rollouts': {
        const [parameter, limit = '10'] = args;
        if (!parameter) throw new Error('usage: npm run local -- rollouts <parameter> [limit]');
        await api(
          `/environments/${await environmentOf(parameter)}/rollouts?${new URLSearchParams({ parameter, limit })}`,
        );
        break;
      }
      case 'status': {
        const id = encodeURIComponent(args[0] ?? '');
        const found = await firstAnswering(
          ENVIRONMENTS.map((env) => `/environments/${env}/rollouts/${id}`),
        );
        await api(found ?? `/environments/prod/rollouts/${id}`);
        break;
      }
      case 'put': {
        const typeAt = args.indexOf('--type');
        const type = typeAt >= 0 ? args.splice(typeAt, 2)[1] : 'SecureString';
        const [name, value] = args;
        if (!name || value === undefined)
          throw new Error(
            'usage: npm run local -- put <name> <value> [--type String|SecureString]',
          );
        const { Version } = await ssm.send(
          new PutParameterCommand({
            Name: name,
            Value: value,
            Type: type as 'SecureString',
            Overwrite: true,
          }),
        );
        console.log(
          `${name} is now version ${Version}; watch the rollout in the npm start terminal.`,
        );
        break;
      }
      case 'put-secret': {
        const [name, value] = args;
        if (!name || value === undefined)
          throw new Error('usage: npm run local -- put-secret <name> <value>');
        const secrets = new SecretsManagerClient({
          region: cloud.region,
          endpoint: cloud.endpoints.secretsmanager,
          credentials,
        });
        const { VersionId } = await secrets
          .send(new PutSecretValueCommand({ SecretId: name, SecretString: value }))
          .catch((error) => {
            if ((error as Error).name !== 'ResourceNotFoundException') throw error;
            return secrets.send(new CreateSecretCommand({ Name: name, SecretString: value }));
          });
        console.log(
          `${name} is now version ${VersionId} (AWSCURRENT); watch the rollout in the npm start terminal.`,
        );
        break;
      }
      case 'delete': {
        const [name] = args;
        if (!name) throw new Error('usage: npm run local -- delete <name>');
        await ssm.send(new DeleteParameterCommand({ Name: name }));
        console.log(`${name} deleted.`);
        break;
      }
      case 'instances': {
        const ec2 = new EC2Client({
          region: cloud.region,
          endpoint: cloud.endpoints.ec2,
          credentials,
        });
        for await (const page of paginateDescribeInstances({ client: ec2 }, {})) {
          for (const instance of (page.Reservations ?? []).flatMap(
            (reservation) => reservation.Instances ?? [],
          )) {
            const id = instance.InstanceId ?? '';
            const tags = Object.fromEntries(
              (instance.Tags ?? []).map((tag) => [tag.Key, tag.Value]),
            );
            const known = cloud.instances.find((candidate) => candidate.id === id);
            const { last, lines } = await filesOf(ssm, cloud, id);
            const result = last ? resultOf(last) : undefined;
            console.log(
              [
                id,
                (tags.Environment ?? '-').padEnd(5),
                (tags.Name ?? '').padEnd(18),
                (instance.State?.Name ?? '').padEnd(8),
                known?.managed === false ? 'not-managed' : 'managed    ',
                last
                  ? `last command ${last.StatusDetails}${result ? ` result=${result.result}${result.version ? ` v${result.version}` : ''}` : ''}`
                  : 'no command yet',
              ].join('  '),
            );
            for (const line of lines) console.log(line);
          }
        }
        ec2.destroy();
        break;
      }
      default:
        throw new Error(
          'usage: npm run local -- put <name> <value> | put-secret <name> <value> | delete <name> | status [rolloutId] | rollouts <parameter> | resync <parameter>|--environment <env> | invoke <function> --data {…} | alarm <name> <OK|ALARM|INSUFFICIENT_DATA> [--reason text] | alarms | info | env',
        );
    }
  } finally {
    ssm.destroy();
  }
}

/**
 * `serverless invoke -f <function> [--stage s] [--data d | --path p] [--type t] [--log]` against
 * the local stack: the Lambda API's Invoke on the local cloud, printed as serverless does (the
 * function's result as JSON, 4-space indented; an error fails with "Invoked function failed").
 */
async function invoke(
  cloud: ConsoleInfo,
  credentials: { accessKeyId: string; secretAccessKey: string },
  argv: string[],
): Promise<void> {
  const args = [...argv];
  const usage =
    "usage: npm run local -- invoke [-f] <function> [--stage <stage>] [--data '{…}' | --path event.json] [--type RequestResponse|Event|DryRun] [--log]";
  const key = takeFlag(args, '--function', '-f');
  const stage = takeFlag(args, '--stage', '-s');
  const region = takeFlag(args, '--region', '-r');
  const data = takeFlag(args, '--data', '-d');
  const path = takeFlag(args, '--path', '-p');
  const type = takeFlag(args, '--type', '-t') ?? 'RequestResponse';
  const log = args.includes('--log') || args.includes('-l');
  const rest = args.filter((arg) => arg !== '--log' && arg !== '-l');
  const name = key ?? rest.shift();
  if (name === undefined || rest.length > 0) throw new Error(usage);
  if (stage !== undefined && stage !== cloud.stage)
    throw new Error(
      `the local cloud runs stage ${cloud.stage}, not ${stage}: use --stage ${cloud.stage}`,
    );
  if (region !== undefined && region !== cloud.region)
    throw new Error(`the local cloud runs in ${cloud.region}, not ${region}`);
  const functionName = cloud.functions[name];
  if (functionName === undefined)
    throw new Error(
      `Function "${name}" doesn't exist in this Service (${Object.keys(cloud.functions).join(', ')})`,
    );
  let text = data ?? (path === undefined ? '' : readFileSync(path, 'utf8'));
  // As serverless: JSON when it parses, else the string itself.
  try {
    text = JSON.stringify(JSON.parse(text === '' ? '{}' : text));
  } catch {
    text = JSON.stringify(text);
  }
  const response = await signedFetch(
    `${cloud.endpoints.lambda}/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`,
    {
      method: 'POST',
      body: text,
      credentials,
      region: cloud.region,
      service: 'lambda',
      headers: {
        'x-amz-invocation-type': type,
        ...(log && type === 'RequestResponse' ? { 'x-amz-log-type': 'Tail' } : {}),
      },
    },
  );
  const payload = await response.text();
  if (response.status >= 300) {
    throw new Error(
      `${response.headers.get('x-amzn-errortype') ?? `HTTP ${response.status}`}: ${payload}`,
    );
  }
  if (payload !== '') console.log(JSON.stringify(JSON.parse(payload), null, 4));
  const logs = response.headers.get('x-amz-log-result');
  if (logs) {
    console.log('--------------------------------------------------------------------');
    console.log(Buffer.from(logs, 'base64').toString('utf8').trimEnd());
  }
  if (response.headers.get('x-amz-function-error')) throw new Error('Invoked function failed');
}

const ALARM_STATES = ['OK', 'ALARM', 'INSUFFICIENT_DATA'] as const;

/**
 * `alarm <name> <state> [--reason text]` and `alarms`, through the local CloudWatch endpoint
 * with the SDK. SetAlarmState refuses an alarm that does not exist (ResourceNotFound), so
 * `alarm` creates a missing one first with PutMetricAlarm (a placeholder metric,
 * LocalCloud/<name>, Sum over 60 s > 0) — it starts INSUFFICIENT_DATA, as in AWS — and says so.
 */
async function alarms(
  cloud: ConsoleInfo,
  credentials: { accessKeyId: string; secretAccessKey: string },
  command: 'alarm' | 'alarms',
  argv: string[],
): Promise<void> {
  if (!cloud.endpoints.cloudwatch)
    throw new Error('this local cloud has no CloudWatch endpoint: restart `npm start`');
  const cloudwatch = new CloudWatchClient({
    region: cloud.region,
    endpoint: cloud.endpoints.cloudwatch,
    credentials,
    maxAttempts: 1,
  });
  try {
    if (command === 'alarms') {
      const found: MetricAlarm[] = [];
      for await (const page of paginateDescribeAlarms({ client: cloudwatch }, {}))
        found.push(...(page.MetricAlarms ?? []));
      if (found.length === 0) console.log('No alarms.');
      const width = Math.max(0, ...found.map((alarm) => (alarm.AlarmName ?? '').length));
      for (const alarm of found) {
        console.log(
          [
            (alarm.AlarmName ?? '').padEnd(width),
            (alarm.StateValue ?? '').padEnd(17),
            alarm.StateUpdatedTimestamp?.toISOString() ?? '',
            alarm.StateReason ?? '',
          ].join('  '),
        );
      }
      return;
    }
    const args = [...argv];
    const reason = takeFlag(args, '--reason') ?? 'Set by npm run local -- alarm';
    const [name, state] = args;
    const usage =
      'usage: npm run local -- alarm <name> <OK|ALARM|INSUFFICIENT_DATA> [--reason text]';
    if (name === undefined || args.length !== 2) throw new Error(usage);
    const value = ALARM_STATES.find((candidate) => candidate === state);
    if (value === undefined) throw new Error(usage);
    const { MetricAlarms = [] } = await cloudwatch.send(
      new DescribeAlarmsCommand({ AlarmNames: [name] }),
    );
    let previous = MetricAlarms[0]?.StateValue;
    if (previous === undefined) {
      await cloudwatch.send(
        new PutMetricAlarmCommand({
          ...placeholderAlarm(name),
          AlarmDescription: 'Created by npm run local -- alarm',
        }),
      );
      previous = 'INSUFFICIENT_DATA';
      console.log(
        `${name} did not exist: created it with PutMetricAlarm (placeholder metric LocalCloud/${name}); a new alarm starts INSUFFICIENT_DATA.`,
      );
    }
    await cloudwatch.send(
      new SetAlarmStateCommand({ AlarmName: name, StateValue: value, StateReason: reason }),
    );
    console.log(`${name}: ${previous} -> ${value} (${reason})`);
  } finally {
    cloudwatch.destroy();
  }
}

main(process.argv.slice(2)).catch((error: Error) => {
  console.error(`${error.name === 'Error' ? '' : `${error.name}: `}${error.message}`);
  process.exit(1);
});
