import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CONFIG_SCHEMA_REVISION,
  configDigest,
  expandFiles,
  filesForEnvironment,
  filesForParameter,
  loadConfig,
  mappedParameterNames,
  parseConfig,
} from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';
import { testConfigInput } from '../support/fixtures.ts';
import { repoRoot } from '../support/package.ts';

const clone = () => structuredClone(testConfigInput);

function problemsOf(raw: unknown): string {
  try {
    parseConfig(raw);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected the config to be refused');
}

describe('parseConfig', () => {
  it('fills defaults for everything optional', () => {
    // Arrange
    const raw = { environments: ['prod'], files: [{ parameter: '/{env}/a', path: '/etc/a' }] };
    // Act
    const config = parseConfig(raw);
    // Assert
    expect(config).toEqual({
      tagKey: 'Environment',
      environments: ['prod'],
      files: [
        {
          parameter: '/{env}/a',
          path: '/etc/a',
          owner: 'root',
          group: 'root',
          mode: '0400',
          format: 'raw',
          backups: 3,
        },
      ],
      rollout: {
        maxConcurrency: '25%',
        maxErrors: '100%',
        timeoutSeconds: 600,
        chunksInFlight: 4,
        fetchesPerSecond: 40,
        commandsPerSecond: 10,
        planPartTargets: 1000,
        stages: {},
      },
      retry: { maxAttempts: 3, baseDelaySeconds: 30 },
      bootstrap: { timeoutSeconds: 540, onTimeout: 'abandon', lifecycleHookName: 'secrets-fanout' },
      coalesce: { settleSeconds: 5, maxWaitSeconds: 60 },
    });
  });

  it.each([
    ['files[0].mode', (c: any) => (c.files[0].mode = 400), 'quoted octal string'],
    ['files[0].mode', (c: any) => (c.files[0].mode = '0999'), 'octal mode'],
    ['files[0].path', (c: any) => (c.files[0].path = 'var/www/env.php'), 'absolute path'],
    ['files[0].path', (c: any) => (c.files[0].path = '/var/www/../etc/shadow'), '. or ..'],
    ['files[0].path', (c: any) => (c.files[0].path = '/var/www/$(reboot)'), 'absolute path'],
    ['files[0].parameter', (c: any) => (c.files[0].parameter = '/prod/env.php'), 'contain {env}'],
    ['files[0].parameter', (c: any) => (c.files[0].parameter = '/{env}/{app}'), 'only placeholder'],
    ['files[0].parameter', (c: any) => (c.files[0].parameter = '/aws/{env}/x'), 'reserved'],
    ['files[0].owner', (c: any) => (c.files[0].owner = 'root;rm'), 'POSIX user'],
    ['files[0].format', (c: any) => (c.files[0].format = 'yaml'), 'raw'],
    [
      'files[0].reloadService',
      (c: any) => (c.files[0].reloadService = 'php-fpm; reboot'),
      'systemd unit',
    ],
    ['files[0].backups', (c: any) => (c.files[0].backups = 11), '10'],
    ['files[0].colour', (c: any) => (c.files[0].colour = 'blue'), 'unknown field'],
    ['environments', (c: any) => (c.environments = []), '1'],
    ['environments[1]', (c: any) => (c.environments = ['prod', 'prod']), 'listed twice'],
    ['environments[0]', (c: any) => (c.environments = ['-prod']), 'letters'],
    ['tagKey', (c: any) => (c.tagKey = 'aws:env'), 'reserved'],
    ['rollout.maxConcurrency', (c: any) => (c.rollout.maxConcurrency = '0'), 'percentage'],
    ['rollout.maxErrors', (c: any) => (c.rollout.maxErrors = '101%'), 'percentage'],
    ['rollout.timeoutSeconds', (c: any) => (c.rollout.timeoutSeconds = 10), '30'],
    ['retry.baseDelaySeconds', (c: any) => (c.retry.baseDelaySeconds = 901), '900'],
    ['retry.maxAttempts', (c: any) => (c.retry.maxAttempts = 0), '1'],
    ['bootstrap.onTimeout', (c: any) => (c.bootstrap = { onTimeout: 'retry' }), 'abandon'],
    ['bootstrap.timeoutSeconds', (c: any) => (c.bootstrap = { timeoutSeconds: 10 }), '60'],
  ])('refuses a bad %s, naming the field', (field, breakIt, hint) => {
    // Arrange
    const raw = clone();
    breakIt(raw);
    // Act
    const message = problemsOf(raw);
    // Assert
    expect(message).toContain(`custom.fanout.${field}:`);
    expect(message).toContain(hint);
  });

  it('refuses two parameters writing the same file of one environment', () => {
    const raw = clone();
    raw.files.push({ parameter: '/{env}/other.php', path: '/var/www/html/env.php' });
    expect(problemsOf(raw)).toMatch(/\/var\/www\/html\/env\.php in dev is written by both/);
  });

  it('lists every problem at once', () => {
    const raw = clone() as any;
    raw.files[0].mode = '9';
    raw.tagKey = '';
    const message = problemsOf(raw);
    expect(message).toContain('custom.fanout.files[0].mode');
    expect(message).toContain('custom.fanout.tagKey');
  });
});

describe('expansion', () => {
  const config = parseConfig({
    ...clone(),
    files: [
      { parameter: '/{env}/env.php', path: '/var/www/html/env.php' },
      { parameter: '/{env}/app/secrets', path: '/etc/{env}/secrets.env', format: 'dotenv' },
    ],
  });

  it('expands {env} in parameters and paths for every environment', () => {
    expect(expandFiles(config).map((t) => `${t.environment} ${t.parameter} ${t.path}`)).toEqual([
      'dev /dev/env.php /var/www/html/env.php',
      'dev /dev/app/secrets /etc/dev/secrets.env',
      'prod /prod/env.php /var/www/html/env.php',
      'prod /prod/app/secrets /etc/prod/secrets.env',
    ]);
  });

  it('finds the files of a parameter, and none for an unmapped one', () => {
    expect(filesForParameter(config, '/prod/app/secrets')).toMatchObject([
      { environment: 'prod', path: '/etc/prod/secrets.env', format: 'dotenv' },
    ]);
    expect(filesForParameter(config, '/staging/env.php')).toEqual([]);
  });

  it('finds every file of an environment', () => {
    expect(filesForEnvironment(config, 'dev').map((t) => t.parameter)).toEqual([
      '/dev/env.php',
      '/dev/app/secrets',
    ]);
  });

  it('lists the distinct mapped parameter names for the rule', () => {
    expect(mappedParameterNames(config)).toEqual([
      '/dev/app/secrets',
      '/dev/env.php',
      '/prod/app/secrets',
      '/prod/env.php',
    ]);
  });
});

describe('loadConfig', () => {
  it('reads FANOUT_CONFIG', () => {
    expect(loadConfig({ FANOUT_CONFIG: JSON.stringify(clone()) }).environments).toEqual([
      'dev',
      'prod',
    ]);
  });

  it("names the schema's revision: the SHA-256 of buildSchemas's source, which the digest covers", () => {
    // Changed the schema? Set CONFIG_SCHEMA_REVISION in shared/config.ts to the value below, so
    // a config another revision checked is checked again at cold start.
    const source = readFileSync(join(repoRoot, 'shared/config.ts'), 'utf8');
    const builder = source.slice(
      source.indexOf('function buildSchemas() {'),
      source.indexOf('\ntype Schemas ='),
    );
    expect(builder.length).toBeGreaterThan(1000);
    expect(CONFIG_SCHEMA_REVISION).toBe(createHash('sha256').update(builder).digest('base64url'));
    // The revision is part of the digest: the same text under another revision is another one.
    expect(configDigest('{}')).not.toBe(createHash('sha256').update('{}').digest('base64url'));
  });

  it('reads the text the package validated as is when its digest matches', () => {
    // The package only ever records the digest of the schema's own output; a text with that
    // digest is therefore that output, and the schema is not built or run again at cold start.
    // (Shown with a text the schema would refuse: only the digest decides.)
    const json = '{"environments":[]}';
    expect(loadConfig({ FANOUT_CONFIG: json, FANOUT_CONFIG_SHA256: configDigest(json) })).toEqual({
      environments: [],
    });
  });

  it('checks a text whose digest does not match (edited after packaging) with the schema', () => {
    const valid = JSON.stringify(clone());
    const edited = '{"environments":[]}';
    expect(() =>
      loadConfig({ FANOUT_CONFIG: edited, FANOUT_CONFIG_SHA256: configDigest(valid) }),
    ).toThrow('FANOUT_CONFIG.environments');
    // A valid edit is accepted, with the schema's defaults.
    const config = loadConfig({ FANOUT_CONFIG: valid, FANOUT_CONFIG_SHA256: configDigest(edited) });
    expect(config.rollout.maxConcurrency).toBe('25%');
  });

  it.each([
    [{}, 'FANOUT_CONFIG is not set'],
    [{ FANOUT_CONFIG: '{' }, 'FANOUT_CONFIG is not JSON'],
    [{ FANOUT_CONFIG: '{"environments":[]}' }, 'FANOUT_CONFIG.environments'],
  ])('refuses %j at cold start with a clear error', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });
});
