import { classifyExitCode, exitCodeName, parseResultLine } from '../document-contract.ts';
import type { LastError } from '../rollout/model.ts';

/**
 * What one Run Command invocation of the document means for its target.
 *
 * Statuses, from "Understanding command statuses"
 * (https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html):
 * - Success: the script exited 0 (our result line says updated or unchanged).
 * - Failed: the script exited non-zero; the exit code says why (shared/document-contract.ts).
 * - Delivery Timed Out: not delivered before TimeoutSeconds (agent down, instance stopped).
 * - Undeliverable: "The instance might not exist or it might not be responding."
 * - Execution Timed Out: started but not finished within the step's timeoutSeconds.
 * - Cancelled / Terminated: cancelled by someone, or by SSM once MaxErrors was exceeded.
 * - Access Denied: the sender may not run commands on this instance (IAM tag condition).
 * - Invalid Platform: the instance does not match the document's platform.
 * The EventBridge event carries the coarse Status (Success, Failed, TimedOut, Cancelled…);
 * the fine one (StatusDetails) comes from ListCommandInvocations / GetCommandInvocation.
 */
export type Outcome =
  | {
      kind: 'Success' | 'Unchanged';
      /** What is now on disk: a parameter's version, a secret's VersionId, a path's entries. */
      versionWritten?: number;
      revisionWritten?: string;
      entriesWritten?: number;
    }
  | { kind: 'Retryable' | 'Permanent'; lastError: LastError }
  | {
      kind: 'InstanceGone';
      reason: 'InstanceTerminated' | 'InstanceStopped';
      lastError: LastError;
    };

export interface Invocation {
  /** Coarse status: Success, Failed, TimedOut, Cancelled… */
  status: string;
  /** Fine status: "Delivery Timed Out", "Undeliverable"… (falls back to status). */
  statusDetails?: string;
  exitCode?: number;
  stdout?: string;
  stderr?: string;
}

/** EC2 instance state when the invocation ended, for delivery failures; undefined if unknown. */
export type InstanceState = 'running' | 'stopped' | 'terminated' | 'missing' | undefined;

const DELIVERY_FAILURES = new Set(['Delivery Timed Out', 'DeliveryTimedOut', 'Undeliverable']);
const PERMANENT_STATUSES = new Set([
  'Access Denied',
  'AccessDenied',
  'Invalid Platform',
  'InvalidPlatform',
]);

/** Classifies one finished invocation. Never throws; anything unknown is retryable. */
export function classify(invocation: Invocation, instance: InstanceState): Outcome {
  const details = invocation.statusDetails || invocation.status;
  if (invocation.status === 'Success') {
    const result = parseResultLine(invocation.stdout ?? '');
    const versionWritten = result !== undefined && 'version' in result ? result.version : undefined;
    const revisionWritten = result?.revision;
    const entriesWritten = result?.entries;
    return {
      kind: result?.result === 'unchanged' ? 'Unchanged' : 'Success',
      ...(versionWritten === undefined ? {} : { versionWritten }),
      ...(revisionWritten === undefined ? {} : { revisionWritten }),
      ...(entriesWritten === undefined ? {} : { entriesWritten }),
    };
  }
  const lastError = describeFailure(invocation);
  if (DELIVERY_FAILURES.has(details)) {
    if (instance === 'terminated' || instance === 'missing') {
      return { kind: 'InstanceGone', reason: 'InstanceTerminated', lastError };
    }
    if (instance === 'stopped')
      return { kind: 'InstanceGone', reason: 'InstanceStopped', lastError };
    return { kind: 'Retryable', lastError };
  }
  if (PERMANENT_STATUSES.has(details)) return { kind: 'Permanent', lastError };
  if (invocation.status === 'Failed' && invocation.exitCode !== undefined && details === 'Failed') {
    return {
      kind: classifyExitCode(invocation.exitCode) === 'permanent' ? 'Permanent' : 'Retryable',
      lastError,
    };
  }
  // Execution Timed Out, Cancelled, Terminated (MaxErrors reached), unknown: try again.
  return { kind: 'Retryable', lastError };
}

/** The on-call's view of a failed invocation: status, exit code and its meaning, last stderr line. */
export function describeFailure(invocation: Invocation): LastError {
  const status = invocation.statusDetails || invocation.status;
  const stderr = lastLine(invocation.stderr);
  const known = invocation.exitCode === undefined ? undefined : exitCodeName(invocation.exitCode);
  const exitCode =
    invocation.exitCode !== undefined && invocation.exitCode >= 0 ? invocation.exitCode : undefined;
  return {
    status,
    ...(exitCode === undefined ? {} : { exitCode }),
    ...(exitCode === undefined
      ? {}
      : {
          meaning:
            known ??
            (exitCode === 137 ? 'StoppedByAgent (step timeout or cancel)' : 'UnknownExitCode'),
        }),
    ...(stderr === undefined ? {} : { stderr }),
  };
}

function lastLine(text: string | undefined): string | undefined {
  const line = text
    ?.split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('--output truncated'))
    .at(-1);
  return line === undefined ? undefined : line.slice(0, 300);
}
