import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

// The package-time generator (shared/build/serverless-config.cjs), called as the framework
// calls it, with a config mapping every kind of source.
const require = createRequire(import.meta.url);
const build = require('../../shared/build/serverless-config.cjs');

const fanout = {
  environments: ['dev', 'prod'],
  files: [
    { parameter: '/{env}/env.php', path: '/var/www/html/env.php' },
    { secret: '{env}/db', path: '/etc/app/db.json', format: 'json' },
    { parametersByPath: '/{env}/app/', path: '/etc/app/app.env', format: 'dotenv' },
  ],
};
const resolveVariable = async (name: string) => {
  if (name === 'self:custom.fanout') return structuredClone(fanout);
  throw new Error(`unexpected variable ${name}`);
};
const sub = (text: string) => ({ 'Fn::Sub': text });
const arn = (service: string, resource: string) =>
  sub(`arn:\${AWS::Partition}:${service}:\${AWS::Region}:\${AWS::AccountId}:${resource}`);

describe('package-time output for secrets and paths', () => {
  it('lets prod instances read exactly their own parameter, secret and path, and nothing of dev', async () => {
    // Act
    const { Resources } = await build.instanceAccess({ resolveVariable });
    const statements = Resources.InstancePolicyProd1.Properties.PolicyDocument.Statement;
    const bySid = Object.fromEntries(statements.map((s: any) => [s.Sid, s]));
    // Assert
    expect(bySid.ReadOwnEnvironmentParameters.Resource).toEqual([
      arn('ssm', 'parameter/prod/env.php'),
    ]);
    expect(bySid.ReadOwnEnvironmentSecrets).toEqual({
      Sid: 'ReadOwnEnvironmentSecrets',
      Effect: 'Allow',
      Action: 'secretsmanager:GetSecretValue',
      Resource: [arn('secretsmanager', 'secret:prod/db-??????')],
    });
    expect(bySid.DecryptOwnEnvironmentSecretsThroughSecretsManager.Condition).toEqual({
      StringEquals: { 'kms:ViaService': sub('secretsmanager.${AWS::Region}.amazonaws.com') },
      StringLike: {
        'kms:EncryptionContext:SecretARN': [arn('secretsmanager', 'secret:prod/db-??????')],
      },
    });
    expect(bySid.ReadOwnEnvironmentPaths).toEqual({
      Sid: 'ReadOwnEnvironmentPaths',
      Effect: 'Allow',
      Action: 'ssm:GetParametersByPath',
      Resource: [arn('ssm', 'parameter/prod/app')],
    });
    expect(JSON.stringify(statements)).not.toContain('dev');
  });

  it('routes changes under each mapped path, and parameters by exact name', async () => {
    expect(await build.pathPrefixes({ resolveVariable })).toEqual([
      { prefix: '/dev/app/' },
      { prefix: '/prod/app/' },
    ]);
    expect(await build.parameterNames({ resolveVariable })).toEqual([
      '/dev/env.php',
      '/prod/env.php',
    ]);
  });

  it('lets the secret function describe the mapped secrets only', async () => {
    expect(await build.describeMappedSecrets({ resolveVariable })).toEqual({
      Sid: 'DescribeMappedSecretsOnly',
      Effect: 'Allow',
      Action: 'secretsmanager:DescribeSecret',
      Resource: [
        arn('secretsmanager', 'secret:dev/db-??????'),
        arn('secretsmanager', 'secret:prod/db-??????'),
      ],
    });
  });
});
