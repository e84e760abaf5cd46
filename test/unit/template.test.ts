import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { configDigest, loadConfig, parseConfig } from '../../shared/config.ts';
import { packageService, repoRoot, serviceCopy } from '../support/package.ts';

// Tests on the CloudFormation template `serverless package` builds (the global setup packages
// once, offline, exactly as `npm run package` does).

type Statement = {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: unknown;
};
type Resource = { Type: string; Properties: any };
let resources: Record<string, Resource>;

beforeAll(() => {
  const template = JSON.parse(
    readFileSync(join(inject('packagedDir'), 'cloudformation-template-update-stack.json'), 'utf8'),
  );
  resources = template.Resources;
});

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const statementsOf = (role: Resource): Statement[] =>
  role.Properties.Policies.flatMap((p: any) => p.PolicyDocument.Statement);
const functionRoles = () =>
  ofType('AWS::Lambda::Function').map(([id, fn]) => {
    const roleId = fn.Properties.Role['Fn::GetAtt'][0];
    return { id, roleId, role: resources[roleId]! };
  });

describe('event rules', () => {
  it('matches Parameter Store changes of exactly the mapped parameter names', () => {
    const [, rule] = ofType('AWS::Events::Rule').find(([id]) => id.includes('propagate'))!;
    expect(rule.Properties.EventPattern).toEqual({
      source: ['aws.ssm'],
      'detail-type': ['Parameter Store Change'],
      detail: { name: ['/dev/env.php', '/prod/env.php', '/staging/env.php'] },
    });
    expect(rule.Properties.Targets[0].Arn['Fn::GetAtt'][0]).toBe('PropagateLambdaFunction');
    expect(rule.Properties.Targets[0].DeadLetterConfig.Arn['Fn::GetAtt'][0]).toBe(
      'DeadLetterQueue',
    );
  });
});

describe('event rules of the other sources', () => {
  it('routes the Secrets Manager calls that can stage AWSCURRENT, and rotations, to secretChange', () => {
    const [, rule] = ofType('AWS::Events::Rule').find(([id]) => id.includes('secretChange'))!;
    expect(rule.Properties.EventPattern).toEqual({
      source: ['aws.secretsmanager'],
      'detail-type': ['AWS API Call via CloudTrail', 'AWS Service Event via CloudTrail'],
      detail: {
        eventSource: ['secretsmanager.amazonaws.com'],
        eventName: [
          'CreateSecret',
          'PutSecretValue',
          'UpdateSecret',
          'UpdateSecretVersionStage',
          'RotationSucceeded',
          'DeleteSecret',
        ],
      },
    });
  });

  it('gives pathChange a rule that matches nothing when no path is mapped', () => {
    const [, rule] = ofType('AWS::Events::Rule').find(([id]) => id.includes('pathChange'))!;
    expect(rule.Properties.EventPattern.detail).toEqual({ name: ['{nothing-mapped}'] });
  });

  it('denies DescribeSecret outright when no secret is mapped', () => {
    const statement = statementsOf(resources.SecretChangeRole!).find(
      (s) => s.Sid === 'NoSecretsMapped',
    );
    expect(statement).toMatchObject({ Effect: 'Deny', Action: 'secretsmanager:DescribeSecret' });
  });
});

