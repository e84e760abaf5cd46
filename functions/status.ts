import {
  filesForParameter,
  loadConfig,
  mappedParameterNames,
  requireEnv,
} from '../shared/config.ts';
import { InvalidInputError } from '../shared/errors.ts';
import {
  RolloutListRequestSchema,
  RolloutRequestSchema,
} from '../shared/messages/status-requests.ts';
import { documents } from '../shared/platform/clients/dynamodb.ts';
import { isHttpRequest, respond } from '../shared/platform/http.ts';
import { observedWithoutMetrics } from '../shared/platform/middleware.ts';
import { describeIssues } from '../shared/platform/parse.ts';
import { correlate } from '../shared/platform/powertools.ts';
import {
  recentRollouts,
  rolloutListTable,
  rolloutTable,
  rolloutView,
} from '../shared/report/status.ts';
import { RolloutReader } from '../shared/rollout/reader.ts';

const store = new RolloutReader(documents, requireEnv('ROLLOUTS_TABLE'));
const config = loadConfig();

type Answer = { status: number; body: unknown; table?: string[] };

/** Looks up what was asked: one rollout with every instance, or the newest rollouts. */
async function lookUp(input: unknown): Promise<Answer> {
  const invalid = (error: unknown): Answer => ({
    status: 400,
    body: { error: `invalid request: ${describeIssues(error)}` },
  });
  if (typeof input === 'object' && input !== null && 'rolloutId' in input) {
    const parsed = RolloutRequestSchema.safeParse(input);
    if (!parsed.success) return invalid(parsed.error);
    correlate({ rolloutId: parsed.data.rolloutId });
    const { rolloutId, limit, nextToken } = parsed.data;
    let view: Awaited<ReturnType<typeof rolloutView>>;
    try {
      view = await rolloutView(store, rolloutId, {
        limit,
        ...(nextToken === undefined ? {} : { nextToken }),
      });
    } catch (error) {
      if (error instanceof InvalidInputError) return invalid(error);
      throw error;
    }
    if (view === undefined) {
      return { status: 404, body: { error: `no rollout ${parsed.data.rolloutId}` } };
    }
    return { status: 200, body: view, table: rolloutTable(view) };
  }
  const parsed = RolloutListRequestSchema.safeParse(input);
  if (!parsed.success) return invalid(parsed.error);
  const { parameter, environment } = parsed.data;
  if (parameter !== undefined && !mappedParameterNames(config).includes(parameter)) {
    return {
      status: 404,
      body: { error: `parameter ${parameter} is not mapped in custom.fanout` },
    };
  }
  if (environment !== undefined && !config.environments.includes(environment)) {
    return { status: 404, body: { error: `environment ${environment} is not configured` } };
  }
  const rollouts = await recentRollouts(store, parsed.data);
  return { status: 200, body: { rollouts }, table: rolloutListTable(rollouts) };
}

/**
 * The on-call view. Over HTTP, per environment (so IAM can grant it per environment):
 * GET /environments/{environment}/rollouts/{id}[?limit=…&nextToken=…] (≤1,000 instances a
 * page; the counts always cover all) and GET /environments/{environment}/rollouts[?parameter=…
 * &limit=…] answer JSON. `serverless invoke -f status --data '{"rolloutId":"…"}'` answers a
 * table, one line per string.
 */
export const lambdaHandler = async (event: unknown): Promise<unknown> => {
  if (!isHttpRequest(event)) {
    const answer = await lookUp(event);
    return answer.table ?? answer.body;
  }
  const answer = await lookUpIn(event.pathParameters?.environment ?? '', event.pathParameters?.id, {
    ...(event.queryStringParameters ?? {}),
  });
  return respond(answer.status, answer.body);
};

/** The HTTP view of one environment: nothing of another one is shown, not even that it exists. */
async function lookUpIn(
  environment: string,
  rolloutId: string | undefined,
  query: Record<string, string | undefined>,
): Promise<Answer> {
  if (!config.environments.includes(environment)) {
    return { status: 404, body: { error: `environment ${environment} is not configured` } };
  }
  if (rolloutId !== undefined) {
    const answer = await lookUp({ ...query, rolloutId });
    const found = answer.body as { environment?: string };
    if (answer.status === 200 && found.environment !== environment) {
      return { status: 404, body: { error: `no rollout ${rolloutId} in ${environment}` } };
    }
    return answer;
  }
  const { parameter, environment: named, ...rest } = query;
  if (named !== undefined && named !== environment) {
    return { status: 400, body: { error: `environment is ${environment} (the path's)` } };
  }
  if (parameter !== undefined) {
    if (filesForParameter(config, parameter)[0]?.environment !== environment) {
      return {
        status: 404,
        body: { error: `parameter ${parameter} is not mapped in environment ${environment}` },
      };
    }
    return lookUp({ ...rest, parameter });
  }
  return lookUp({ ...rest, environment });
}

export const handler = observedWithoutMetrics<unknown, unknown>().handler(lambdaHandler);
