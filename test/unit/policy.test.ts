import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config.ts';
import {
  attemptDeadline,
  commandDeadline,
  EXECUTION_TIMEOUT_SECONDS,
  firstSweepDue,
  mayBeSendingStill,
} from '../../shared/rollout/policy.ts';
import { testConfigInput } from '../support/fixtures.ts';

const config = parseConfig(testConfigInput);

describe('the time rules of the retry policy', () => {
  it("uses the document step's own execution timeout", () => {
    // Arrange: the document as serverless.yml deploys it
    const document = load(
      readFileSync(new URL('../../documents/replace-secrets-file.yml', import.meta.url), 'utf8'),
    ) as { mainSteps: Array<{ action: string; inputs: { timeoutSeconds?: string } }> };

    // Assert
    const step = document.mainSteps.find((s) => s.action === 'aws:runShellScript');
    expect(Number(step?.inputs.timeoutSeconds)).toBe(EXECUTION_TIMEOUT_SECONDS);
  });

  it('calls a command over only after its delivery timeout and execution timeout', () => {
    const sentAt = '2026-11-29T12:00:00.000Z';
    const over = commandDeadline(sentAt, config) - Date.parse(sentAt);
    expect(over).toBeGreaterThan(
      (config.rollout.timeoutSeconds + EXECUTION_TIMEOUT_SECONDS) * 1000,
    );
  });

  it('first sweeps a rollout once its first attempts must be over', () => {
    const created = new Date('2026-11-29T12:00:00.000Z');
    expect(firstSweepDue(created, config).getTime()).toBe(
      attemptDeadline({}, { createdAt: created.toISOString() }, config),
    );
  });

  it('counts a live claim, a sending lease and a retry waiting out its delay as still sending', () => {
    const now = new Date('2026-11-29T12:10:00.000Z');
    const soon = '2026-11-29T12:11:00.000Z';
    const long = '2026-11-29T11:00:00.000Z';
    expect(mayBeSendingStill({ attempt: 2, claimedUntil: soon }, {}, now)).toBe(true);
    expect(mayBeSendingStill({ attempt: 1 }, { sendingUntil: soon }, now)).toBe(true);
    expect(mayBeSendingStill({ attempt: 2, retryAt: now.toISOString() }, {}, now)).toBe(true);
    expect(mayBeSendingStill({ attempt: 2, retryAt: long, claimedUntil: long }, {}, now)).toBe(
      false,
    );
    expect(mayBeSendingStill({ attempt: 1 }, { sendingUntil: long }, now)).toBe(false);
  });
});
