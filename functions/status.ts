import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { documents } from '../shared/clients/dynamodb.ts';
import { loadConfig, mappedParameterNames, requireEnv } from '../shared/config.ts';
import { isHttpRequest, respond } from '../shared/http.ts';
import { describeIssues } from '../shared/parse.ts';
import { correlate, logger, tracer } from '../shared/powertools.ts';
import { RolloutStore } from '../shared/rollouts.ts';
import { RolloutListRequestSchema, RolloutRequestSchema } from '../shared/schemas/requests.ts';
import { recentRollouts, rolloutListTable, rolloutTable, rolloutView } from '../shared/status.ts';

const store = new RolloutStore(documents, requireEnv('ROLLOUTS_TABLE'));
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
    const view = await rolloutView(store, parsed.data.rolloutId);
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
 * The on-call view. GET /rollouts/{id} and GET /rollouts?parameter=…&limit=… answer JSON;
 * `serverless invoke -f status --data '{"rolloutId":"…"}'` answers a table, one line per string.
 */
export const lambdaHandler = async (event: unknown): Promise<unknown> => {
  if (!isHttpRequest(event)) {
    const answer = await lookUp(event);
    return answer.table ?? answer.body;
  }
  const id = event.pathParameters?.id;
  const answer = await lookUp(
    id === undefined ? { ...(event.queryStringParameters ?? {}) } : { rolloutId: id },
  );
  return respond(answer.status, answer.body);
};

export const handler = middy<unknown, unknown>()
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .handler(lambdaHandler);
