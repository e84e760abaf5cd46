// Build-time bridge between serverless.yml and shared/config.ts: serverless.yml reads
// `${file(./shared/build/serverless-config.cjs):<name>}`, and every value here comes from custom.fanout
// validated by the same zod schema the functions use at cold start. A bad config therefore
// fails `serverless package` with the field named, before anything is deployed.
// CommonJS because the Serverless Framework `require`s variable files; Node 24 loads the
// TypeScript module directly (type stripping + require(esm)).
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const yaml = require('js-yaml');
const { parseConfig, mappedSourceNames, expandFiles, sourceOf } = require('../config.ts');
const { documentParameters } = require('../send/commands.ts');

// Lambda caps all environment variables of a function at 4 KB together
// (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
const MAX_CONFIG_BYTES = 3072;
const MAX_EVENT_PATTERN = 2048;
const DOCUMENT_PATH = join(__dirname, '..', '..', 'documents', 'replace-secrets-file.yml');

async function validated(resolveVariable) {
  const raw = await resolveVariable('self:custom.fanout');
  let config;
  try {
    config = parseConfig(raw, 'custom.fanout');
  } catch (error) {
    // Serverless prints the message of a plain Error after its own prefix; keep ours first.
    throw new Error(error.message);
  }
  checkAgainstDocument(config);
  return config;
}

/**
 * Every SendCommand the config can produce must pass the document's own allowedPattern and
 * allowedValues, or SSM would refuse it at run time (InvalidParameters). Checked here, with the
 * document's real patterns, so the two can never drift apart.
 */
function checkAgainstDocument(config) {
  const declared = loadDocument().parameters;
  const problems = [];
  expandFiles(config).forEach((target) => {
    const index = config.files.findIndex(
      (file) =>
        (file.parameter ?? file.secret ?? file.parametersByPath).replaceAll(
          '{env}',
          target.environment,
        ) === target.parameter,
    );
    for (const [name, [value]] of Object.entries(documentParameters(target))) {
      const spec = declared[name];
      const ok =
        spec !== undefined &&
        (spec.allowedPattern === undefined || new RegExp(spec.allowedPattern).test(value)) &&
        (spec.allowedValues === undefined || spec.allowedValues.includes(value));
      if (!ok) {
        problems.push(
          `custom.fanout.files[${index}] (${target.environment}): ${name} "${value}" is refused by documents/replace-secrets-file.yml (${spec?.allowedPattern ?? 'no such parameter'})`,
        );
      }
    }
  });
  if (problems.length > 0) throw new Error(`Invalid custom.fanout:\n  ${problems.join('\n  ')}`);
}

function escapeVariables(value) {
  if (typeof value === 'string') return value.replaceAll('${', '\\${');
  if (Array.isArray(value)) return value.map(escapeVariables);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, escapeVariables(v)]));
  }
  return value;
}

function loadDocument() {
  return yaml.load(readFileSync(DOCUMENT_PATH, 'utf8'));
}

const sub = (template) => ({ 'Fn::Sub': template });
const parameterArn = (name) =>
  sub(`arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter${name}`);
// A secret's ARN ends in its name, a hyphen and six random characters: "-??????" matches exactly
// those (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html).
const secretArn = (name) =>
  sub(
    `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${name}-??????`,
  );
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
 * What an environment's instances need to read their own sources, and nothing else. A
 * statement is left out when nothing of its kind is mapped (IAM refuses an empty resource list).
 */
