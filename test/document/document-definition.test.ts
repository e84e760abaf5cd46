/**
 * The document as SSM sees it: its parameter interface, the allowedPatterns SendCommand enforces
 * (through test/local-cloud/ssm-document.ts, the same validation the local cloud uses), and the
 * double-brace fallback for agents without ENV_VAR support.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  expandGoReplacement,
  isRequired,
  parseCommandDocument,
  renderRunShellScript,
  SsmServiceError,
  substituteParameters,
  validateDocumentDefaults,
  validateSendCommandParameters,
} from '../local-cloud/ssm-document.ts';
import { DOCUMENT_PATH, theDocument } from './harness.ts';

const document = theDocument();

/** A valid SendCommand Parameters map, with one parameter replaced. */
function sendCommandWith(name: string, value: string): Record<string, string[]> {
  return {
    ParameterName: ['/prod/env.php'],
    DestinationPath: ['/var/www/html/env.php'],
    [name]: [value],
  };
}

function expectInvalidParameters(run: () => unknown): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(SsmServiceError);
  expect((caught as SsmServiceError).name).toBe('InvalidParameters');
  expect((caught as SsmServiceError).code).toBe('InvalidParameters');
  expect((caught as SsmServiceError).statusCode).toBe(400);
}

describe('the document definition', () => {
  it('is a schema 2.2 Command document with one Linux aws:runShellScript step', () => {
    expect(document.schemaVersion).toBe('2.2');
    expect(document.mainSteps).toHaveLength(1);
    expect(document.mainSteps[0]).toMatchObject({
      action: 'aws:runShellScript',
      precondition: { StringEquals: ['platformType', 'Linux'] },
    });
  });

  it('declares exactly the agreed interface, with its defaults', () => {
    const interfaceOf = Object.fromEntries(
      Object.entries(document.parameters).map(([name, definition]) => [
        name,
        isRequired(definition) ? 'required' : definition.default,
      ]),
    );

    expect(interfaceOf).toEqual({
      SourceType: 'parameter',
      ParameterName: 'required',
      DestinationPath: 'required',
      FileOwner: 'root',
      FileGroup: 'root',
      FileMode: '0400',
      Format: 'raw',
      Backups: '3',
      ReloadService: '',
      Region: '',
      NeverOlder: 'false',
    });
    expect(document.parameters.Format?.allowedValues).toEqual(['raw', 'dotenv', 'json']);
    expect(document.parameters.NeverOlder?.allowedValues).toEqual(['true', 'false']);
  });

  it('declares interpolationType ENV_VAR, type String and an anchored allowedPattern on every parameter', () => {
    for (const [name, definition] of Object.entries(document.parameters)) {
      expect(definition.interpolationType, name).toBe('ENV_VAR');
      expect(definition.type, name).toBe('String');
      expect(definition.allowedPattern, name).toMatch(/^\^.*\$$/);
    }
  });

  it('has defaults that its own constraints accept', () => {
    expect(() => validateDocumentDefaults(document)).not.toThrow();
  });

  it('uses only regex syntax that reads the same in JavaScript, Java and Go RE2', () => {
    for (const [name, definition] of Object.entries(document.parameters)) {
      const pattern = definition.allowedPattern ?? '';
      // No lookaround, backreferences, lazy/possessive quantifiers, shorthand classes (\d \w \s
      // differ in Unicode handling), inline flags or named groups. A brace only as a complete
      // bounded repeat {m,n} (m < n <= 1000, RE2's limit), which every engine reads alike; a
      // lone brace is a literal in JavaScript and Go but an error in Java.
      const bounded = /\{(\d+),(\d+)\}/g;
      for (const [, low, high] of pattern.matchAll(bounded)) {
        expect(Number(low), name).toBeLessThan(Number(high));
        expect(Number(high), name).toBeLessThanOrEqual(1000);
      }
      const rest = pattern.replace(bounded, '');
      expect(rest, name).not.toMatch(/\(\?|\\[1-9dDwWsSbBpPkQEzZAuxc]|[*+?}]\?|[*+?]\+|[{}]/);
      expect(() => new RegExp(pattern), name).not.toThrow();
    }
  });

  it('renders a script that refers to every parameter through SSM_<Name>', () => {
    const [step] = renderRunShellScript(
      document,
      validateSendCommandParameters(document, sendCommandWith('Format', 'raw')),
    );
    for (const name of Object.keys(document.parameters)) {
      expect(step?.script).toContain(`"\${SSM_${name}+x}"`);
      expect(step?.env[`SSM_${name}`]).toBeDefined();
    }
  });

  it('is parsed the same from its file and as a string', () => {
    expect(parseCommandDocument(readFileSync(DOCUMENT_PATH, 'utf8'))).toEqual(document);
  });
});

