/**
 * The `aws` of a local-cloud instance: exactly the calls the ReplaceSecretsFile document makes,
 *   aws ssm get-parameter --name N [--with-decryption] [--query Q] [--output text|json] [--region R]
 *   aws secretsmanager get-secret-value --secret-id S [--version-stage L] [--query Q] [--output …]
 *   aws ssm get-parameters-by-path --path P [--with-decryption] [--query Q] [--output json|text]
 *     (every page, NextToken followed as the CLI's auto-pagination does, the query applied to all)
 * sent to the local SSM (or Secrets Manager) endpoint (AWS_ENDPOINT_URL_SSM) signed with the instance's identity (the
 * agent exports AWS_ACCESS_KEY_ID=<instance id>; SigV4 without the SDK), and printed as AWS CLI v2 prints it:
 * - `--output text` writes a scalar raw plus "\n", and a flat list joined by tabs plus "\n"
 *   (awscli/text.py, research notes §10); `None` for a missing value;
 * - a service error goes to stderr as "\nAn error occurred (<Code>) when calling the
 *   GetParameter operation: <message>\n" with exit status 254; a connection failure as
 *   "\nCould not connect to the endpoint URL: \"<url>\"\n" with 255
 *   (https://docs.aws.amazon.com/cli/latest/topic/return-codes.html: 254 service error,
 *   255 general failure, 252 bad command line).
 * Fault: while `<state>/fetch-failures` holds N > 0, a call fails to connect and decrements it.
 */
import { createHash, createHmac } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const USAGE = `usage: aws [options] <command> <subcommand> [<subcommand> ...] [parameters]
To see help text, you can run:

  aws help
  aws <command> help
  aws <command> <subcommand> help
`;

function usageError(message: string): never {
  process.stderr.write(`\n${USAGE}\naws: error: ${message}\n`);
  process.exit(252);
}

interface Options {
  command: 'get-parameter' | 'get-secret-value' | 'get-parameters-by-path';
  name?: string;
  secretId?: string;
  versionStage?: string;
  path?: string;
  withDecryption: boolean;
  query?: string;
  output: string;
  region?: string;
  endpointUrl?: string;
}

function parseArgs(argv: string[]): Options {
  const positional: string[] = [];
  const options: Options = {
    command: 'get-parameter',
    withDecryption: false,
    output: process.env.AWS_DEFAULT_OUTPUT ?? 'json',
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    const value = () => {
      const next = argv[i + 1];
      if (next === undefined) usageError(`argument ${arg}: expected one argument`);
      i += 1;
      return next;
    };
    switch (arg) {
      case '--name':
        options.name = value();
        break;
      case '--secret-id':
        options.secretId = value();
        break;
      case '--version-stage':
        options.versionStage = value();
        break;
      case '--path':
        options.path = value();
        break;
      case '--with-decryption':
        options.withDecryption = true;
        break;
      case '--no-with-decryption':
        options.withDecryption = false;
        break;
      case '--query':
        options.query = value();
        break;
      case '--output':
        options.output = value();
        break;
      case '--region':
        options.region = value();
        break;
      case '--endpoint-url':
        options.endpointUrl = value();
        break;
      default:
        if (arg.startsWith('--')) usageError(`Unknown options: ${arg}`);
        positional.push(arg);
    }
  }
  const command = positional.join(' ');
  if (command === 'ssm get-parameter') {
    if (options.name === undefined) usageError('the following arguments are required: --name');
  } else if (command === 'secretsmanager get-secret-value') {
    options.command = 'get-secret-value';
    if (options.secretId === undefined)
      usageError('the following arguments are required: --secret-id');
  } else if (command === 'ssm get-parameters-by-path') {
    options.command = 'get-parameters-by-path';
    if (options.path === undefined) usageError('the following arguments are required: --path');
  } else {
    usageError(
      `the local-cloud aws implements only "aws ssm get-parameter", "aws ssm get-parameters-by-path" and "aws secretsmanager get-secret-value", not "aws ${command}"`,
    );
  }
  if (options.output !== 'text' && options.output !== 'json') {
    usageError(`argument --output: Invalid choice, valid choices are: json | text`);
  }
  return options;
}

