/**
 * `npm run local -- <command>`: talks to the cloud `npm start` runs (through the endpoints it
 * wrote to .local-cloud/endpoints.json), with the SDK, as the local cloud's admin.
 *   put <name> <value> [--type String|SecureString]   PutParameter (overwrite)
 *   delete <name>                                      DeleteParameter
 *   status                                             instances and their last invocation
 *   status <rolloutId>                                 GET /environments/{env}/rollouts/{id} (signed)
 *   rollouts <parameter> [limit]                       GET /environments/{env}/rollouts?parameter=…
 *   resync <parameter> | --environment <env> [--instances i-1,i-2] [--dry-run]
 *                                                      POST /resync, signed as the admin
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EC2Client, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import {
  DeleteParameterCommand,
  ListCommandInvocationsCommand,
  PutParameterCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { repoRoot } from '../support/package.ts';
import { signedFetch } from './sigv4.ts';

interface Running {
  region: string;
  endpoints: { ssm: string; ec2: string; api: string };
  env: Record<string, string>;
  instances: Array<{ id: string; tags: Record<string, string>; root: string; managed: boolean }>;
}

function running(): Running {
  const file = join(repoRoot, '.local-cloud', 'endpoints.json');
  if (!existsSync(file)) {
    console.error('No local cloud is running: start one with `npm start` in another terminal.');
    process.exit(1);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as Running;
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
            const { CommandInvocations = [] } = await ssm.send(
              new ListCommandInvocationsCommand({ InstanceId: id, MaxResults: 1, Details: true }),
            );
            const last = CommandInvocations[0];
            const result =
              last?.CommandPlugins?.[0]?.Output?.split('\n')
                .filter((text) => text.startsWith('secrets-fanout result='))
                .at(-1) ?? '';
            console.log(
              [
                id,
                (tags.Environment ?? '-').padEnd(5),
                (instance.State?.Name ?? '').padEnd(8),
                known?.managed === false ? 'not-managed' : 'managed    ',
                last ? `${last.StatusDetails} ${result}` : 'no command yet',
              ].join('  '),
            );
          }
        }
        ec2.destroy();
        break;
      }
      default:
        throw new Error(
          'usage: npm run local -- put <name> <value> | delete <name> | status [rolloutId] | rollouts <parameter> | resync <parameter>|--environment <env>',
        );
    }
  } finally {
    ssm.destroy();
  }
}

main(process.argv.slice(2)).catch((error: Error) => {
  console.error(`${error.name === 'Error' ? '' : `${error.name}: `}${error.message}`);
  process.exit(1);
});