describe('SendCommand validation (InvalidParameters)', () => {
  it('fills defaults and accepts the minimal call', () => {
    const resolved = validateSendCommandParameters(document, {
      ParameterName: ['/prod/env.php'],
      DestinationPath: ['/var/www/html/env.php'],
    });

    expect(resolved).toEqual({
      SourceType: 'parameter',
      ParameterName: '/prod/env.php',
      DestinationPath: '/var/www/html/env.php',
      FileOwner: 'root',
      FileGroup: 'root',
      FileMode: '0400',
      Format: 'raw',
      Backups: '3',
      ReloadService: '',
      Region: '',
      NeverOlder: 'false',
    });
  });

  it('rejects a missing required parameter', () => {
    expectInvalidParameters(() =>
      validateSendCommandParameters(document, { ParameterName: ['/prod/env.php'] }),
    );
  });

  it('rejects a parameter the document does not declare', () => {
    expectInvalidParameters(() =>
      validateSendCommandParameters(document, {
        ...sendCommandWith('Format', 'raw'),
        Commands: ['id'],
      }),
    );
  });

  it('rejects two values for a String parameter', () => {
    expectInvalidParameters(() =>
      validateSendCommandParameters(document, {
        ParameterName: ['/a', '/b'],
        DestinationPath: ['/var/www/html/env.php'],
      }),
    );
  });

  it('rejects a Format outside allowedValues', () => {
    expectInvalidParameters(() =>
      validateSendCommandParameters(document, sendCommandWith('Format', 'yaml')),
    );
  });

  it('rejects a value longer than maxChars', () => {
    expectInvalidParameters(() =>
      validateSendCommandParameters(document, sendCommandWith('FileOwner', 'a'.repeat(65))),
    );
  });
});

