import { createHash } from 'node:crypto';
import { ConfigError } from './errors.ts';
import * as z from './zod.ts';

/**
 * `custom.fanout` in serverless.yml: which parameters go to which files on which instances.
 * Validated by this one schema at package time (shared/build/serverless-config.cjs) and again at
 * cold start (loadConfig), so a deployed function never runs with a config the build refused.
 *
 * The string patterns are at least as strict as the allowedPattern of the matching parameter in
 * documents/replace-secrets-file.yml (a test checks every accepted value against the document),
 * so a config that passes here can never make SSM reject a SendCommand.
 */

const ENV_PLACEHOLDER = '{env}';

/** Where a file's content comes from: one parameter, one secret, or every parameter under a path. */
export const SOURCE_KINDS = ['parameter', 'secret', 'parametersByPath'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

const RATE = /^rate\(([1-9][0-9]{0,5}) (minute|minutes|hour|hours|day|days)\)$/;
const MIN_DRIFT_INTERVAL_SECONDS = 15 * 60;
const UNIT_SECONDS: Record<string, number> = { minute: 60, hour: 3600, day: 86400 };

/** Seconds between two runs of a rate expression; NaN for anything else. Never throws. */
export function driftIntervalSeconds(expression: string): number {
  const [, value, unit] = RATE.exec(expression) ?? [];
  const seconds = UNIT_SECONDS[unit?.replace(/s$/, '') ?? ''];
  return seconds === undefined ? Number.NaN : Number(value) * seconds;
}

/**
 * Every schema of the config, built on first use: at package time, and at a cold start only
 * when FANOUT_CONFIG is not the text the package validated (see `loadConfig`). Building them
 * and parsing with them costs about 7 ms of every cold start (npm run bench, paired runs).
 */
function buildSchemas() {
  // EC2 tag keys: 1-128 Unicode chars; we keep to what is safe in an EventBridge pattern and in
  // an IAM condition key name (letters, digits, space and _ . : / = + - @).
  const tagKey = z.string().check(
    z.regex(
      /^[A-Za-z0-9 _.:/=+\-@]{1,128}$/,
      'must be 1-128 chars of letters, digits, space, _.:/=+-@',
    ),
    z.refine((key) => !key.startsWith('aws:'), 'the aws: prefix is reserved by AWS'),
  );

  // An environment name is used as a tag value, inside parameter names and inside paths.
  const environmentName = z
    .string()
    .check(
      z.regex(
        /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/,
        'must be 1-63 chars: letters, digits, _ . - (not first)',
      ),
    );

  const ONLY_ENV_PLACEHOLDER = `the only placeholder allowed is ${ENV_PLACEHOLDER}`;
  /** Whether `{env}` is the only placeholder in a name. Never throws. */
  const onlyEnvPlaceholder = (name: string) =>
    name.replaceAll(ENV_PLACEHOLDER, '').match(/[{}]/) === null;
  /** Parameter names and paths under /aws and /ssm are AWS's own. */
  const reservedByAws = (name: string) => /^\/aws(\/|$)|^\/ssm(\/|$)/i.test(name);

  /** The checks of a source name template: it must hold `{env}`, and no other placeholder. */
  const withEnvPlaceholder = [
    z.refine<string>((n) => n.includes(ENV_PLACEHOLDER), `must contain ${ENV_PLACEHOLDER}`),
    z.refine<string>(onlyEnvPlaceholder, ONLY_ENV_PLACEHOLDER),
  ];

  // Parameter names: "/" separated, letters, digits and _.- per the Parameter Store naming rules
  // (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-su-create.html),
  // plus the {env} placeholder; always fully qualified so IAM ARNs and rule patterns are exact.
  const parameterTemplate = z.string().check(
    z.maxLength(1011),
    z.regex(
      /^(\/[A-Za-z0-9_.\-{}]+)+$/,
      'must be a fully qualified name like /{env}/app/env.php (letters, digits, _ . - and /)',
    ),
    ...withEnvPlaceholder,
    z.refine(
      (name) => !reservedByAws(name),
      'names beginning with /aws or /ssm are reserved by AWS',
    ),
  );

  const pathTemplate = z.string().check(
    z.maxLength(4096),
    z.regex(/^(\/[A-Za-z0-9_.\-{}]+)+$/, 'must be an absolute path of letters, digits and _ . -'),
    z.refine(
      (path) => !path.split('/').some((segment) => segment === '.' || segment === '..'),
      'must not contain . or .. segments',
    ),
    z.refine(onlyEnvPlaceholder, ONLY_ENV_PLACEHOLDER),
  );

  const posixName = z
    .string()
    .check(
      z.regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a POSIX user or group name (lowercase, max 32)'),
    );

  // Secrets Manager names: 1-512 of letters, digits and /_+=.@-
  // (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html, Name).
  // Ours may not begin with "/", so a secret's name can never be mistaken for a parameter's (the
  // two share the `parameter` field of rollouts and targets), and may not end with a hyphen and
  // six characters, which Secrets Manager's own ARN suffix would make ambiguous in IAM patterns.
  const secretTemplate = z.string().check(
    z.maxLength(512),
    z.regex(
      /^[A-Za-z0-9_+=.@{}-][A-Za-z0-9_+=.@{}/-]*$/,
      'must be a secret name like {env}/db (letters, digits, /_+=.@-, not beginning with /)',
    ),
    ...withEnvPlaceholder,
    z.refine(
      (name) => !name.includes('//') && !name.endsWith('/'),
      'must not hold an empty segment',
    ),
    z.refine(
      (name) => !/-[A-Za-z0-9]{6}$/.test(name),
      'must not end with a hyphen and six characters (Secrets Manager ARN suffixes look like that)',
    ),
  );

  // A Parameter Store path: like a parameter name, ending in "/" (which no parameter name can).
  const parameterPathTemplate = z.string().check(
    z.maxLength(1011),
    z.regex(
      /^(\/[A-Za-z0-9_.\-{}]+)+\/$/,
      'must be a fully qualified path ending in / like /{env}/app/ (letters, digits, _ . - and /)',
    ),
    ...withEnvPlaceholder,
    z.refine(
      (name) => !reservedByAws(name),
      'paths beginning with /aws or /ssm are reserved by AWS',
    ),
  );

  /** A whole number from `min` to `max`, both included. */
  const int = (min: number, max: number) =>
    z.number().check(z.int(), z.minimum(min), z.maximum(max));

  const FileMappingSchema = z
    .strictObject({
      // Exactly one of these three (checked below).
      parameter: z.optional(parameterTemplate),
      secret: z.optional(secretTemplate),
      parametersByPath: z.optional(parameterPathTemplate),
      path: pathTemplate,
      owner: z._default(posixName, 'root'),
      group: z._default(posixName, 'root'),
      mode: z._default(
        z
          .string({
            error: "must be a quoted octal string like '0400' (unquoted, YAML reads a number)",
          })
          .check(z.regex(/^0?[0-7]{3}$/, "must be an octal mode like '0400' (quote it in YAML)")),
        '0400',
      ),
      // For parameter and secret: the check the value must pass. For parametersByPath: the format
      // the file is composed in (dotenv or json; there is no raw way to join many values).
      format: z._default(z.enum(['raw', 'dotenv', 'json']), 'raw'),
      reloadService: z.optional(
        z
          .string()
          .check(
            z.regex(
              /^[A-Za-z0-9][A-Za-z0-9@_.:-]{0,254}$/,
              'must be a systemd unit name like php-fpm',
            ),
          ),
      ),
      backups: z._default(int(0, 10), 3),
    })
    .check(
      z.superRefine((file, ctx) => {
        const named = SOURCE_KINDS.filter((kind) => file[kind] !== undefined);
        if (named.length !== 1) {
          ctx.addIssue({
            code: 'custom',
            path: [],
            message: `must name exactly one source: parameter, secret or parametersByPath (${named.length === 0 ? 'none' : named.join(' and ')} given)`,
          });
        }
        if (file.parametersByPath !== undefined && file.format === 'raw') {
          ctx.addIssue({
            code: 'custom',
            path: ['format'],
            message: 'a file composed from parametersByPath must have format dotenv or json',
          });
        }
      }),
    );

  // Parameter changes under a mapped path are coalesced: a rollout starts once no change has come
  // for settleSeconds, and at the latest maxWaitSeconds after the first (a steady trickle of puts
  // must not postpone it for ever). SQS DelaySeconds caps one wait at 900 s.
  const CoalesceSchema = z
    .strictObject({
      settleSeconds: z._default(int(1, 900), 5),
      maxWaitSeconds: z._default(int(1, 3600), 60),
    })
    .check(
      z.refine((c) => c.maxWaitSeconds >= c.settleSeconds, {
        message: 'maxWaitSeconds must be at least settleSeconds',
        path: ['maxWaitSeconds'],
      }),
    );

  // A stage's size: how many instances have the change once the stage is done, counted from the
  // start of the rollout (so stages only grow): a count (1 for a single canary) or a share of the
  // environment's reachable instances ('10%'). The last stage always takes the rest.
  const stageSize = z.union([
    int(1, 100_000),
    z
      .string()
      .check(z.regex(/^([1-9][0-9]?|100)%$/, "must be a count like 1 or a percentage like '10%'")),
  ]);

  // CloudWatch alarm names: 1-255 characters
  // (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
  const alarmName = z.string().check(z.minLength(1), z.maxLength(255));

  // Staged rollouts of one environment: a parameter change reaches a canary first, then waves,
  // each stage baking before the next; a stage with a failed instance, or an alarm in ALARM
  // during a stage or its bake, halts the rollout and rolls the stage's instances back.
  const StagesSchema = z
    .strictObject({
      canary: z._default(stageSize, 1),
      // Cumulative sizes after the canary; the rollout ends with every instance whatever they say.
      waves: z._default(z.array(stageSize).check(z.maxLength(8)), []),
      // How long a finished stage must stay healthy before the next one starts.
      bakeSeconds: z._default(int(0, 86_400), 300),
      // DescribeAlarms takes at most 100 names (API_DescribeAlarms.html, AlarmNames).
      alarms: z._default(z.array(alarmName).check(z.maxLength(100)), []),
    })
    .check(
      z.refine((s) => new Set(s.alarms).size === s.alarms.length, {
        message: 'an alarm is listed twice',
        path: ['alarms'],
      }),
    );

  // SendCommand MaxConcurrency / MaxErrors patterns, exactly as the API model declares them
  // (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html).
  const RolloutSchema = z.strictObject({
    maxConcurrency: z._default(
      z
        .string()
        .check(
          z.regex(
            /^([1-9][0-9]{0,6}|[1-9]%|[1-9][0-9]%|100%)$/,
            "must be a count like '10' or a percentage like '25%'",
          ),
        ),
      '25%',
    ),
    // Every failure leaves the instance's working file untouched, so stopping a command early
    // protects nothing; it only cancels the other instances' invocations, which then use up
    // retry attempts (and at 10% of a fleet under 10, the first error stops everything).
    maxErrors: z._default(
      z
        .string()
        .check(
          z.regex(
            /^(0|[1-9][0-9]{0,6}|[0-9]%|[1-9][0-9]%|100%)$/,
            "must be a count like '0' or a percentage like '10%'",
          ),
        ),
      '100%',
    ),
    // SendCommand TimeoutSeconds: how long a command may wait to be delivered (30 s - 30 days).
    timeoutSeconds: z._default(int(30, 2_592_000), 600),
    // Chunks of ≤50 instances sent at once; a few, so 1,000 instances go out fast but
    // SendCommand's per-account rate stays comfortable.
    chunksInFlight: z._default(int(1, 10), 4),
    // How many instances may fetch a value per second, across every command of every rollout in
    // flight: each instance calls GetParameter once per file when its command lands. Parameter
    // Store's default throughput is 40 transactions per second per account and Region, shared by
    // GetParameter, GetParameters and GetParametersByPath; with higher throughput enabled, up to
    // 3,000 (https://docs.aws.amazon.com/general/latest/gr/ssm.html, "Parameter Store: max
    // throughput"). Set it to what your account has, less what your applications use themselves.
    fetchesPerSecond: z._default(int(1, 10_000), 40),
    // SendCommand calls per second across all rollouts. AWS publishes no figure for SendCommand's
    // rate (the quotas page above lists none), so a conservative default; the SDK's adaptive
    // retry mode absorbs an occasional ThrottlingException beyond it.
    commandsPerSecond: z._default(int(1, 100), 10),
    // Targets (instances × files) one invocation records. A larger rollout is planned in parts of
    // about this many: the planner records the first and the send workers the others, so no
    // invocation's work grows with the fleet and the first commands go out while later parts are
    // still being written. A part is whole chunks (never more than this many targets, but for
    // one chunk larger than it) and one DynamoDB item under 400 KB.
    planPartTargets: z._default(int(50, 5000), 1000),
    // Per environment, off by default: which environments stage their parameter changes.
    stages: z._default(z.record(environmentName, StagesSchema), {}),
  });

  const RetrySchema = z.strictObject({
    maxAttempts: z._default(int(1, 10), 3),
    // SQS DelaySeconds caps at 900, so every backoff must fit in it.
    baseDelaySeconds: z._default(int(1, 900), 30),
  });

  // New instances: how long the service may take to deliver every file before it gives up on a
  // launch lifecycle action, and what it then tells Auto Scaling. Keep timeoutSeconds below the
  // hook's HeartbeatTimeout, or Auto Scaling applies the hook's DefaultResult first.
  const BootstrapSchema = z.strictObject({
    timeoutSeconds: z._default(int(60, 7000), 540),
    onTimeout: z._default(z.enum(['abandon', 'continue']), 'abandon'),
    // Only launch hooks of this name are ours to complete; a group may have others
    // (CodeDeploy, another team's warm-up) that must not be completed for them.
    lifecycleHookName: z._default(
      z.string().check(z.regex(/^[A-Za-z0-9_./-]{1,255}$/, 'must be a lifecycle hook name')),
      'secrets-fanout',
    ),
  });

  // Scheduled drift repair: how often every mapped file is pushed again to every instance of each
  // environment (one rule per environment). EventBridge rate expressions: a positive whole number
  // and minute(s) | hour(s) | day(s), singular exactly when the value is 1
  // (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rate-expressions.html).
  // Cron expressions are not accepted here (yet): a rate is what a periodic re-apply needs.
  const DriftSchema = z.strictObject({
    schedule: z.string().check(
      z.regex(RATE, "must be an EventBridge rate expression like 'rate(6 hours)'"),
      z.refine((expression) => {
        const [, value, unit] = RATE.exec(expression) ?? [];
        return (value === '1') === (unit !== undefined && !unit.endsWith('s'));
      }, 'rate(1 hour), rate(6 hours): the unit is singular exactly when the value is 1'),
      z.refine(
        (expression) => driftIntervalSeconds(expression) >= MIN_DRIFT_INTERVAL_SECONDS,
        'must be at least rate(15 minutes): each run fetches every file on every instance',
      ),
    ),
  });

  const FanoutConfigSchema = z
    .strictObject({
      tagKey: z._default(tagKey, 'Environment'),
      environments: z.array(environmentName).check(z.minLength(1), z.maxLength(50)),
      files: z.array(FileMappingSchema).check(z.minLength(1), z.maxLength(20)),
      rollout: z.prefault(RolloutSchema, {}),
      retry: z.prefault(RetrySchema, {}),
      bootstrap: z.prefault(BootstrapSchema, {}),
      /** Absent: no scheduled drift repair (a run can still be invoked by hand). */
      drift: z.optional(DriftSchema),
      coalesce: z.prefault(CoalesceSchema, {}),
    })
    .check(
      z.superRefine((config, ctx) => {
        const seenEnvironments = new Set<string>();
        config.environments.forEach((environment, index) => {
          if (seenEnvironments.has(environment)) {
            ctx.addIssue({
              code: 'custom',
              path: ['environments', index],
              message: `${environment} is listed twice`,
            });
          }
          seenEnvironments.add(environment);
        });
        for (const environment of Object.keys(config.rollout.stages)) {
          if (!seenEnvironments.has(environment)) {
            ctx.addIssue({
              code: 'custom',
              path: ['rollout', 'stages', environment],
              message: `${environment} is not one of the environments (${config.environments.join(', ')})`,
            });
          }
        }
        // Two mappings writing one file on one instance would fight over it; one parameter
        // written to two paths is fine (e.g. a file read by two apps).
        const writers = new Map<string, string>();
        for (const target of expandFiles(config)) {
          const key = `${target.environment}\0${target.path}`;
          const previous = writers.get(key);
          if (previous !== undefined) {
            ctx.addIssue({
              code: 'custom',
              path: ['files'],
              message: `${target.path} in ${target.environment} is written by both ${previous} and ${target.parameter}`,
            });
          }
          writers.set(key, target.parameter);
        }
      }),
    );

  return { FanoutConfigSchema, FileMappingSchema, StagesSchema };
}

type Schemas = ReturnType<typeof buildSchemas>;
let schemas: Schemas | undefined;
const configSchemas = (): Schemas => {
  schemas ??= buildSchemas();
  return schemas;
};

export type FanoutConfig = z.infer<Schemas['FanoutConfigSchema']>;
export type FanoutConfigInput = z.input<Schemas['FanoutConfigSchema']>;
export type FileMapping = z.infer<Schemas['FileMappingSchema']>;
export type StageConfig = z.infer<Schemas['StagesSchema']>;

/** One mapped file of one environment, placeholders expanded: what one SendCommand writes. */
export interface FileTarget {
  environment: string;
  /** Where the content comes from; absent means `parameter`. */
  source?: SourceKind;
  /**
   * The source's expanded name, which names it in rollouts, targets and resync requests: a
   * parameter name (/prod/env.php), a secret name (prod/db, never beginning with /), or a path
   * ending in / (/prod/app/). The three cannot collide.
   */
  parameter: string;
  path: string;
  owner: string;
  group: string;
  mode: string;
  format: FileMapping['format'];
  reloadService?: string;
  backups: number;
  /**
   * The parameter version to write (a staged rollout's stage, a rollback, a halted parameter's
   * last complete version); absent: the latest. Parameters only.
   */
  version?: number;
  /**
   * Never write `version` over a later one the instance already has (a staged rollout's commands:
   * an older stage's command may run after a newer change's). Not for a rollback.
   */
  neverOlder?: boolean;
}

type ExpandableConfig = Pick<FanoutConfig, 'environments' | 'files'>;

/** Every (environment, file) pair of the config, with `{env}` expanded. Never throws. */
export function expandFiles(config: ExpandableConfig): FileTarget[] {
  return config.environments.flatMap((environment) =>
    config.files.map(({ parameter, secret, parametersByPath, path, reloadService, ...rest }) => {
      const source: SourceKind =
        secret !== undefined
          ? 'secret'
          : parametersByPath !== undefined
            ? 'parametersByPath'
            : 'parameter';
      const name = parameter ?? secret ?? parametersByPath ?? '';
      return {
        environment,
        ...(source === 'parameter' ? {} : { source }),
        parameter: name.replaceAll(ENV_PLACEHOLDER, environment),
        path: path.replaceAll(ENV_PLACEHOLDER, environment),
        ...(reloadService === undefined ? {} : { reloadService }),
        ...rest,
      };
    }),
  );
}

/** The files a parameter change must rewrite, all in one environment; [] if it is not mapped. */
export function filesForParameter(config: FanoutConfig, parameter: string): FileTarget[] {
  return expandFiles(config).filter((target) => target.parameter === parameter);
}

/** Every file mapped for one environment; [] for an environment that is not configured. */
export function filesForEnvironment(config: FanoutConfig, environment: string): FileTarget[] {
  return expandFiles(config).filter((target) => target.environment === environment);
}

/**
 * Every distinct expanded source name (parameters, secrets, paths): what a resync or a status
 * query may name.
 */
export function mappedParameterNames(config: FanoutConfig): string[] {
  return [...new Set(expandFiles(config).map((target) => target.parameter))].sort();
}

/** The kind of a file's source (`parameter` when the target does not say). */
export function sourceOf(target: Pick<FileTarget, 'source'>): SourceKind {
  return target.source ?? 'parameter';
}

/** Every distinct expanded name of one kind of source: what that kind's EventBridge rule matches. */
export function mappedSourceNames(config: FanoutConfig, kind: SourceKind): string[] {
  const names = expandFiles(config)
    .filter((target) => sourceOf(target) === kind)
    .map((target) => target.parameter);
  return [...new Set(names)].sort();
}

/**
 * The path files a parameter change rewrites: files composed from the path that directly holds
 * `name` (one level: /prod/app/db/PASSWORD is not under /prod/app/ for this purpose). [] if none.
 */
export function filesForPathOf(config: FanoutConfig, name: string): FileTarget[] {
  const parent = name.slice(0, name.lastIndexOf('/') + 1);
  return expandFiles(config).filter(
    (target) => sourceOf(target) === 'parametersByPath' && target.parameter === parent,
  );
}

/** Validates raw config; throws ConfigError naming every bad field (`custom.fanout.files[0].mode: ...`). */
export function parseConfig(raw: unknown, origin = 'custom.fanout'): FanoutConfig {
  const result = configSchemas().FanoutConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  const where = (path: readonly PropertyKey[]) =>
    path.reduce<string>(
      (acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : `${acc}.${String(key)}`),
      origin,
    );
  const problems = result.error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => `${where([...issue.path, key])}: unknown field (typo?)`)
      : [`${where(issue.path)}: ${issue.message}`],
  );
  throw new ConfigError(`Invalid ${origin}:\n  ${problems.join('\n  ')}`);
}

