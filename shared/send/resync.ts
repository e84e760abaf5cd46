import {
  type FileTarget,
  filesForEnvironment,
  filesForParameter,
  mappedParameterNames,
  sourceOf,
} from '../config.ts';
import { InstancesNotInEnvironmentError } from '../errors.ts';
import { ResyncRequestSchema, RolloutDecisionSchema } from '../messages/requests.ts';
import type { PlanMessage } from '../messages/retry.ts';
import { type Answer, refuse } from '../platform/http.ts';
import { describeIssues } from '../platform/parse.ts';
import { correlate, logger } from '../platform/powertools.ts';
import { newRolloutId } from '../rollout/rollout-id.ts';
import { decideHalted } from '../stages/decisions.ts';
import { type FanOutDeps, fanOut } from './fanout.ts';
import { hasRunningInstance } from './fleet.ts';
import { stagingParameters } from './holds.ts';
import { currentVersion } from './parameters.ts';

/**
 * A manual re-sync by `principal` (an IAM ARN): push one mapped parameter, or every file of an
 * environment, to all or some of its instances, through the same fan-out as a Parameter Store
 * change. Only mapped parameters, only to their mapped paths: the caller chooses no path, owner,
 * mode or command. Bad input is a 400/404 naming the problem, with nothing recorded or sent.
 * Throws only for AWS failures.
 */
export async function resync(deps: FanOutDeps, input: unknown, principal: string): Promise<Answer> {
  if (typeof input === 'object' && input !== null && 'action' in input) {
    // Resume or abandon a halted staged rollout.
    const decision = RolloutDecisionSchema.safeParse(input);
    if (!decision.success) return refuse(400, `invalid request: ${describeIssues(decision.error)}`);
    logger.info('decision on a halted rollout requested', { principal, request: decision.data });
    return decideHalted(deps, decision.data, principal);
  }
  const parsed = ResyncRequestSchema.safeParse(input);
  if (!parsed.success) return refuse(400, `invalid request: ${describeIssues(parsed.error)}`);
  const request = parsed.data;
  logger.info('resync requested', { principal, request });

  const files =
    request.parameter !== undefined
      ? filesForParameter(deps.config, request.parameter)
      : filesForEnvironment(deps.config, request.environment ?? '');
  const environment = files[0]?.environment;
  if (environment === undefined) {
    return request.parameter !== undefined
      ? refuse(
          404,
          `parameter ${request.parameter} is not mapped in custom.fanout; mapped: ${mappedParameterNames(deps.config).join(', ')}`,
        )
      : refuse(
          404,
          `environment ${request.environment} is not configured; configured: ${deps.config.environments.join(', ')}`,
        );
  }
  // A whole environment is answered at once; whether it has a running instance at all is one
  // DescribeInstances page, asked beside the look-ups below rather than after them (the answer
  // waits for the slowest, not for their sum). Marked handled: an answer that refuses before it
  // needs it must not leave a rejected promise behind.
  const wholeEnvironment = request.instanceIds === undefined && request.dryRun !== true;
  const running = wholeEnvironment
    ? hasRunningInstance(deps.ec2, { tagKey: deps.config.tagKey, environment })
    : undefined;
  running?.catch(() => undefined);
  // A parameter that does not exist cannot be pushed: say so now rather than let every
  // instance fail to fetch it (DescribeParameters: metadata only, never a value). Secrets and
  // paths are not parameters: they go out, and an instance reports one that is missing (67).
  const versions = new Map(
    await Promise.all(
      [...new Set(files.filter((f) => sourceOf(f) === 'parameter').map((f) => f.parameter))].map(
        async (name) => [name, await currentVersion(deps.ssm, name)] as const,
      ),
    ),
  );
  const missing = [...versions].filter(([, v]) => v === undefined).map(([name]) => name);
  const existing = files.filter((f) => !missing.includes(f.parameter));
  if (existing.length === 0) {
    return refuse(
      404,
      `${missing.join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist in Parameter Store; nothing sent`,
    );
  }
  // A parameter a staged rollout is going out for is left to it: a re-sync would take the
  // unproven version past its canary.
  const staging = await stagingParameters(
    deps.store,
    environment,
    existing.map((f) => f.parameter),
  );
  const present = existing.filter((f) => !staging.has(f.parameter));
  if (present.length === 0) {
    return refuse(
      409,
      `a staged rollout is going out for ${[...staging].map(([name, id]) => `${name} (rollout ${id})`).join(', ')}: it reaches every instance stage by stage; re-sync once it is done, or once it halts (a re-sync then writes the last complete version)`,
    );
  }
  const version = request.parameter === undefined ? undefined : versions.get(request.parameter);
  const rolloutId = newRolloutId(new Date());
  correlate({
    rolloutId,
    environment,
    ...(request.parameter === undefined ? {} : { parameter: request.parameter }),
    ...(version === undefined ? {} : { version }),
  });
  if (running !== undefined) {
    return planLater(deps, running, {
      rolloutId,
      environment,
      files: present,
      principal,
      missing,
      staging,
      version,
    });
  }
  try {
    const summary = await fanOut(deps, {
      rolloutId,
      trigger: { type: 'resync', principal },
      environment,
      files: present,
      ...(version === undefined ? {} : { version }),
      ...(request.instanceIds === undefined ? {} : { instanceIds: request.instanceIds }),
      ...(request.dryRun === true ? { dryRun: true } : {}),
      skipIfEmpty: true,
    });
    if (summary.empty && request.dryRun !== true) {
      return nothingToSend(deps, principal, environment, summary.parameters);
    }
    logger.info(request.dryRun === true ? 'resync dry run' : 'resync sent', {
      principal,
      rolloutId,
      environment,
      targeted: summary.targeted.length,
      unreachable: summary.unreachable.length,
    });
    return {
      status: request.dryRun === true ? 200 : 202,
      body: {
        ...(request.dryRun === true ? { dryRun: true } : { rolloutId }),
        requestedBy: principal,
        environment,
        parameters: summary.parameters,
        ...(version === undefined ? {} : { version }),
        targeted: summary.targeted,
        unreachable: summary.unreachable,
        ...skipped(missing, staging),
        ...(request.dryRun === true
          ? {}
          : {
              commandIds: summary.commands.map((c) => c.commandId),
              follow: follow(deps, environment, rolloutId),
            }),
      },
    };
  } catch (error) {
    if (error instanceof InstancesNotInEnvironmentError) return refuse(400, error.message);
    throw error;
  }
}