describe('IAM', () => {
  it('gives every function a role of its own and creates no shared default role', () => {
    const roles = functionRoles();
    expect(roles.length).toBeGreaterThan(0);
    expect(new Set(roles.map((r) => r.roleId)).size).toBe(roles.length);
    for (const { role } of roles) expect(role.Type).toBe('AWS::IAM::Role');
    expect(resources.IamRoleLambdaExecution).toBeUndefined();
  });

  it('lets no function read a parameter, a path, a secret, or decrypt anything', () => {
    const roles = functionRoles();
    // The functions of the other sources are there, so their roles are checked too.
    expect(roles.map((r) => r.roleId)).toEqual(
      expect.arrayContaining(['SecretChangeRole', 'PathChangeRole', 'PathSettleRole']),
    );
    for (const { roleId, role } of roles) {
      for (const statement of statementsOf(role).filter((s) => s.Effect === 'Allow')) {
        for (const action of actionsOf(statement)) {
          // GetParameter, GetParameters, GetParametersByPath, GetParameterHistory all return values.
          expect(action, `${roleId} ${statement.Sid}`).not.toMatch(
            /^ssm:GetParameter|^ssm:\*$|^\*$/,
          );
          expect(action, `${roleId} ${statement.Sid}`).not.toMatch(/^kms:/);
          // GetSecretValue and BatchGetSecretValue return values; DescribeSecret does not.
          expect(action, `${roleId} ${statement.Sid}`).not.toMatch(
            /^secretsmanager:(Get|BatchGet|\*)|^secretsmanager:.*\*/,
          );
          if (action.startsWith('secretsmanager:')) {
            expect(action, roleId).toBe('secretsmanager:DescribeSecret');
          }
        }
      }
    }
  });

  it('allows SendCommand only with our document and on instances tagged with our environments', () => {
    const { role } = functionRoles().find((r) => r.id === 'PropagateLambdaFunction')!;
    const sendCommand = statementsOf(role).filter((s) => actionsOf(s).includes('ssm:SendCommand'));
    expect(sendCommand).toEqual([
      expect.objectContaining({
        Resource: {
          'Fn::Sub':
            'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${ReplaceSecretsFileDocument}',
        },
      }),
      expect.objectContaining({
        Resource: {
          'Fn::Sub': 'arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*',
        },
        Condition: { StringEquals: { 'ssm:resourceTag/Environment': ['dev', 'staging', 'prod'] } },
      }),
    ]);
    for (const statement of sendCommand) expect(actionsOf(statement)).toEqual(['ssm:SendCommand']);
  });

  it('lets only the bootstrap function complete lifecycle actions, on groups of our environments', () => {
    const holders = functionRoles().filter(({ role }) =>
      statementsOf(role).some((s) => actionsOf(s).includes('autoscaling:CompleteLifecycleAction')),
    );
    expect(holders.map((h) => h.id)).toEqual(['BootstrapLambdaFunction']);
    const statement = statementsOf(holders[0]!.role).find((s) =>
      actionsOf(s).includes('autoscaling:CompleteLifecycleAction'),
    );
    expect(statement?.Condition).toEqual({
      StringEquals: { 'aws:ResourceTag/Environment': ['dev', 'staging', 'prod'] },
    });
  });

  it('routes new instances to the bootstrap queue: lifecycle, running, and tagged later', () => {
    const patterns = ['LaunchLifecycleRule', 'InstanceRunningRule', 'InstanceTaggedRule'].map(
      (id) => resources[id]!.Properties.EventPattern,
    );
    expect(patterns).toEqual([
      {
        source: ['aws.autoscaling'],
        'detail-type': ['EC2 Instance-launch Lifecycle Action'],
        detail: {
          LifecycleTransition: ['autoscaling:EC2_INSTANCE_LAUNCHING'],
          LifecycleHookName: ['secrets-fanout'],
        },
      },
      {
        source: ['aws.ec2'],
        'detail-type': ['EC2 Instance State-change Notification'],
        detail: { state: ['running'] },
      },
      {
        source: ['aws.tag'],
        'detail-type': ['Tag Change on Resource'],
        detail: {
          service: ['ec2'],
          'resource-type': ['instance'],
          'changed-tag-keys': ['Environment'],
        },
      },
    ]);
  });

  it('uses "*" only for actions that support no resource-level permissions', () => {
    const unscoped = new Set([
      'ec2:DescribeInstances',
      'ssm:DescribeInstanceInformation',
      'ssm:DescribeParameters',
      'ssm:ListCommandInvocations',
      'ssm:GetCommandInvocation',
      'ssm:ListCommands',
      'xray:PutTraceSegments',
      'xray:PutTelemetryRecords',
      // Scoped to * or DescribeAlarms hides composite alarms (API_DescribeAlarms.html).
      'cloudwatch:DescribeAlarms',
    ]);
    for (const { roleId, role } of functionRoles()) {
      for (const statement of statementsOf(role).filter(
        (s) => s.Resource === '*' && s.Effect === 'Allow',
      )) {
        for (const action of actionsOf(statement))
          expect(unscoped, `${roleId}: ${action}`).toContain(action);
      }
    }
  });

  it('lets only the functions that send a stage’s commands read alarm states, nothing more', () => {
    const readers = functionRoles()
      .filter(({ role }) =>
        statementsOf(role).some((st) => actionsOf(st).some((a) => a.startsWith('cloudwatch:'))),
      )
      .map(({ roleId }) => roleId)
      .sort();
    expect(readers).toEqual(['PropagateRole', 'ResyncHttpRole', 'ResyncRole', 'RetryRole']);
    for (const roleId of readers) {
      const actions = statementsOf(resources[roleId]!)
        .flatMap(actionsOf)
        .filter((a) => a.startsWith('cloudwatch:'));
      expect(actions).toEqual(['cloudwatch:DescribeAlarms']);
    }
    expect(JSON.stringify(resources.Dashboard?.Properties.DashboardBody)).toContain(
      'RolloutsHalted',
    );
  });

  it('lets each environment’s instances read only that environment’s parameters', () => {
    const policies = ofType('AWS::IAM::ManagedPolicy');
    expect(policies.map(([id]) => id)).toEqual([
      'InstancePolicyDev0',
      'InstancePolicyStaging1',
      'InstancePolicyProd2',
    ]);
    const prod = resources.InstancePolicyProd2!.Properties.PolicyDocument.Statement as Statement[];
    const arn = {
      'Fn::Sub':
        'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/prod/env.php',
    };
    expect(prod.find((s) => actionsOf(s).includes('ssm:GetParameter'))?.Resource).toEqual([arn]);
    expect(prod.find((s) => actionsOf(s).includes('kms:Decrypt'))?.Condition).toEqual({
      StringEquals: {
        'kms:ViaService': { 'Fn::Sub': 'ssm.${AWS::Region}.amazonaws.com' },
        'kms:EncryptionContext:PARAMETER_ARN': [arn],
      },
    });
  });
});

