import { SendCommandCommand, type SSMClient } from '@aws-sdk/client-ssm';
import type { FanoutConfig, FileTarget } from '../config.ts';
import { chunk, mapSettled } from '../platform/chunk.ts';

// SendCommand accepts at most 50 instance ids per call
// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html).
export const MAX_INSTANCES_PER_COMMAND = 50;
// SendCommand Comment: at most 100 characters (same page).
const MAX_COMMENT_LENGTH = 100;

export interface SendRequest {
  documentName: string;
  file: FileTarget;
  instanceIds: readonly string[];
  rolloutId: string;
  /** Which attempt this is (1 for the first send); carried in the Comment. */
  attempt?: number;
  rollout: FanoutConfig['rollout'];
  /** CloudWatch Logs group for the command output; the on-call reads stderr there. */
  outputLogGroup?: string;
  /** A staged rollout's alarm: Run Command does not run invocations still pending once it fires. */
  alarm?: string;
  /**
   * Called as soon as each chunk's command is sent (to record it before anything else can
   * fail). If it throws, sendInChunks still sends the other chunks, then throws the first error.
   */
  onSent?: (sent: SentChunk) => Promise<void>;
}

export interface SentChunk {
  commandId: string;
  parameter: string;
  path: string;
  instanceIds: string[];
}

export interface FailedChunk {
  parameter: string;
  path: string;
  instanceIds: string[];
  error: { name: string; message: string };
}

export interface SendResult {
  sent: SentChunk[];
  failed: FailedChunk[];
}

/**
 * The file at a pinned version (absent: the latest, the file as it is); `forward`: never over a
 * later version the instance has (NeverOlder). Never throws.
 */
export function withPin(
  file: FileTarget,
  version: number | undefined,
  forward: boolean,
): FileTarget {
  if (version === undefined) return file;
  return { ...file, version, ...(forward ? { neverOlder: true } : {}) };
}

/**
 * The document parameters for one file: only the source's *name*, never a value. SourceType is
 * sent only for a secret or a path, so a parameter's command is what it always was.
 */
export function documentParameters(file: FileTarget): Record<string, string[]> {
  const parameters: Record<string, string[]> = {
    ...(file.source === undefined || file.source === 'parameter'
      ? {}
      : { SourceType: [file.source] }),
    // A pinned version goes as Parameter Store's version selector, name:version
    // (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-versions.html).
    ParameterName: [
      file.version === undefined ? file.parameter : `${file.parameter}:${file.version}`,
    ],
    DestinationPath: [file.path],
    FileOwner: [file.owner],
    FileGroup: [file.group],
    FileMode: [file.mode],
    Format: [file.format],
    Backups: [String(file.backups)],
  };
  if (file.reloadService !== undefined) parameters.ReloadService = [file.reloadService];
  // Sent only when asked, so every other command is what it always was.
  if (file.neverOlder === true && file.version !== undefined) parameters.NeverOlder = ['true'];
  return parameters;
}

/**
 * The Comment every command of a rollout carries: the console and ListCommands show it, and
 * the tracker reads the rollout and the attempt back from it (the status event has neither).
 */
export function rolloutComment(rolloutId: string, attempt = 1): string {
  return `secrets-fanout rollout ${rolloutId} attempt ${attempt}`.slice(0, MAX_COMMENT_LENGTH);
}

/** The rollout id and attempt a command's Comment names, or undefined for other commands. */
export function parseRolloutComment(
  comment: string,
): { rolloutId: string; attempt: number } | undefined {
  const match = /^secrets-fanout rollout (\S+)(?: attempt ([1-9][0-9]*))?$/.exec(comment);
  if (match === null || match[1] === undefined) return undefined;
  return { rolloutId: match[1], attempt: Number(match[2] ?? 1) };
}

/**
 * Sends the ReplaceSecretsFile document to the instances in chunks of ≤50, a few chunks in
 * flight. ceil(n/50) SendCommand calls (one more for a chunk SSM refuses over a few of its ids).
 * A chunk that fails (throttled after the SDK's retries, or rejected) is reported with its
 * instance ids and does not stop the others. Never throws for an API error; throws what
 * `onSent` throws.
 */
