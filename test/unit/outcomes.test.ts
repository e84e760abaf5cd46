import { describe, expect, it } from 'vitest';
import { DocumentExitCode } from '../../shared/document-contract.ts';
import { writtenText } from '../../shared/report/status.ts';
import { backoffSeconds } from '../../shared/rollout/policy.ts';
import { classify, type Invocation } from '../../shared/track/outcomes.ts';

const failed = (exitCode: number, stderr = 'secrets-fanout: error: something'): Invocation => ({
  status: 'Failed',
  statusDetails: 'Failed',
  exitCode,
  stderr,
});

describe('classify', () => {
  it.each([
    ['updated', 'Success', 7],
    ['unchanged', 'Unchanged', 7],
  ])('reads a successful %s run and the version it wrote', (result, kind, version) => {
    const outcome = classify(
      {
        status: 'Success',
        stdout: `secrets-fanout: fetched\nsecrets-fanout result=${result} version=${version}\n`,
      },
      'running',
    );
    expect(outcome).toEqual({ kind, versionWritten: version });
  });

  it('reads what a secret or a composed file now holds: the VersionId, the number of entries', () => {
    const secret = classify(
      {
        status: 'Success',
        stdout: 'secrets-fanout result=updated revision=EXAMPLE1-90ab-cdef-fedc-ba987SECRET1\n',
      },
      'running',
    );
    const path = classify(
      { status: 'Success', stdout: 'secrets-fanout result=unchanged entries=20\n' },
      'running',
    );
    expect(secret).toEqual({
      kind: 'Success',
      revisionWritten: 'EXAMPLE1-90ab-cdef-fedc-ba987SECRET1',
    });
    expect(path).toEqual({ kind: 'Unchanged', entriesWritten: 20 });
    expect(writtenText({ revisionWritten: 'EXAMPLE1-90ab-cdef-fedc-ba987SECRET1' })).toBe(
      'rev EXAMPLE1',
    );
    expect(writtenText({ entriesWritten: 20 })).toBe('20 entries');
    expect(writtenText({ versionWritten: 7 })).toBe('v7');
    expect(writtenText({})).toBe('-');
  });

  it('counts a success without a result line as a success of unknown version', () => {
    expect(classify({ status: 'Success', stdout: '' }, 'running')).toEqual({ kind: 'Success' });
  });

  // The retry table: what the tracker does with each way an invocation can end.
  it.each([
    ['fetch failed', failed(DocumentExitCode.FetchFailed), 'running', 'Retryable'],
    ['lock busy', failed(DocumentExitCode.LockBusy), 'running', 'Retryable'],
    ['content invalid', failed(DocumentExitCode.ContentInvalid), 'running', 'Permanent'],
    [
      'reload failed, rolled back',
      failed(DocumentExitCode.ReloadFailedRolledBack),
      'running',
      'Permanent',
    ],
    ['rollback failed', failed(DocumentExitCode.RollbackFailed), 'running', 'Permanent'],
    ['write failed', failed(DocumentExitCode.WriteFailed), 'running', 'Permanent'],
    ['destination unusable', failed(DocumentExitCode.DestinationUnusable), 'running', 'Permanent'],
    ['bad arguments', failed(DocumentExitCode.BadArguments), 'running', 'Permanent'],
    ['tool missing', failed(DocumentExitCode.ToolMissing), 'running', 'Permanent'],
    ['an exit code the document never uses', failed(1), 'running', 'Retryable'],
    ['killed by the agent (137)', failed(137), 'running', 'Retryable'],
    [
      'delivery timed out, still running',
      { status: 'TimedOut', statusDetails: 'Delivery Timed Out' },
      'running',
      'Retryable',
    ],
    [
      'undeliverable, still running',
      { status: 'Failed', statusDetails: 'Undeliverable' },
      'running',
      'Retryable',
    ],
    [
      'delivery timed out, terminated',
      { status: 'TimedOut', statusDetails: 'Delivery Timed Out' },
      'terminated',
      'InstanceGone',
    ],
    [
      'undeliverable, gone from EC2',
      { status: 'Failed', statusDetails: 'Undeliverable' },
      'missing',
      'InstanceGone',
    ],
    [
      'undeliverable, stopped',
      { status: 'Failed', statusDetails: 'Undeliverable' },
      'stopped',
      'InstanceGone',
    ],
    [
      'execution timed out',
      { status: 'TimedOut', statusDetails: 'Execution Timed Out', exitCode: 137 },
      'running',
      'Retryable',
    ],
    ['cancelled', { status: 'Cancelled', statusDetails: 'Cancelled' }, 'running', 'Retryable'],
    [
      'terminated by MaxErrors',
      { status: 'Cancelled', statusDetails: 'Terminated' },
      'running',
      'Retryable',
    ],
    ['access denied', { status: 'Failed', statusDetails: 'Access Denied' }, 'running', 'Permanent'],
    [
      'invalid platform',
      { status: 'Failed', statusDetails: 'Invalid Platform' },
      'running',
      'Permanent',
    ],
  ] as const)('%s → %s', (_, invocation, state, kind) => {
    expect(classify(invocation, state).kind).toBe(kind);
  });

  it('keeps the exit code, its meaning and the last stderr line for the on-call', () => {
    const outcome = classify(
      failed(
        DocumentExitCode.ContentInvalid,
        'secrets-fanout: warning: x\nsecrets-fanout: error: line 3 is not KEY=value\n',
      ),
      'running',
    );
    expect(outcome).toEqual({
      kind: 'Permanent',
      lastError: {
        status: 'Failed',
        exitCode: 65,
        meaning: 'ContentInvalid',
        stderr: 'secrets-fanout: error: line 3 is not KEY=value',
      },
    });
  });
});

describe('backoffSeconds', () => {
  it.each([
    [2, 30, 15, 30],
    [3, 30, 30, 60],
    [4, 30, 60, 120],
    [10, 30, 450, 900],
    [2, 900, 450, 900],
  ])('attempt %i with base %is waits between %is and %is', (attempt, base, low, high) => {
    expect(backoffSeconds(attempt, base, () => 0)).toBe(low);
    expect(backoffSeconds(attempt, base, () => 0.999_999)).toBe(high);
    for (let i = 0; i < 50; i++) {
      const delay = backoffSeconds(attempt, base);
      expect(delay).toBeGreaterThanOrEqual(low);
      expect(delay).toBeLessThanOrEqual(high);
    }
  });

  it('never exceeds the 900 s SQS allows nor drops below 1 s', () => {
    expect(backoffSeconds(50, 900, () => 0.999_999)).toBe(900);
    expect(backoffSeconds(2, 1, () => 0)).toBe(1);
  });
});
