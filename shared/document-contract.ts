/**
 * The contract between the ReplaceSecretsFile SSM document (documents/replace-secrets-file.yml)
 * and the Lambdas that send it and track its invocations: exit codes, how to treat them, and
 * the machine-readable result line the document prints last on stdout.
 *
 * The document's shell script declares the same numbers (`readonly EXIT_...=`); a test in
 * test/document asserts both sides agree. Dependency-free on purpose: the tracker, the local
 * cloud and the tests all import it.
 */

/**
 * Exit codes of the document's `aws:runShellScript` step.
 *
 * Chosen from the sysexits.h range (64-78) so none collides with codes that already mean
 * something on the instance:
 * - 194 makes SSM Agent reboot the node and re-run the script (Linux), 3010 the same on Windows
 *   (https://docs.aws.amazon.com/systems-manager/latest/userguide/send-commands-reboot.html);
 * - 137 is what SSM Agent reports for a step it stopped (timeout or cancel), see
 *   `CommandStoppedPreemptivelyExitCode` in amazon-ssm-agent agent/appconfig/constants_unix.go;
 * - 1 and 2 are generic shell failures, 124 is GNU `timeout`'s own code, 126/127 are "not
 *   executable" / "not found", 128+n is "killed by signal n".
 */
export const DocumentExitCode = {
  /** File written (result=updated) or already identical (result=unchanged). */
  Success: 0,
  /**
   * A parameter value failed the script's own checks (defence in depth behind allowedPattern),
   * among them a version selector on a secret or a path, or a label as selector: one
   * allowedPattern serves every SourceType, so the script tells them apart. NeverOlder true on a
   * secret or a path too (only a parameter can be pinned and has its version recorded).
   */
  BadArguments: 64,
  /** The fetched value is empty or fails the Format check; the old file is untouched. */
  ContentInvalid: 65,
  /**
   * Refused before the swap, the live file untouched: the destination's directory does not exist
   * or is writable by every user without the sticky bit; the destination is a symbolic link, not
   * a regular file, or has a second hard link; a backup name holds a directory; the document's
   * temporary directory or the live file was replaced while in use; or the state directory
   * (/var/lib/secrets-fanout) is not the runner's own directory, or the version record under it
   * (versions/<directory>/@<file>), or a directory on its way, is a symbolic link, not the
   * runner's, writable by group or others, or hard-linked.
   */
  DestinationUnusable: 66,
  /** The parameter does not exist in Parameter Store (deleted, or never created): not retried. */
  ParameterNotFound: 67,
  /**
   * The version a pinned ParameterName (`/prod/env.php:7`) asks for does not exist: never
   * created, or no longer in the parameter's history, which keeps its last 100 versions
   * (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-versions.html).
   * GetParameter answers ParameterVersionNotFound
   * (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html).
   * Permanent: retrying cannot bring a version back; a rollout must pin another one.
   */
  ParameterVersionNotFound: 68,
  /** The file was swapped, the reload failed, the previous file was restored and reloaded. */
  ReloadFailedRolledBack: 70,
  /** The reload failed and restoring the previous file (or reloading it) failed too. */
  RollbackFailed: 71,
  /** Format=json but neither jq nor python3 is installed on the instance. */
  ValidatorUnavailable: 69,
  /**
   * Creating, owning or renaming a file failed (unknown user or group, read-only file system).
   * A full disk always ends here, whichever write hit it, the fetched output's included, and is
   * permanent: freeing space takes someone, so alerting beats retrying within minutes.
   */
  WriteFailed: 73,
  /**
   * `aws ssm get-parameter` failed, timed out or printed something unparseable. Never a full
   * disk: storing the CLI's output is a write, WriteFailed.
   */
  FetchFailed: 75,
  /** Another run on the same destination held the lock for longer than the script waits. */
  LockBusy: 76,
  /** A tool the script cannot work without (the AWS CLI, cmp) is missing on the instance. */
  ToolMissing: 78,
} as const;

export type DocumentExitCodeName = keyof typeof DocumentExitCode;

/** How the tracker should treat an invocation that ended with a given exit code. */
export type ExitCodeClass = 'success' | 'retryable' | 'permanent' | 'unknown';

const exitCodeClasses: ReadonlyMap<number, ExitCodeClass> = new Map<number, ExitCodeClass>([
  [DocumentExitCode.Success, 'success'],
  [DocumentExitCode.FetchFailed, 'retryable'],
  [DocumentExitCode.LockBusy, 'retryable'],
  [DocumentExitCode.BadArguments, 'permanent'],
  [DocumentExitCode.ContentInvalid, 'permanent'],
  [DocumentExitCode.DestinationUnusable, 'permanent'],
  [DocumentExitCode.ParameterNotFound, 'permanent'],
  [DocumentExitCode.ParameterVersionNotFound, 'permanent'],
  [DocumentExitCode.ReloadFailedRolledBack, 'permanent'],
  [DocumentExitCode.RollbackFailed, 'permanent'],
  [DocumentExitCode.ValidatorUnavailable, 'permanent'],
  [DocumentExitCode.WriteFailed, 'permanent'],
  [DocumentExitCode.ToolMissing, 'permanent'],
]);

/**
 * Classifies an exit code of the document. Codes the document never chooses (the agent's 137
 * for a timed-out or cancelled step, a shell's 1/2/126/127, a signal) are `unknown`: the caller
 * decides, typically by retrying within its budget. Never throws.
 */
export function classifyExitCode(code: number): ExitCodeClass {
  return exitCodeClasses.get(code) ?? 'unknown';
}

/** The name of an exit code the document defines, or undefined. Never throws. */
export function exitCodeName(code: number): DocumentExitCodeName | undefined {
  for (const [name, value] of Object.entries(DocumentExitCode)) {
    if (value === code) return name as DocumentExitCodeName;
  }
  return undefined;
}