function sourceStatements(names, secrets, paths) {
  const statements = [];
  if (names.length > 0) {
    statements.push(
      {
        Sid: 'ReadOwnEnvironmentParameters',
        Effect: 'Allow',
        Action: 'ssm:GetParameter',
        Resource: names.map(parameterArn),
      },
      {
        // SecureString values are encrypted with the parameter ARN as encryption context
        // (https://docs.aws.amazon.com/systems-manager/latest/userguide/secure-string-parameter-kms-encryption.html).
        Sid: 'DecryptOwnEnvironmentParametersThroughSsm',
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: '*',
        // With the AWS managed aws/ssm key, ssm:GetParameter alone already decrypts;
        // this statement is what a customer managed key needs.
        Condition: {
          StringEquals: {
            'kms:ViaService': sub('ssm.${AWS::Region}.amazonaws.com'),
            'kms:EncryptionContext:PARAMETER_ARN': names.map(parameterArn),
          },
        },
      },
    );
  }
  if (paths.length > 0) {
    // GetParametersByPath is authorized against the requested path, not the parameters it
    // returns (https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-retrieval-authorization.html);
    // the document asks for the path without its final "/".
    const pathArns = paths.map((path) => parameterArn(path.replace(/\/$/, '')));
    statements.push(
      {
        Sid: 'ReadOwnEnvironmentPaths',
        Effect: 'Allow',
        Action: 'ssm:GetParametersByPath',
        Resource: pathArns,
      },
      {
        Sid: 'DecryptOwnEnvironmentPathsThroughSsm',
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: '*',
        Condition: {
          StringEquals: { 'kms:ViaService': sub('ssm.${AWS::Region}.amazonaws.com') },
          StringLike: {
            'kms:EncryptionContext:PARAMETER_ARN': paths.map((path) => parameterArn(`${path}*`)),
          },
        },
      },
    );
  }
  if (secrets.length > 0) {
    statements.push(
      {
        Sid: 'ReadOwnEnvironmentSecrets',
        Effect: 'Allow',
        Action: 'secretsmanager:GetSecretValue',
        Resource: secrets.map(secretArn),
      },
      {
        // A secret under a customer managed key is decrypted by Secrets Manager on the caller's
        // behalf, with the secret's ARN as encryption context
        // (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
        Sid: 'DecryptOwnEnvironmentSecretsThroughSecretsManager',
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: '*',
        Condition: {
          StringEquals: { 'kms:ViaService': sub('secretsmanager.${AWS::Region}.amazonaws.com') },
          StringLike: { 'kms:EncryptionContext:SecretARN': secrets.map(secretArn) },
        },
      },
    );
  }
  return statements;
}

/** A CloudFormation logical id for an environment name (letters and digits only, unique). */
function logicalIdFor(environment, index) {
  const words = environment.split(/[^A-Za-z0-9]+/).filter(Boolean);
  const id = words.map((word) => word[0].toUpperCase() + word.slice(1)).join('');
  return `${id}${index}`;
}