describe('allowedPattern', () => {
  const accepted: Record<string, string[]> = {
    // Parameters, secret names (prod/db, with + = @) and paths (ending in /): the script checks
    // which form SourceType allows.
    ParameterName: [
      '/prod/env.php',
      'prod-env',
      '/prod/app/DB_PASSWORD',
      '/a.b/c-d/e_f',
      'prod/db',
      'prod/user+name=x@y',
      '/prod/app/',
      // A pinned version: 1 to 18 digits, no leading zero (the script refuses it on a secret).
      '/prod/env.php:1',
      '/prod/env.php:7',
      '/prod/env.php:100',
      'prod-env:3',
      '/prod/env.php:123456789012345678',
    ],
    SourceType: ['parameter', 'secret', 'parametersByPath'],
    DestinationPath: [
      '/var/www/html/env.php',
      '/etc/app/secrets.env',
      '/var/www/.env',
      '/etc/app/..hidden',
      '/opt/app-1/config_2.json',
      '/secrets',
    ],
    FileOwner: ['root', 'apache', 'www-data', 'nginx', 'ec2-user', '48', 'svc.app'],
    FileGroup: ['root', 'apache', 'nogroup', '0'],
    FileMode: ['0400', '0440', '0600', '0640', '400', '0000'],
    Format: ['raw', 'dotenv', 'json'],
    Backups: ['0', '1', '3', '10', '99'],
    ReloadService: ['', 'php-fpm', 'php-fpm.service', 'nginx', 'getty@tty1.service', 'app:web'],
    Region: [
      '',
      'eu-west-1',
      'us-east-1',
      'ap-southeast-2',
      'us-gov-west-1',
      'cn-north-1',
      'eusc-de-east-1',
    ],
    NeverOlder: ['true', 'false'],
  };

  const injections = [
    ';',
    '$(',
    '`',
    '|',
    '&',
    '\n',
    '"',
    "'",
    ' ',
    '\\',
    '>',
    '<',
    '*',
    '{{',
    '$',
  ];

  const rejected: Record<string, string[]> = {
    ParameterName: [
      '',
      '-n',
      '--debug',
      '/prod//env',
      'prod//db',
      // Labels, and numbers that are no version.
      '/prod/env.php:label',
      '/prod/env.php:Production',
      '/prod/env.php:v3',
      '/prod/env.php:3a',
      '/prod/env.php:0',
      '/prod/env.php:03',
      '/prod/env.php:-1',
      '/prod/env.php:+1',
      '/prod/env.php:',
      '/prod/env.php:1234567890123456789',
      '/prod/env.php:3:4',
      ':3',
      // A selector anywhere but at the end, or after a path's trailing slash.
      '/prod:3/env.php',
      '/prod/app/:3',
    ],
    SourceType: ['', 'Parameter', 'path', 'secret;'],
    DestinationPath: [
      '',
      '/',
      'var/www/html/env.php',
      './env.php',
      'env.php',
      '~/env.php',
      '/var/www/../../etc/passwd',
      '/var/www/html/..',
      '/..',
      '/var/./www/env.php',
      '/var/www/html/',
      '//etc/passwd',
      '/var//www',
    ],
    FileOwner: ['', '-R', 'root:root', 'ro ot'],
    FileGroup: ['', '-h'],
    FileMode: ['', '4755', '2755', '1777', '0o400', '+x', 'u=r', '04000', '800'],
    Format: ['', 'RAW', 'yaml', 'raw '],
    Backups: ['', '-1', '100', '007', '1.5', 'three'],
    ReloadService: ['-now', '--now', 'php fpm'],
    Region: ['EU-WEST-1', 'eu_west_1', 'euwest1', 'eu-west', 'local'],
    NeverOlder: ['', 'True', 'TRUE', 'yes', '1', 'on', 'true ', 'falsey'],
  };

  for (const [name, values] of Object.entries(accepted)) {
    it.each(values)(`${name} accepts %j`, (value) => {
      expect(() =>
        validateSendCommandParameters(document, sendCommandWith(name, value)),
      ).not.toThrow();
    });
  }

  for (const [name, values] of Object.entries(rejected)) {
    it.each(values)(`${name} rejects %j`, (value) => {
      expectInvalidParameters(() =>
        validateSendCommandParameters(document, sendCommandWith(name, value)),
      );
    });
  }

  // The injection attempts, at the start, in the middle and at the end of every accepted value.
  for (const [name, values] of Object.entries(accepted)) {
    const base = values.find((value) => value.length > 1) ?? 'x';
    it.each(injections)(`${name} rejects an injected %j anywhere in ${base}`, (token) => {
      const middle = Math.floor(base.length / 2);
      for (const value of [
        `${token}${base}`,
        `${base.slice(0, middle)}${token}${base.slice(middle)}`,
        `${base}${token}`,
      ]) {
        expectInvalidParameters(() =>
          validateSendCommandParameters(document, sendCommandWith(name, value)),
        );
      }
    });
  }

  it('means the same to another backtracking engine (Python re, search semantics like Go)', () => {
    // Values with a trailing newline are left out on purpose: there Java and Python's `$` also
    // matches before the newline, JavaScript's and Go's do not. Such a value is still harmless:
    // inside the fallback's double quotes a newline is literal, and the script itself refuses
    // newlines in every parameter (see the bad-arguments tests).
    const cases = Object.entries({ ...accepted }).flatMap(([name, values]) =>
      [...values, ...(rejected[name] ?? []), ...injections.map((token) => `a${token}b`)].map(
        (value) => [document.parameters[name]?.allowedPattern ?? '', value] as const,
      ),
    );
    let python: string;
    try {
      python = execFileSync(
        'python3',
        [
          '-c',
          'import json,re,sys\nprint(json.dumps([re.search(p, v) is not None for p, v in json.load(sys.stdin)]))',
        ],
        { input: JSON.stringify(cases), encoding: 'utf8' },
      );
    } catch {
      return; // no python3 here: nothing to compare with
    }

    const javascript = cases.map(([pattern, value]) => new RegExp(pattern).test(value));
    expect(JSON.parse(python)).toEqual(javascript);
  });
});