/** The `reason=` values a `result=failed` line carries, each tied to one exit code. */
export const FailureReasonExitCode = {
  'bad-arguments': DocumentExitCode.BadArguments,
  'content-invalid': DocumentExitCode.ContentInvalid,
  'destination-unusable': DocumentExitCode.DestinationUnusable,
  'reload-failed': DocumentExitCode.ReloadFailedRolledBack,
  'rollback-failed': DocumentExitCode.RollbackFailed,
  'validator-unavailable': DocumentExitCode.ValidatorUnavailable,
  'write-failed': DocumentExitCode.WriteFailed,
  'fetch-failed': DocumentExitCode.FetchFailed,
  'fetch-timeout': DocumentExitCode.FetchFailed,
  /** Parameter Store kept throttling the fetch after the document's own backoff. */
  'fetch-throttled': DocumentExitCode.FetchFailed,
  'parameter-not-found': DocumentExitCode.ParameterNotFound,
  /** The pinned version (ParameterName `name:N`) is not in the parameter's history. */
  'version-not-found': DocumentExitCode.ParameterVersionNotFound,
  'lock-busy': DocumentExitCode.LockBusy,
  'tool-missing': DocumentExitCode.ToolMissing,
} as const;

export type FailureReason = keyof typeof FailureReasonExitCode;

/**
 * The `reason=` values a `result=unchanged` line may carry (exit code 0). Without one, the file
 * already held exactly the fetched content.
 * - `newer-on-disk`: NeverOlder was true, ParameterName pinned `name:N`, and the document's own
 *   record says the file holds a newer version of that parameter (its content unchanged since):
 *   nothing was fetched or written, and `version=` is the version on disk, not N.
 */
export const UNCHANGED_REASONS = ['newer-on-disk'] as const;

export type UnchangedReason = (typeof UNCHANGED_REASONS)[number];

/** The prefix of the document's machine-readable result line. */
export const RESULT_LINE_PREFIX = 'secrets-fanout';

/**
 * What a run reports writing (or finding already there): `version` for a parameter, `revision`
 * (the VersionId of AWSCURRENT) for a Secrets Manager secret, `entries` (how many parameters the
 * file holds) for a file composed from a path. A success names at least one of them.
 */
export interface WrittenSource {
  version?: number;
  revision?: string;
  entries?: number;
}

export type DocumentResult =
  | ({ result: 'updated' } & WrittenSource)
  | ({ result: 'unchanged'; reason?: UnchangedReason } & WrittenSource)
  | ({ result: 'failed'; reason: FailureReason } & WrittenSource);

const resultLinePattern =
  /^secrets-fanout result=(updated|unchanged|failed)((?: [a-z]+=[A-Za-z0-9._-]+)*)\s*$/;

function isFailureReason(value: string): value is FailureReason {
  return Object.hasOwn(FailureReasonExitCode, value);
}

function isUnchangedReason(value: string | undefined): value is UnchangedReason {
  return (UNCHANGED_REASONS as readonly (string | undefined)[]).includes(value);
}

/**
 * Parses the document's result line out of an invocation's standard output (the last line
 * starting with `secrets-fanout result=`; anything the agent appended after it, such as its
 * `--output truncated--` marker, is ignored). Returns undefined when there is no well-formed
 * result line, e.g. the step was killed before printing it. Never throws.
 *
 * Examples: `secrets-fanout result=updated version=7`,
 * `secrets-fanout result=unchanged version=8 reason=newer-on-disk` (a pinned run of an older
 * version found version 8 in the file; read as unchanged, version 8 written),
 * `secrets-fanout result=failed reason=fetch-failed`.
 */
export function parseResultLine(stdout: string): DocumentResult | undefined {
  const lines = stdout.split('\n');
  for (let index = lines.length - 1; index >= 0; index -= 1) {
    const line = (lines[index] ?? '').replace(/\r$/, '');
    if (!line.startsWith(`${RESULT_LINE_PREFIX} result=`)) continue;
    return parseOneLine(line);
  }
  return undefined;
}

function parseOneLine(line: string): DocumentResult | undefined {
  const match = resultLinePattern.exec(line);
  if (!match) return undefined;
  const fields = new Map<string, string>();
  for (const pair of (match[2] ?? '').trim().split(' ')) {
    if (pair === '') continue;
    const [key = '', value = ''] = pair.split('=', 2);
    fields.set(key, value);
  }
  const version = countOf(fields.get('version'));
  const entries = countOf(fields.get('entries'));
  const revision = fields.get('revision');
  const written: WrittenSource = {
    ...(version === undefined ? {} : { version }),
    ...(revision !== undefined && revision !== '' ? { revision } : {}),
    ...(entries === undefined ? {} : { entries }),
  };
  const result = match[1];
  if (result === 'updated' || result === 'unchanged') {
    if (Object.keys(written).length === 0) return undefined;
    // An unchanged reason this parser does not know is still an unchanged file.
    const reason = fields.get('reason');
    return result === 'unchanged' && isUnchangedReason(reason)
      ? { result, reason, ...written }
      : { result, ...written };
  }
  const reason = fields.get('reason');
  if (reason === undefined || !isFailureReason(reason)) return undefined;
  return { result: 'failed', reason, ...written };
}

/**
 * A positive whole number as the document prints it, or undefined. A number a JavaScript number
 * cannot hold exactly (a pinned version may have up to 18 digits; 2^53 has 16) is left out
 * rather than reported as a neighbouring version.
 */
function countOf(text: string | undefined): number | undefined {
  if (text === undefined || !/^[1-9][0-9]*$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}