module.exports = {
  /** The validated config, compact JSON, for the FANOUT_CONFIG environment variable. */
  async json({ resolveVariable }) {
    const json = JSON.stringify(await validated(resolveVariable));
    if (Buffer.byteLength(json) > MAX_CONFIG_BYTES) {
      throw new Error(
        `custom.fanout is ${Buffer.byteLength(json)} bytes as JSON; Lambda allows 4 KB of environment in all, so keep it under ${MAX_CONFIG_BYTES}`,
      );
    }
    return json;
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

  /**
   * secretsmanager:DescribeSecret (metadata, never the value) on exactly the mapped secrets; with
   * none mapped, an explicit Deny (a statement may not name an empty resource list).
   */
  async describeMappedSecrets({ resolveVariable }) {
    const names = mappedSourceNames(await validated(resolveVariable), 'secret');
    return names.length > 0
      ? {
          Sid: 'DescribeMappedSecretsOnly',
          Effect: 'Allow',
          Action: 'secretsmanager:DescribeSecret',
          Resource: names.map(secretArn),
        }
      : {
          Sid: 'NoSecretsMapped',
          Effect: 'Deny',
          Action: 'secretsmanager:DescribeSecret',
          Resource: '*',
        };
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
   * ssm:SendCommand on EC2 instances whose environment tag is one of ours. SSM evaluates the
   * instance's tags with ssm:resourceTag/<key>
   * (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-rc-setting-up-cmdsec.html).
   */
  async sendCommandOnTaggedInstances({ resolveVariable }) {
    const config = await validated(resolveVariable);
    return {
      Sid: 'OnInstancesOfOurEnvironmentsOnly',
      Effect: 'Allow',
      Action: 'ssm:SendCommand',
      Resource: sub('arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*'),
      Condition: {
        StringEquals: { [`ssm:resourceTag/${config.tagKey}`]: config.environments },
      },
    };
  },

  /**
   * autoscaling:CompleteLifecycleAction only on groups carrying our tag key with one of our
   * environments (a group's tags, with PropagateAtLaunch, are also its instances' tags).
   * https://docs.aws.amazon.com/autoscaling/ec2/userguide/control-access-using-iam.html
   */
  async completeLifecycleOnTaggedGroups({ resolveVariable }) {
    const config = await validated(resolveVariable);
    return {
      Sid: 'CompleteLifecycleOnOurGroupsOnly',
      Effect: 'Allow',
      Action: 'autoscaling:CompleteLifecycleAction',
      Resource: sub(
        'arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/*',
      ),
      Condition: {
        StringEquals: { [`aws:ResourceTag/${config.tagKey}`]: config.environments },
      },
    };
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

  /**
   * One IAM managed policy per environment for that environment's instance role: read (and
   * decrypt, through SSM only) its own mapped parameters, and write command output.
   */
  async instanceAccess({ resolveVariable }) {
    const config = await validated(resolveVariable);
    const targets = expandFiles(config);
    const Resources = {};
    const Outputs = {};
    config.environments.forEach((environment, index) => {
      const own = (kind) => [
        ...new Set(
          targets
            .filter((t) => t.environment === environment && sourceOf(t) === kind)
            .map((t) => t.parameter),
        ),
      ];
      const names = own('parameter');
      const secrets = own('secret');
      const paths = own('parametersByPath');
      const id = `InstancePolicy${logicalIdFor(environment, index)}`;
      Resources[id] = {
        Type: 'AWS::IAM::ManagedPolicy',
        Properties: {
          Description: `secrets-fanout: what ${environment} instances need to receive their files`,
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              ...sourceStatements(names, secrets, paths),
              {
                Sid: 'WriteCommandOutput',
                Effect: 'Allow',
                Action: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
                Resource: { 'Fn::GetAtt': ['CommandOutputLogGroup', 'Arn'] },
              },
              {
                Sid: 'FindCommandOutputGroup',
                Effect: 'Allow',
                Action: 'logs:DescribeLogGroups',
                Resource: '*',
              },
            ],
          },
        },
      };
      Outputs[`${id}Arn`] = {
        Description: `Attach to the instance role of ${environment} instances`,
        Value: { Ref: id },
      };
    });
    return { Resources, Outputs };
  },

  /**
   * One IAM role per function: the statements listed under custom.functionRoles.<function>,
   * plus writing its own log group and X-Ray traces, nothing shared. Every function must name
   * its role (`role: <Function>Role`), so the framework creates no catch-all default role.
   * And one alarm per function on its errors, paging through the alerts topic.
   */
  async functionRoles({ resolveVariable }) {
    const service = await resolveVariable('self:service');
    const stage = await resolveVariable('sls:stage');
    const roles = await resolveVariable('self:custom.functionRoles');
    const functions = await resolveVariable('self:functions');
    const Resources = {};
    for (const [name, statements] of Object.entries(roles)) {
      const id = roleLogicalId(name);
      if (functions[name]?.role !== id) {
        throw new Error(
          `functions.${name}.role must be ${id} (custom.functionRoles.${name} defines it)`,
        );
      }
      Resources[id] = {
        Type: 'AWS::IAM::Role',
        Properties: {
          Description: `secrets-fanout ${stage} ${name} function`,
          AssumeRolePolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Effect: 'Allow',
                Principal: { Service: 'lambda.amazonaws.com' },
                Action: 'sts:AssumeRole',
              },
            ],
          },
          Policies: [
            {
              PolicyName: name,
              PolicyDocument: {
                Version: '2012-10-17',
                Statement: [
                  {
                    Sid: 'OwnLogGroup',
                    Effect: 'Allow',
                    Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
                    Resource: sub(
                      `arn:\${AWS::Partition}:logs:\${AWS::Region}:\${AWS::AccountId}:log-group:/aws/lambda/${service}-${stage}-${name}:*`,
                    ),
                  },
                  {
                    Sid: 'Traces', // X-Ray actions support no resource-level scoping
                    Effect: 'Allow',
                    Action: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'],
                    Resource: '*',
                  },
                  ...statements,
                ],
              },
            },
          ],
        },
      };
    }
    for (const name of Object.keys(roles)) {
      Resources[`${roleLogicalId(name).replace(/Role$/, '')}ErrorsAlarm`] = {
        Type: 'AWS::CloudWatch::Alarm',
        Properties: {
          AlarmDescription: `secrets-fanout ${stage}: the ${name} function failed`,
          Namespace: 'AWS/Lambda',
          MetricName: 'Errors',
          Dimensions: [{ Name: 'FunctionName', Value: `${service}-${stage}-${name}` }],
          Statistic: 'Sum',
          Period: 300,
          EvaluationPeriods: 1,
          Threshold: 0,
          ComparisonOperator: 'GreaterThanThreshold',
          TreatMissingData: 'notBreaching',
          AlarmActions: [{ Ref: 'AlertsTopic' }],
        },
      };
    }
    for (const [name, definition] of Object.entries(functions)) {
      if (roles[name] === undefined) {
        throw new Error(
          `functions.${name} has no custom.functionRoles.${name}: every function gets its own role`,
        );
      }
      if (definition.role !== roleLogicalId(name)) {
        throw new Error(`functions.${name}.role must be ${roleLogicalId(name)}`);
      }
    }
    return { Resources };
  },
};

