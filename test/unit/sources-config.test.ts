import { describe, expect, it } from 'vitest';
import {
  expandFiles,
  filesForPathOf,
  mappedParameterNames,
  mappedSourceNames,
  parseConfig,
} from '../../shared/config.ts';
import { parseResultLine } from '../../shared/document-contract.ts';
import { documentParameters } from '../../shared/send/commands.ts';

const base = {
  environments: ['dev', 'prod'],
  files: [
    { parameter: '/{env}/env.php', path: '/var/www/html/env.php' },
    { secret: '{env}/db', path: '/etc/app/db.json', format: 'json' },
    { parametersByPath: '/{env}/app/', path: '/etc/app/app.env', format: 'dotenv' },
  ],
};

describe('file sources in custom.fanout', () => {
  it('expands each kind of source, a parameter carrying no source field (as before)', () => {
    // Act
    const prod = expandFiles(parseConfig(base)).filter((t) => t.environment === 'prod');
    // Assert
    expect(prod.map((t) => [t.source, t.parameter, t.format])).toEqual([
      [undefined, '/prod/env.php', 'raw'],
      ['secret', 'prod/db', 'json'],
      ['parametersByPath', '/prod/app/', 'dotenv'],
    ]);
  });

  it('lists names by kind for the rules, and every name for resync and status', () => {
    const config = parseConfig(base);
    expect(mappedSourceNames(config, 'parameter')).toEqual(['/dev/env.php', '/prod/env.php']);
    expect(mappedSourceNames(config, 'secret')).toEqual(['dev/db', 'prod/db']);
    expect(mappedSourceNames(config, 'parametersByPath')).toEqual(['/dev/app/', '/prod/app/']);
    expect(mappedParameterNames(config)).toHaveLength(6);
  });

  it('finds the path file a parameter change rewrites: direct children only', () => {
    const config = parseConfig(base);
    expect(filesForPathOf(config, '/prod/app/API_KEY').map((t) => t.path)).toEqual([
      '/etc/app/app.env',
    ]);
    expect(filesForPathOf(config, '/prod/app/nested/KEY')).toEqual([]);
    expect(filesForPathOf(config, '/prod/env.php')).toEqual([]);
  });

  it.each([
    [
      'two sources',
      { parameter: '/{env}/a', secret: '{env}/a', path: '/etc/a' },
      'exactly one source',
    ],
    ['no source', { path: '/etc/a' }, 'exactly one source'],
    [
      'a path file in raw',
      { parametersByPath: '/{env}/app/', path: '/etc/a' },
      'format dotenv or json',
    ],
    [
      'a path without its final /',
      { parametersByPath: '/{env}/app', path: '/etc/a' },
      'ending in /',
    ],
    ['a secret beginning with /', { secret: '/{env}/db', path: '/etc/a' }, 'not beginning with /'],
    ['a secret without {env}', { secret: 'prod/db', path: '/etc/a' }, 'contain {env}'],
    [
      'a secret ending like an ARN suffix',
      { secret: '{env}/db-a1B2c3', path: '/etc/a' },
      'hyphen and six',
    ],
    ['a secret with a space', { secret: '{env}/my db', path: '/etc/a' }, 'secret name'],
  ])('refuses %s, naming the field', (_name, file, message) => {
    expect(() => parseConfig({ environments: ['prod'], files: [file] })).toThrow(message);
  });

  it('checks the settle window of coalesced path changes', () => {
    expect(parseConfig({ ...base, coalesce: { settleSeconds: 2 } }).coalesce).toEqual({
      settleSeconds: 2,
      maxWaitSeconds: 60,
    });
    expect(() => parseConfig({ ...base, coalesce: { settleSeconds: 901 } })).toThrow(
      'coalesce.settleSeconds',
    );
    expect(() =>
      parseConfig({ ...base, coalesce: { settleSeconds: 30, maxWaitSeconds: 10 } }),
    ).toThrow('at least settleSeconds');
  });

  it('sends SourceType only for a secret or a path, never a value', () => {
    const [parameter, secret, path] = expandFiles(parseConfig(base)).filter(
      (t) => t.environment === 'prod',
    );
    expect(documentParameters(parameter!).SourceType).toBeUndefined();
    expect(documentParameters(secret!)).toMatchObject({
      SourceType: ['secret'],
      ParameterName: ['prod/db'],
      Format: ['json'],
    });
    expect(documentParameters(path!)).toMatchObject({
      SourceType: ['parametersByPath'],
      ParameterName: ['/prod/app/'],
      Format: ['dotenv'],
    });
  });
});

describe('the result line of other sources', () => {
  it.each([
    ['secrets-fanout result=updated revision=3f2a-bc', { result: 'updated', revision: '3f2a-bc' }],
    ['secrets-fanout result=unchanged entries=20', { result: 'unchanged', entries: 20 }],
    [
      'secrets-fanout result=failed reason=content-invalid entries=2',
      { result: 'failed', reason: 'content-invalid', entries: 2 },
    ],
    ['secrets-fanout result=updated', undefined],
  ])('parses %s', (line, expected) => {
    expect(parseResultLine(`noise\n${line}\n`)).toEqual(expected);
  });
});
