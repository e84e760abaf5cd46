// Build-time bridge between serverless.yml and shared/config.ts: serverless.yml reads
// `${file(./shared/build/serverless-config.cjs):<name>}`, and every value here comes from custom.fanout
// validated by the same zod schema the functions use at cold start. A bad config therefore
// fails `serverless package` with the field named, before anything is deployed.
// CommonJS because the Serverless Framework `require`s variable files; Node 24 loads the
// TypeScript module directly (type stripping + require(esm)).
const { configDigest, mappedSourceNames } = require('../config.ts');
const { validated, escapeVariables, loadDocument } = require('./fanout-config.cjs');

const MAX_EVENT_PATTERN = 2048;

// A name no parameter can have ("{" is not allowed in one): an event pattern may not hold an
// empty list, so a rule with nothing mapped matches this and never fires.
const MATCHES_NOTHING = '{nothing-mapped}';

/** EventBridge allows 2,048 characters per event pattern (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html). */
function checkPatternSize(what, count, detail) {
  const patternSize = JSON.stringify({
    source: ['aws.ssm'],
    'detail-type': ['Parameter Store Change'],
    detail,
  }).length;
  if (patternSize > MAX_EVENT_PATTERN) {
    throw new Error(
      `custom.fanout maps ${count} ${what}: the rule's event pattern would be ${patternSize} characters, over EventBridge's ${MAX_EVENT_PATTERN}. Map fewer files or environments per stage.`,
    );
  }
}

/**
 * The validated config as compact JSON. Whether it fits Lambda's 4 KB of environment with the
 * other variables is checked on the whole template (environment-size.cjs).
 */
async function configJson(resolveVariable) {
  return JSON.stringify(await validated(resolveVariable));
}

module.exports = {
  /** The validated config, compact JSON, for the FANOUT_CONFIG environment variable. */
  json: ({ resolveVariable }) => configJson(resolveVariable),

  /**
   * FANOUT_CONFIG's digest, for FANOUT_CONFIG_SHA256: a cold start that finds the same text
   * reads it without building the schema again (shared/config.ts loadConfig).
   */
  async digest({ resolveVariable }) {
    return configDigest(await configJson(resolveVariable));
  },

  /** Every expanded parameter name (files of `parameter:`), for propagate's rule. */
  async parameterNames({ resolveVariable }) {
    const names = mappedSourceNames(await validated(resolveVariable), 'parameter');
    checkPatternSize('parameters', names.length, { name: names });
    return names.length > 0 ? names : [MATCHES_NOTHING];
  },

  /** A prefix match per expanded path (files of `parametersByPath:`), for pathChange's rule. */
  async pathPrefixes({ resolveVariable }) {
    const prefixes = mappedSourceNames(await validated(resolveVariable), 'parametersByPath').map(
      (path) => ({ prefix: path }),
    );
    checkPatternSize('paths', prefixes.length, { name: prefixes });
    return prefixes.length > 0 ? prefixes : [MATCHES_NOTHING];
  },

  /** The name of the launch lifecycle hook the bootstrap completes. */
  async lifecycleHookName({ resolveVariable }) {
    return (await validated(resolveVariable)).bootstrap.lifecycleHookName;
  },

  /** The tag key that places an instance in an environment. */
  async tagKey({ resolveVariable }) {
    return (await validated(resolveVariable)).tagKey;
  },

  /**
   * The document for AWS::SSM::Document Content. The framework resolves variables in what this
   * returns, and the shell text is full of `${...}` (`${detail:+…}` even parses as a variable
   * source), so every `${` is escaped as `\${`, which the framework turns back into `${`.
   * A template test checks the deployed Content equals the YAML file exactly.
   */
  async documentContent() {
    return escapeVariables(loadDocument());
  },

  // IAM (./iam.cjs), drift schedules (./drift.cjs) and the dashboard (./dashboard.cjs): every
  // value serverless.yml reads stays reachable as serverless-config.cjs:<name>.
  ...require('./iam.cjs'),
  ...require('./drift.cjs'),
  ...require('./dashboard.cjs'),
};