describe('the {{ }} fallback for agents without ENV_VAR', () => {
  const dangerous = ['"', '$', '`', '\\', '\n'];

  it('every pattern refuses the characters that could leave a double-quoted string', () => {
    for (const [name, definition] of Object.entries(document.parameters)) {
      const pattern = new RegExp(definition.allowedPattern ?? '');
      for (const character of dangerous) {
        for (const value of [`${character}`, `a${character}`, `${character}a`, `/a${character}b`]) {
          expect(pattern.test(value), `${name} must refuse ${JSON.stringify(value)}`).toBe(false);
        }
      }
    }
  });

  it('substitutes every reference, and the exported values round-trip exactly', () => {
    const values: Record<string, string> = {
      ParameterName: '/prod/app/env.php',
      DestinationPath: '/var/www/html/env.php',
      FileOwner: 'www-data',
      FileGroup: 'www-data',
      FileMode: '0440',
      Format: 'dotenv',
      Backups: '5',
      ReloadService: 'php-fpm.service',
      Region: '',
      NeverOlder: 'true',
    };
    const resolved = validateSendCommandParameters(
      document,
      Object.fromEntries(Object.entries(values).map(([name, value]) => [name, [value]])),
    );
    const [step] = renderRunShellScript(document, resolved, { agent: 'legacy' });
    const script = step?.script ?? '';
    expect(script).not.toMatch(/\{\{/);
    expect(step?.env).toEqual({});

    // Run just the fallback block, then print what it exported.
    const fallback = script
      .split('\n')
      .filter((line) => line.startsWith('if [ -z "${SSM_'))
      .join('\n');
    const names = Object.keys(values);
    const printer = names.map((name) => `printf '%s\\0' "$SSM_${name}"`).join('\n');
    const output = execFileSync('/bin/sh', ['-c', `${fallback}\n${printer}`], {
      env: {},
      encoding: 'utf8',
    });

    expect(
      Object.fromEntries(
        output
          .split('\0')
          .slice(0, -1)
          .map((value, index) => [names[index], value]),
      ),
    ).toEqual(values);
  });

  it('replaces references the way the agent does (Go regexp, spaces allowed, $ is a template character)', () => {
    expect(substituteParameters('a {{ Name }} b {{Name}} c {{\tName\n}}', { Name: 'v' })).toBe(
      'a v b v c v',
    );
    expect(substituteParameters('{{ List }}', { List: ['x', 'y'] })).toEqual(['x', 'y']);
    expect(substituteParameters('{{ Name }}!', { Name: 'v' })).toBe('v!');
    expect(substituteParameters('{{ Other }}', { Name: 'v' })).toBe('{{ Other }}');
    expect(substituteParameters('[{{ Name }}]', { Name: 'a$1b$$c${0}d$' })).toBe(
      '[a$c{{ Name }}d$]',
    );
  });

  it('expands replacement templates like Go regexp.Expand', () => {
    expect(expandGoReplacement('$$', 'M')).toBe('$');
    expect(expandGoReplacement('$0 ${0} $00', 'M')).toBe('M M ');
    expect(expandGoReplacement('$1x ${1}x $name', 'M')).toBe(' x ');
    expect(expandGoReplacement('a$ $- ${ ${x', 'M')).toBe('a$ $- ${ ${x');
  });
});