/**
 * The JMESPath subset the document uses: `Parameter.Field`, `Parameter.[A,B]`, `[A,B]` (a
 * secret) and `Parameters[].[A,B]` (a path).
 */
function applyQuery(response: Record<string, any>, query: string | undefined): unknown {
  if (query === undefined) return response;
  const top = /^\[([A-Za-z]+(?:,[A-Za-z]+)*)\]$/.exec(query);
  if (top) return (top[1] as string).split(',').map((field) => response[field] ?? null);
  const each = /^Parameters\[\]\.\[([A-Za-z]+(?:,[A-Za-z]+)*)\]$/.exec(query);
  if (each) {
    const fields = (each[1] as string).split(',');
    return ((response.Parameters ?? []) as Record<string, unknown>[]).map((parameter) =>
      fields.map((field) => parameter[field] ?? null),
    );
  }
  const list = /^Parameter\.\[([A-Za-z]+(?:,[A-Za-z]+)*)\]$/.exec(query);
  if (list)
    return (list[1] as string).split(',').map((field) => response.Parameter?.[field] ?? null);
  const field = /^Parameter\.([A-Za-z]+)$/.exec(query);
  if (field) return response.Parameter?.[field[1] as string] ?? null;
  usageError(`the local-cloud aws does not evaluate the query ${query}`);
}

function text(value: unknown): string {
  const scalar = (item: unknown) => (item === null || item === undefined ? 'None' : String(item));
  // A list of lists: one row per inner list (awscli/text.py).
  if (Array.isArray(value) && value.every(Array.isArray)) {
    return value.map((row) => `${(row as unknown[]).map(scalar).join('\t')}\n`).join('');
  }
  if (Array.isArray(value)) return `${value.map(scalar).join('\t')}\n`;
  return `${scalar(value)}\n`;
}

function failFetchFault(endpoint: string): void {
  const state = process.env.LOCAL_CLOUD_INSTANCE_STATE;
  if (!state) return;
  const file = join(state, 'fetch-failures');
  const left = existsSync(file) ? Number(readFileSync(file, 'utf8').trim() || '0') : 0;
  if (left > 0) {
    writeFileSync(file, String(left - 1));
    process.stderr.write(`\nCould not connect to the endpoint URL: "${endpoint}/"\n`);
    process.exit(255);
  }
}

const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) =>
  createHmac('sha256', key).update(data).digest();

/**
 * A SigV4-signed SSM JSON 1.1 call, without the SDK (loading it costs ~1 s per call, and the
 * document runs this once per instance). Signing as documented in
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html.
 */