/**
 * Which schema this code checks configs with: the SHA-256 of `buildSchemas`'s source text, kept
 * here by hand (test/unit/config.test.ts fails with the new value when the schema changes). It
 * is part of the digest, so code deployed without its environment (update-function-code) does
 * not take a text another schema checked for one this schema checked.
 */
export const CONFIG_SCHEMA_REVISION = 'JvwlaTGfys6tkfaRptr9ct4KhelqzHB4RXUYCQjQZeA';

/**
 * The digest the package records beside FANOUT_CONFIG (FANOUT_CONFIG_SHA256): SHA-256 of the
 * schema's revision and the exact text, base64url (43 characters of Lambda's 4 KB).
 */
export function configDigest(json: string): string {
  return createHash('sha256').update(`${CONFIG_SCHEMA_REVISION}\n${json}`).digest('base64url');
}

/**
 * Reads the config the deployment put in FANOUT_CONFIG; throws ConfigError if absent or invalid.
 * FANOUT_CONFIG is the schema's own output at package time, and FANOUT_CONFIG_SHA256 its digest:
 * while the text is still exactly that, it is the config the schema accepted and is read as is.
 * Any other text (edited in the console, or no digest) is checked by the schema here, so a
 * function never runs with a config the schema refuses.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): FanoutConfig {
  const json = env.FANOUT_CONFIG;
  if (json === undefined || json === '') {
    throw new ConfigError('FANOUT_CONFIG is not set: deploy with serverless.yml, which sets it');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (error) {
    throw new ConfigError(`FANOUT_CONFIG is not JSON: ${(error as Error).message}`);
  }
  const digest = env.FANOUT_CONFIG_SHA256;
  if (digest !== undefined && digest === configDigest(json)) return raw as FanoutConfig;
  return parseConfig(raw, 'FANOUT_CONFIG');
}

/** Reads a required environment variable; throws ConfigError naming it if it is missing. */
export function requireEnv(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[name];
  if (value === undefined || value === '') {
    throw new ConfigError(`${name} is not set: deploy with serverless.yml, which sets it`);
  }
  return value;
}
