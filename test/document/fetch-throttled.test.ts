/**
 * Parameter Store throttles a fleet that fetches at once (40 TPS by default, issue 11 item 5).
 * The AWS CLI's standard retry mode spends 6 attempts in about 30 s; a ThrottlingException that
 * outlasts them is tried again by the document itself, with exponential backoff and jitter,
 * until its attempts or its time budget run out, and then exits FetchFailed (75, retried by the
 * service) with the live file untouched. The fake `aws` answers as the CLI does once its own
 * retries are spent. Waits are shrunk to milliseconds here (SECRETS_FANOUT_FETCH_BACKOFF_MS):
 * the test checks how many calls were made and the waits the document announced, never time.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { DocumentExitCode, parseResultLine } from '../../shared/document-contract.ts';
import {
  CANARY,
  itInSandbox as it,
  lastLine,
  placeFile,
  runDocument,
  type Sandbox,
  SHELLS,
  snapshot,
} from './harness.ts';

const OLD = `OLD=${CANARY}-old\n`;
const NEW = `NEW=${CANARY}\n`;
const FAST = { SECRETS_FANOUT_FETCH_BACKOFF_MS: '2', SECRETS_FANOUT_FETCH_BACKOFF_CAP_MS: '8' };

function throttleNext(box: Sandbox, calls: number): void {
  writeFileSync(join(box.state, 'throttles'), `${calls}\n`);
}

/** The waits (seconds) the document announced before each new try. */
function announcedWaits(stdout: string): number[] {
  return [...stdout.matchAll(/throttled fetch (\d+) of \d+; trying again in ([0-9.]+)s/g)].map(
    (match) => Number(match[2]),
  );
}

describe.each(SHELLS)('a throttled fetch under %s', (shell) => {
  it('is tried again after a growing, jittered wait and then succeeds', async ({ box }) => {
    // Arrange
    placeFile(box.dest, OLD, 0o400);
    box.setParameter(NEW, 8);
    throttleNext(box, 3);

    // Act
    const result = await runDocument(shell, box, { env: FAST });

    // Assert
    expect(result.status).toBe(0);
    expect(parseResultLine(result.stdout)).toMatchObject({ result: 'updated', version: 8 });
    expect(readFileSync(box.dest, 'utf8')).toBe(NEW);
    expect(box.awsCalls()).toBe(4);
    const waits = announcedWaits(result.stdout);
    expect(waits).toHaveLength(3);
    // Equal jitter: each wait lies in [ceiling/2, ceiling], the ceiling doubling up to the cap.
    const ceilings = [0.002, 0.004, 0.008];
    waits.forEach((wait, i) => {
      expect(wait).toBeGreaterThanOrEqual((ceilings[i] as number) / 2);
      expect(wait).toBeLessThanOrEqual(ceilings[i] as number);
    });
    expect(result.stdout + result.stderr).not.toContain(CANARY);
  });

  it('gives up with FetchFailed after its attempts, the live file untouched', async ({ box }) => {
    // Arrange
    placeFile(box.dest, OLD, 0o400);
    const before = snapshot(box.dest);
    box.setParameter(NEW, 8);
    throttleNext(box, -1);

    // Act
    const result = await runDocument(shell, box, {
      env: { ...FAST, SECRETS_FANOUT_FETCH_ATTEMPTS: '4' },
    });

    // Assert
    expect(result.status).toBe(DocumentExitCode.FetchFailed);
    expect(parseResultLine(result.stdout)).toMatchObject({
      result: 'failed',
      reason: 'fetch-throttled',
    });
    expect(lastLine(result.stderr)).toContain('ThrottlingException');
    expect(box.awsCalls()).toBe(4);
    expect(announcedWaits(result.stdout)).toHaveLength(3);
    expect(snapshot(box.dest)).toEqual(before);
  });

  it('gives up at once when no further try fits in its time budget', async ({ box }) => {
    // Arrange: a budget shorter than one bounded call leaves no room for a second try.
    placeFile(box.dest, OLD, 0o400);
    box.setParameter(NEW, 8);
    throttleNext(box, -1);

    // Act
    const result = await runDocument(shell, box, {
      env: { ...FAST, SECRETS_FANOUT_FETCH_BUDGET: '5', SECRETS_FANOUT_FETCH_TIMEOUT: '10' },
    });

    // Assert
    expect(result.status).toBe(DocumentExitCode.FetchFailed);
    expect(parseResultLine(result.stdout)).toMatchObject({ reason: 'fetch-throttled' });
    expect(box.awsCalls()).toBe(1);
  });

  it('does not retry an error that is not throttling', async ({ box }) => {
    // Arrange
    placeFile(box.dest, OLD, 0o400);
    box.setAwsMode('fail');

    // Act
    const result = await runDocument(shell, box, { env: FAST });

    // Assert
    expect(result.status).toBe(DocumentExitCode.FetchFailed);
    expect(parseResultLine(result.stdout)).toMatchObject({ reason: 'fetch-failed' });
    expect(box.awsCalls()).toBe(1);
  });
});