/**
 * A whole environment: answered at once, whatever its size. One DescribeInstances page
 * (`running`, asked already) says whether there is anything to send; the rest (resolving, recording, sending) is a plan message
 * on the send queue, carried out under the rollout id given in the answer.
 */
async function planLater(
  deps: FanOutDeps,
  running: Promise<boolean>,
  plan: {
    rolloutId: string;
    environment: string;
    files: FileTarget[];
    principal: string;
    missing: string[];
    staging: Map<string, string>;
    version: number | undefined;
  },
): Promise<Answer> {
  const { rolloutId, environment, principal } = plan;
  const parameters = [...new Set(plan.files.map((f) => f.parameter))];
  if (!(await running)) {
    return nothingToSend(deps, principal, environment, parameters);
  }
  const message: PlanMessage = {
    kind: 'plan',
    rolloutId,
    environment,
    files: plan.files.map(({ parameter, path }) => ({ parameter, path })),
    principal,
    ...(plan.version === undefined ? {} : { version: plan.version }),
  };
  await deps.ledger.queueMessages([{ body: message, delay: 0 }]);
  logger.info('resync accepted; planning on the send queue', { principal, rolloutId, environment });
  return {
    status: 202,
    body: {
      rolloutId,
      accepted: true,
      requestedBy: principal,
      environment,
      parameters,
      ...(plan.version === undefined ? {} : { version: plan.version }),
      ...skipped(plan.missing, plan.staging),
      follow: follow(deps, environment, rolloutId),
    },
  };
}

/**
 * A whole-environment re-sync's plan, taken from the send queue: the fan-out under the rollout
 * id the caller was given (a redelivered message continues where the last run stopped).
 * Throws RolloutBusyError while another run holds the rollout, and the SDK error.
 */
export async function planResync(deps: FanOutDeps, message: PlanMessage) {
  const files = filesForEnvironment(deps.config, message.environment).filter((file) =>
    message.files.some((f) => f.parameter === file.parameter && f.path === file.path),
  );
  correlate({ rolloutId: message.rolloutId, environment: message.environment });
  return fanOut(deps, {
    rolloutId: message.rolloutId,
    trigger: { type: 'resync', principal: message.principal },
    environment: message.environment,
    files,
    ...(message.version === undefined ? {} : { version: message.version }),
    skipIfEmpty: true,
  });
}

/** An environment with no running instance: answered 200, nothing recorded or sent. */
function nothingToSend(
  deps: FanOutDeps,
  principal: string,
  environment: string,
  parameters: string[],
): Answer {
  logger.info('resync: no running instance in the environment; nothing recorded or sent', {
    principal,
    environment,
  });
  return {
    status: 200,
    body: {
      nothingToSend: true,
      reason: `no running instance is tagged ${deps.config.tagKey}=${environment}; no rollout was recorded`,
      requestedBy: principal,
      environment,
      parameters,
    },
  };
}

function skipped(missing: string[], staging: Map<string, string> = new Map()) {
  const left = [
    ...missing.map((parameter) => ({ parameter, reason: 'does not exist' })),
    ...[...staging].map(([parameter, rolloutId]) => ({
      parameter,
      reason: `a staged rollout is going out (rollout ${rolloutId})`,
    })),
  ];
  return left.length === 0 ? {} : { skipped: left };
}

function follow(deps: FanOutDeps, environment: string, rolloutId: string) {
  const stage = deps.stage === undefined ? '' : ` --stage ${deps.stage}`;
  return {
    cli: `npx serverless invoke -f status${stage} --data '${JSON.stringify({ rolloutId })}'`,
    http: `GET /environments/${environment}/rollouts/${rolloutId}`,
  };
}