async function callSsm(
  endpoint: string,
  region: string,
  operation: string,
  input: unknown,
  service: { signingName: string; targetPrefix: string } = {
    signingName: 'ssm',
    targetPrefix: 'AmazonSSM',
  },
): Promise<{ status: number; body: Record<string, any> }> {
  const accessKeyId = process.env.AWS_ACCESS_KEY_ID ?? '';
  const secret = process.env.AWS_SECRET_ACCESS_KEY ?? '';
  if (!accessKeyId || !secret) {
    process.stderr.write(
      '\nUnable to locate credentials. You can configure credentials by running "aws configure".\n',
    );
    process.exit(253);
  }
  const url = new URL(endpoint);
  const body = JSON.stringify(input);
  const amzDate = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = {
    'content-type': 'application/x-amz-json-1.1',
    host: url.host,
    'x-amz-date': amzDate,
    'x-amz-target': `${service.targetPrefix}.${operation}`,
  };
  if (process.env.AWS_SESSION_TOKEN)
    headers['x-amz-security-token'] = process.env.AWS_SESSION_TOKEN;
  const names = Object.keys(headers).sort();
  const signedHeaders = names.join(';');
  const canonical = [
    'POST',
    url.pathname || '/',
    '',
    ...names.map((name) => `${name}:${headers[name]}`),
    '',
    signedHeaders,
    sha256(body),
  ].join('\n');
  const scope = `${day}/${region}/${service.signingName}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(
    hmac(hmac(hmac(`AWS4${secret}`, day), region), service.signingName),
    'aws4_request',
  );
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  const { host: _host, ...sent } = headers;
  // node:http rather than fetch: loading undici would double the start-up time of every call.
  const { request } = await import(url.protocol === 'https:' ? 'node:https' : 'node:http');
  return new Promise((resolve, reject) => {
    const call = request(
      url,
      { method: 'POST', headers: { ...sent, 'content-length': Buffer.byteLength(body) } },
      (response: import('node:http').IncomingMessage) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({
              status: response.statusCode ?? 0,
              body: text ? (JSON.parse(text) as Record<string, any>) : {},
            });
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    call.on('error', reject);
    call.end(body);
  });
}

// The CLI's standard retry mode: 3 attempts for throttling and server errors.
const RETRYABLE = new Set([
  'ThrottlingException',
  'Throttling',
  'RequestLimitExceeded',
  'InternalServerError',
]);

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!region) {
    process.stderr.write(
      '\nYou must specify a region. You can also configure your region by running "aws configure".\n',
    );
    process.exit(253);
  }
  const secrets = options.command === 'get-secret-value';
  const endpoint =
    options.endpointUrl ??
    (secrets ? process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER : process.env.AWS_ENDPOINT_URL_SSM) ??
    process.env.AWS_ENDPOINT_URL ??
    `https://${secrets ? 'secretsmanager' : 'ssm'}.${region}.amazonaws.com`;
  const service = secrets
    ? { signingName: 'secretsmanager', targetPrefix: 'secretsmanager' }
    : { signingName: 'ssm', targetPrefix: 'AmazonSSM' };
  failFetchFault(endpoint);
  const call = (operation: string, input: unknown) =>
    callWithRetries(endpoint, region, service, operation, input);
  let response: Record<string, any>;
  if (options.command === 'get-parameter') {
    response = await call('GetParameter', {
      Name: options.name,
      WithDecryption: options.withDecryption,
    });
  } else if (options.command === 'get-secret-value') {
    response = await call('GetSecretValue', {
      SecretId: options.secretId,
      ...(options.versionStage === undefined ? {} : { VersionStage: options.versionStage }),
    });
  } else {
    // Auto-pagination: every page, then the query over the merged Parameters.
    const parameters: unknown[] = [];
    let token: string | undefined;
    do {
      const page = await call('GetParametersByPath', {
        Path: options.path,
        WithDecryption: options.withDecryption,
        ...(token === undefined ? {} : { NextToken: token }),
      });
      parameters.push(...((page.Parameters ?? []) as unknown[]));
      token = typeof page.NextToken === 'string' ? page.NextToken : undefined;
    } while (token !== undefined);
    response = { Parameters: parameters };
  }
  const result = applyQuery(response, options.query);
  if (options.output === 'text') process.stdout.write(text(result));
  // json.dump(indent=4, ensure_ascii=False) (awscli/formatter.py JSONFormatter): for these
  // shapes, JSON.stringify with 4 spaces prints the same text.
  else process.stdout.write(`${JSON.stringify(result, null, 4)}\n`);
}

/** One operation with the CLI's retries; prints the CLI's error and exits when it fails. */
async function callWithRetries(
  endpoint: string,
  region: string,
  service: { signingName: string; targetPrefix: string },
  operation: string,
  input: unknown,
): Promise<Record<string, any>> {
  for (let attempt = 1; ; attempt += 1) {
    let reply: { status: number; body: Record<string, any> };
    try {
      reply = await callSsm(endpoint, region, operation, input, service);
    } catch {
      if (attempt < 3) continue;
      process.stderr.write(`\nCould not connect to the endpoint URL: "${endpoint}/"\n`);
      process.exit(255);
    }
    if (reply.status === 200) return reply.body;
    const code = String(reply.body.__type ?? 'Unknown')
      .split('#')
      .at(-1) as string;
    if ((RETRYABLE.has(code) || reply.status >= 500) && attempt < 3) {
      await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt * Math.random()));
      continue;
    }
    const message = String(reply.body.message ?? reply.body.Message ?? '');
    process.stderr.write(
      `\nAn error occurred (${code}) when calling the ${operation} operation: ${message}\n`,
    );
    process.exit(254);
  }
}

await main();