export async function sendInChunks(ssm: SSMClient, request: SendRequest): Promise<SendResult> {
  const chunks = chunk(request.instanceIds, MAX_INSTANCES_PER_COMMAND);
  const where = { parameter: request.file.parameter, path: request.file.path };
  const recordErrors: unknown[] = [];
  const outcomes = await mapSettled(chunks, request.rollout.chunksInFlight, async (instanceIds) => {
    const parts = await sendChunk(ssm, request, instanceIds);
    for (const part of parts) {
      if ('commandId' in part && request.onSent !== undefined) {
        await request.onSent({ ...where, ...part }).catch((error) => recordErrors.push(error));
      }
    }
    return parts;
  });
  if (recordErrors.length > 0) throw recordErrors[0];
  const result: SendResult = { sent: [], failed: [] };
  outcomes.forEach((outcome, index) => {
    if (outcome.status === 'fulfilled') {
      for (const part of outcome.value) {
        if ('commandId' in part) result.sent.push({ ...where, ...part });
        else result.failed.push({ ...where, ...part });
      }
    } else {
      const instanceIds = chunks[index] ?? [];
      result.failed.push({ ...where, instanceIds, error: describeError(outcome.reason) });
    }
  });
  return result;
}

type ChunkPart =
  | { commandId: string; instanceIds: string[] }
  | { instanceIds: string[]; error: { name: string; message: string } };

/**
 * One SendCommand. SSM refuses the whole call when any id is not a valid managed instance
 * ("Instances [[i-…]] not in a valid state"), which happens when an instance stops or
 * deregisters between resolution and sending: then the named ids are reported and the rest of
 * the chunk is sent once more. Throws any other error.
 */
async function sendChunk(
  ssm: SSMClient,
  request: SendRequest,
  instanceIds: string[],
): Promise<ChunkPart[]> {
  try {
    return [{ commandId: await sendCommand(ssm, request, instanceIds), instanceIds }];
  } catch (error) {
    const refused = refusedInstanceIds(error, instanceIds);
    if (refused.length === 0 || refused.length === instanceIds.length) throw error;
    const rest = instanceIds.filter((id) => !refused.includes(id));
    return [
      { instanceIds: refused, error: describeError(error) },
      { commandId: await sendCommand(ssm, request, rest), instanceIds: rest },
    ];
  }
}

/** The ids of the chunk an InvalidInstanceId error names; [] for any other error. */
function refusedInstanceIds(error: unknown, instanceIds: string[]): string[] {
  if (!(error instanceof Error) || error.name !== 'InvalidInstanceId') return [];
  const named = new Set(error.message.match(/\bi-[0-9a-f]{8,17}\b/g) ?? []);
  return instanceIds.filter((id) => named.has(id));
}

async function sendCommand(
  ssm: SSMClient,
  request: SendRequest,
  instanceIds: string[],
): Promise<string> {
  const { Command } = await ssm.send(
    new SendCommandCommand({
      DocumentName: request.documentName,
      // CloudFormation's UpdateMethod NewVersion adds a version without always making it the
      // default (cloudformation-coverage-roadmap#2539): run the newest deployed.
      DocumentVersion: '$LATEST',
      InstanceIds: instanceIds,
      Parameters: documentParameters(request.file),
      Comment: rolloutComment(request.rolloutId, request.attempt),
      MaxConcurrency: request.rollout.maxConcurrency,
      MaxErrors: request.rollout.maxErrors,
      TimeoutSeconds: request.rollout.timeoutSeconds,
      CloudWatchOutputConfig: {
        CloudWatchOutputEnabled: true,
        ...(request.outputLogGroup === undefined
          ? {}
          : { CloudWatchLogGroupName: request.outputLogGroup }),
      },
      // One alarm per command (AlarmConfiguration.Alarms holds exactly one:
      // https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_AlarmConfiguration.html).
      // Not IgnorePollAlarmFailure: an alarm SSM cannot read stops the stage, as ours does.
      ...(request.alarm === undefined
        ? {}
        : {
            AlarmConfiguration: {
              Alarms: [{ Name: request.alarm }],
              IgnorePollAlarmFailure: false,
            },
          }),
    }),
  );
  if (Command?.CommandId === undefined) {
    throw Object.assign(new Error('SendCommand returned no CommandId'), { name: 'NoCommandId' });
  }
  return Command.CommandId;
}

// SendCommand errors that say nothing about the instances: the service was busy.
const TRANSIENT = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'InternalServerError',
  'InternalServerErrorException',
  'ServiceUnavailable',
]);

/** Whether a SendCommand error only says SSM was busy (throttled, or a 5xx): no attempt used. */
export function isTransient(name: string): boolean {
  return TRANSIENT.has(name);
}

/** Name and message of anything thrown, for reports; never includes request data. */
export function describeError(error: unknown): { name: string; message: string } {
  if (error instanceof Error) return { name: error.name, message: error.message };
  return { name: 'Error', message: String(error) };
}