describe('resources', () => {
  it('deploys the document exactly as documents/replace-secrets-file.yml says', () => {
    const file = load(readFileSync(join(repoRoot, 'documents/replace-secrets-file.yml'), 'utf8'));
    expect(resources.ReplaceSecretsFileDocument!.Properties).toMatchObject({
      DocumentType: 'Command',
      DocumentFormat: 'YAML',
      Content: file,
    });
  });

  it('keeps state in an encrypted, recoverable, expiring, on-demand table', () => {
    expect(resources.IdempotencyTable!.Properties).toMatchObject({
      BillingMode: 'PAY_PER_REQUEST',
      SSESpecification: { SSEEnabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'expiration', Enabled: true },
    });
  });

  it('encrypts the alert topic with a key only SNS use can unlock for the functions', () => {
    expect(resources.AlertsTopic!.Properties.KmsMasterKeyId).toEqual({ Ref: 'AlertsKey' });
    const keyPolicy = resources.AlertsKey!.Properties.KeyPolicy.Statement as Statement[];
    const forFunctions = keyPolicy.find((s) => s.Sid === 'FunctionsPublishThroughSnsOnly');
    expect(forFunctions?.Condition).toEqual({
      StringEquals: {
        'kms:ViaService': { 'Fn::Sub': 'sns.${AWS::Region}.amazonaws.com' },
        'kms:CallerAccount': { Ref: 'AWS::AccountId' },
      },
      ArnLike: {
        'aws:PrincipalArn': {
          'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-*',
        },
      },
    });
  });

  it('has no circular dependency between resources (CloudFormation refuses one)', () => {
    // Ref, Fn::GetAtt, ${Name} inside Fn::Sub, and DependsOn are what CloudFormation follows.
    const edges = new Map<string, Set<string>>();
    const collect = (node: unknown, into: Set<string>): void => {
      if (Array.isArray(node)) {
        for (const item of node) collect(item, into);
        return;
      }
      if (node === null || typeof node !== 'object') return;
      for (const [key, value] of Object.entries(node)) {
        if (key === 'Ref' && typeof value === 'string') into.add(value);
        else if (key === 'Fn::GetAtt')
          into.add(Array.isArray(value) ? value[0] : String(value).split('.')[0]);
        else if (key === 'Fn::Sub') {
          const text = Array.isArray(value) ? value[0] : value;
          for (const [, name] of String(text).matchAll(/\$\{([A-Za-z0-9]+)(?:\.[^}]*)?\}/g))
            into.add(name!);
          collect(Array.isArray(value) ? value[1] : undefined, into);
        } else collect(value, into);
      }
    };
    for (const [id, resource] of Object.entries(resources)) {
      const deps = new Set<string>();
      collect((resource as any).Properties, deps);
      for (const d of [(resource as any).DependsOn ?? []].flat()) deps.add(d);
      edges.set(id, new Set([...deps].filter((d) => d in resources)));
    }
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (id: string, path: string[]): void => {
      if (state.get(id) === 'done') return;
      if (state.get(id) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(id)), id].join(' → '));
        return;
      }
      state.set(id, 'visiting');
      for (const next of edges.get(id) ?? []) visit(next, [...path, id]);
      state.set(id, 'done');
    };
    for (const id of edges.keys()) visit(id, []);
    expect(cycles).toEqual([]);
  });

  it('passes the validated config and the resource names to the function', () => {
    const env = resources.PropagateLambdaFunction!.Properties.Environment.Variables;
    expect(JSON.parse(env.FANOUT_CONFIG).environments).toEqual(['dev', 'staging', 'prod']);
    expect(env).toMatchObject({
      DOCUMENT_NAME: { Ref: 'ReplaceSecretsFileDocument' },
      IDEMPOTENCY_TABLE: { Ref: 'IdempotencyTable' },
      COMMAND_OUTPUT_LOG_GROUP: { Ref: 'CommandOutputLogGroup' },
    });
    expect(resources.PropagateLambdaFunction!.Properties.Runtime).toBe('nodejs24.x');
  });

  it("gives every function FANOUT_CONFIG's digest, which loadConfig takes as the text validated", () => {
    const functions = Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    expect(functions.length).toBeGreaterThan(5);
    for (const fn of functions) {
      const env = fn.Properties.Environment.Variables;
      expect(env.FANOUT_CONFIG_SHA256).toBe(configDigest(env.FANOUT_CONFIG));
      expect(loadConfig(env)).toEqual(parseConfig(JSON.parse(env.FANOUT_CONFIG), 'FANOUT_CONFIG'));
    }
  });
});

