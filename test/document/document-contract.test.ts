/**
 * shared/document-contract.ts and the document's script must agree: the same exit codes, each
 * failure reason tied to the same code, and a result line the parser understands.
 */
import { describe, expect, it } from 'vitest';
import {
  classifyExitCode,
  DocumentExitCode,
  type DocumentExitCodeName,
  exitCodeName,
  FailureReasonExitCode,
  parseResultLine,
} from '../../shared/document-contract.ts';
import { renderFor } from './harness.ts';

const script = renderFor({
  ParameterName: '/prod/env.php',
  DestinationPath: '/var/www/html/env.php',
}).script;

/** EXIT_RELOAD_FAILED_ROLLED_BACK -> ReloadFailedRolledBack */
function contractName(shellName: string): string {
  return shellName
    .replace(/^EXIT_/, '')
    .toLowerCase()
    .replace(/(^|_)([a-z])/g, (_, __, letter: string) => letter.toUpperCase());
}

describe('exit codes', () => {
  it('the script declares exactly the non-zero codes of DocumentExitCode', () => {
    const declared = Object.fromEntries(
      [...script.matchAll(/^readonly (EXIT_[A-Z_]+)=(\d+)$/gm)].map((match) => [
        contractName(match[1] ?? ''),
        Number(match[2]),
      ]),
    );
    const { Success, ...failures } = DocumentExitCode;

    expect(Success).toBe(0);
    expect(declared).toEqual(failures);
  });

  it('every failure the script reports uses a declared code and the reason the contract ties to it', () => {
    const failures = [...script.matchAll(/fail "\$(EXIT_[A-Z_]+)" ([a-z-]+) /g)].map((match) => ({
      code: DocumentExitCode[contractName(match[1] ?? '') as DocumentExitCodeName],
      reason: match[2] ?? '',
    }));

    expect(failures.length).toBeGreaterThan(20);
    for (const { code, reason } of failures) {
      expect(code, reason).toBeDefined();
      expect(FailureReasonExitCode[reason as keyof typeof FailureReasonExitCode], reason).toBe(
        code,
      );
    }
    const reasonsUsed = new Set(failures.map((failure) => failure.reason));
    expect([...reasonsUsed].sort()).toEqual(Object.keys(FailureReasonExitCode).sort());
  });

  it('are distinct and avoid codes that already mean something on an instance', () => {
    const codes = Object.values(DocumentExitCode);
    // 1/2 shell errors, 124-127 timeout(1)/not executable/not found, 128+ signals (137 is also
    // what SSM Agent reports for a stopped step), 194 = reboot request (send-commands-reboot.html).
    const reserved = [1, 2, 124, 125, 126, 127, 137, 194];

    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) {
      expect(reserved).not.toContain(code);
      expect(code).toBeLessThan(128);
    }
  });

  it('are classified for the tracker', () => {
    expect(classifyExitCode(0)).toBe('success');
    expect(classifyExitCode(DocumentExitCode.FetchFailed)).toBe('retryable');
    expect(classifyExitCode(DocumentExitCode.LockBusy)).toBe('retryable');
    for (const name of [
      'BadArguments',
      'ContentInvalid',
      'DestinationUnusable',
      'ParameterNotFound',
      'ParameterVersionNotFound',
      'ReloadFailedRolledBack',
      'RollbackFailed',
      'ValidatorUnavailable',
      'WriteFailed',
      'ToolMissing',
    ] as const) {
      expect(classifyExitCode(DocumentExitCode[name]), name).toBe('permanent');
    }
    expect(classifyExitCode(137)).toBe('unknown');
    expect(classifyExitCode(1)).toBe('unknown');
    expect(classifyExitCode(-1)).toBe('unknown');
  });

  it('have names', () => {
    expect(exitCodeName(75)).toBe('FetchFailed');
    expect(exitCodeName(3)).toBeUndefined();
  });

  it('keep their numbers: a missing pinned version is a code of its own, beside a missing parameter', () => {
    expect(DocumentExitCode.ParameterNotFound).toBe(67);
    expect(DocumentExitCode.ParameterVersionNotFound).toBe(68);
    expect(exitCodeName(68)).toBe('ParameterVersionNotFound');
    expect(FailureReasonExitCode['version-not-found']).toBe(68);
    expect(classifyExitCode(68)).toBe('permanent');
  });
});

describe('parseResultLine', () => {
  it('reads updated and unchanged with their version', () => {
    expect(
      parseResultLine('secrets-fanout: fetched\nsecrets-fanout result=updated version=7\n'),
    ).toEqual({
      result: 'updated',
      version: 7,
    });
    expect(parseResultLine('secrets-fanout result=unchanged version=12')).toEqual({
      result: 'unchanged',
      version: 12,
    });
  });

  it('reads failures with or without a version', () => {
    expect(parseResultLine('secrets-fanout result=failed reason=fetch-failed\n')).toEqual({
      result: 'failed',
      reason: 'fetch-failed',
    });
    expect(
      parseResultLine('secrets-fanout result=failed reason=reload-failed version=8\r\n'),
    ).toEqual({
      result: 'failed',
      reason: 'reload-failed',
      version: 8,
    });
  });

  it('reads a missing pinned version', () => {
    expect(parseResultLine('secrets-fanout result=failed reason=version-not-found\n')).toEqual({
      result: 'failed',
      reason: 'version-not-found',
    });
  });

  it('leaves out a version a JavaScript number cannot hold exactly rather than round it', () => {
    expect(parseResultLine(`secrets-fanout result=updated version=${2 ** 53 - 1}`)).toEqual({
      result: 'updated',
      version: 2 ** 53 - 1,
    });
    expect(
      parseResultLine('secrets-fanout result=updated version=123456789012345678'),
    ).toBeUndefined();
    expect(
      parseResultLine('secrets-fanout result=failed reason=reload-failed version=9007199254740993'),
    ).toEqual({ result: 'failed', reason: 'reload-failed' });
  });

  it('takes the last result line and ignores what the agent appends after it', () => {
    const stdout = [
      'secrets-fanout result=updated version=1',
      'secrets-fanout result=unchanged version=2',
      '',
      '--output truncated--',
    ].join('\n');

    expect(parseResultLine(stdout)).toEqual({ result: 'unchanged', version: 2 });
  });

  it('returns undefined when there is no well-formed result line', () => {
    expect(parseResultLine('')).toBeUndefined();
    expect(parseResultLine('secrets-fanout: fetching\n')).toBeUndefined();
    expect(parseResultLine('secrets-fanout result=updated\n')).toBeUndefined();
    expect(parseResultLine('secrets-fanout result=updated version=0\n')).toBeUndefined();
    expect(parseResultLine('secrets-fanout result=updated version=x7\n')).toBeUndefined();
    expect(parseResultLine('secrets-fanout result=failed reason=made-up\n')).toBeUndefined();
    expect(parseResultLine('secrets-fanout result=failed\n')).toBeUndefined();
    expect(parseResultLine('secrets-fanout result=exploded version=1\n')).toBeUndefined();
  });
});