/**
 * Scheduled drift repair (custom.fanout.drift.schedule): one EventBridge scheduled rule per
 * environment invoking the `drift` function, and the permission for EventBridge to invoke it.
 * The rule's target turns the "Scheduled Event" into the function's request with an
 * InputTransformer, keeping the event's id (a redelivery maps to the same rollout) and time
 * (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_InputTransformer.html).
 * No schedule configured: no rule (the function can still be invoked by hand).
 */
module.exports.driftSchedules = async ({ resolveVariable }) => {
  const config = await validated(resolveVariable);
  const Resources = {};
  if (config.drift === undefined) return { Resources };
  const functionArn = { 'Fn::GetAtt': ['DriftLambdaFunction', 'Arn'] };
  config.environments.forEach((environment, index) => {
    const id = `DriftSchedule${logicalIdFor(environment, index)}`;
    Resources[id] = {
      Type: 'AWS::Events::Rule',
      Properties: {
        Description: `secrets-fanout - drift repair of ${environment}, ${config.drift.schedule}`,
        ScheduleExpression: config.drift.schedule,
        State: 'ENABLED',
        Targets: [
          {
            Id: 'drift',
            Arn: functionArn,
            InputTransformer: {
              InputPathsMap: { id: '$.id', time: '$.time' },
              InputTemplate: `{"environment":${JSON.stringify(environment)},"eventId":"<id>","time":"<time>"}`,
            },
            // A run missed entirely waits for the next one; an hour of retries is plenty.
            RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 10 },
            DeadLetterConfig: { Arn: { 'Fn::GetAtt': ['DeadLetterQueue', 'Arn'] } },
          },
        ],
      },
    };
    Resources[`${id}Permission`] = {
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunction',
        FunctionName: functionArn,
        Principal: 'events.amazonaws.com',
        SourceArn: { 'Fn::GetAtt': [id, 'Arn'] },
      },
    };
  });
  return { Resources };
};

/** The CloudWatch dashboard: rollout metrics, dead letters, function errors and durations. */
module.exports.dashboardBody = async ({ resolveVariable }) => {
  const service = await resolveVariable('self:service');
  const stage = await resolveVariable('sls:stage');
  const functions = Object.keys(await resolveVariable('self:functions'));
  const metric = (name, stat = 'Sum') => [
    'SecretsFanout',
    name,
    'service',
    'secrets-fanout',
    { stat },
  ];
  const widget = (title, metrics, x, y) => ({
    type: 'metric',
    x,
    y,
    width: 12,
    height: 6,
    properties: { title, metrics, region: '${AWS::Region}', view: 'timeSeries', period: 300 },
  });
  const body = {
    widgets: [
      widget(
        'Instances',
        [
          'InstancesTargeted',
          'InstancesSucceeded',
          'InstancesFailed',
          'InstancesUnreachable',
          'InstancesRetried',
        ].map((m) => metric(m)),
        0,
        0,
      ),
      widget(
        'Rollouts',
        [metric('RolloutsSettled'), metric('RolloutsFailed'), metric('RolloutDuration', 'Maximum')],
        12,
        0,
      ),
      widget(
        'Drift repair (files rewritten by scheduled runs; runs)',
        [metric('DriftRepaired'), metric('DriftRuns')],
        0,
        12,
      ),
      widget(
        'Dead-letter queue',
        [
          [
            'AWS/SQS',
            'ApproximateNumberOfMessagesVisible',
            'QueueName',
            '${DeadLetterQueue.QueueName}',
          ],
        ],
        0,
        6,
      ),
      widget(
        'Function errors',
        functions.map((f) => ['AWS/Lambda', 'Errors', 'FunctionName', `${service}-${stage}-${f}`]),
        12,
        6,
      ),
    ],
  };
  return { 'Fn::Sub': JSON.stringify(body) };
};

/** `propagate` → `PropagateRole`. */
function roleLogicalId(functionName) {
  return `${functionName[0].toUpperCase()}${functionName.slice(1).replace(/[^A-Za-z0-9]/g, '')}Role`;
}
