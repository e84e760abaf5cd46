// IAM for serverless.yml, from the validated custom.fanout: each environment's instance
// policy, each function's own role, and the tag-scoped statements the roles share.
const { mappedSourceNames, expandFiles, sourceOf } = require('../config.ts');
const { validated, sub, logicalIdFor } = require('./fanout-config.cjs');

const parameterArn = (name) =>
  sub(`arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter${name}`);
// A secret's ARN ends in its name, a hyphen and six random characters: "-??????" matches exactly
// those (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html).
const secretArn = (name) =>
  sub(
    `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${name}-??????`,
  );

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

module.exports = {
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

/** `propagate` → `PropagateRole`. */
function roleLogicalId(functionName) {
  return `${functionName[0].toUpperCase()}${functionName.slice(1).replace(/[^A-Za-z0-9]/g, '')}Role`;
}