describe('packaging a bad config', () => {
  it('fails and names the bad field', async () => {
    // Arrange: an unquoted mode, which YAML reads as a number
    const dir = await serviceCopy({
      serverlessYml: (yml) => yml.replace("mode: '0400'", 'mode: 0400'),
    });
    // Act
    const failure = await packageService(join(dir, 'out'), dir).then(
      () => undefined,
      (error: { stdout: string; stderr: string }) => `${error.stdout}${error.stderr}`,
    );
    // Assert
    expect(failure).toContain('custom.fanout.files[0].mode');
    expect(failure).toContain('quoted octal string');
  });

  it("fails when a function's environment would not fit Lambda's 4 KB as Lambda measures it", async () => {
    // Arrange: 14 more files. FANOUT_CONFIG is then about 2.7 KB of JSON, which the old raw-size
    // check (3,072 bytes) let through, but Lambda counts its quotes twice (it measures the
    // variables as one JSON string) and the queue URLs and names CloudFormation generates.
    const more = Array.from(
      { length: 14 },
      (_, i) =>
        `      - parameter: /{env}/app/settings-${i}.php\n        path: /var/www/html/settings-${i}.php\n        owner: apache\n        group: apache\n`,
    ).join('');
    const dir = await serviceCopy({
      serverlessYml: (yml) => yml.replace('        backups: 3\n', `        backups: 3\n${more}`),
    });
    // Act
    const failure = await packageService(join(dir, 'out'), dir).then(
      () => undefined,
      (error: { stdout: string; stderr: string }) => `${error.stdout}${error.stderr}`,
    );
    // Assert
    expect(failure).toMatch(
      /PropagateLambdaFunction: its environment is 4[0-9]{3} bytes as Lambda measures it .*, over its 4096; largest: FANOUT_CONFIG 3[0-9]{3}/,
    );
  });

  it('fails when the document would refuse a mapped value', async () => {
    // Arrange: a document that only accepts root as owner, and a config that maps apache
    const dir = await serviceCopy({
      document: (doc) =>
        doc.replace(/(FileOwner:[\s\S]*?allowedPattern: ).*/, (_, head) => `${head}'^root$'`),
    });
    // Act
    const failure = await packageService(join(dir, 'out'), dir).then(
      () => undefined,
      (error: { stdout: string; stderr: string }) => `${error.stdout}${error.stderr}`,
    );
    // Assert
    expect(failure).toContain('custom.fanout.files[0] (dev): FileOwner "apache" is refused');
  });
});
