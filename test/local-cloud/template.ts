/**
 * The packaged CloudFormation template as CloudFormation would deploy it locally: physical names
 * for every resource (the declared name, or `<stack>-<LogicalId>-<SUFFIX>` as CloudFormation
 * generates one), Ref / Fn::GetAtt values, and the intrinsic functions the template uses
 * (Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::If and the condition functions).
 * Return values per resource type:
 * https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-template-resource-type-ref.html
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ACCOUNT_ID } from './http.ts';

export interface Resource {
  Type: string;
  Properties?: Record<string, unknown>;
  Condition?: string;
  DependsOn?: string | string[];
}

export interface CfnTemplate {
  Resources: Record<string, Resource>;
  Conditions?: Record<string, unknown>;
  Outputs?: Record<string, { Value: unknown }>;
}

export interface StackContext {
  stackName: string;
  region: string;
  accountId: string;
  /** Base URL of the local SQS endpoint: a queue's Ref is its URL. */
  sqsEndpoint: string;
}

/** Reads `<dir>/cloudformation-template-update-stack.json` and the stack name/region Serverless recorded. */
export function readPackagedTemplate(dir: string): {
  template: CfnTemplate;
  stackName: string;
  region: string;
} {
  const template = JSON.parse(
    readFileSync(join(dir, 'cloudformation-template-update-stack.json'), 'utf8'),
  ) as CfnTemplate;
  let stackName = 'secrets-fanout-dev';
  let region = 'eu-west-1';
  const statePath = join(dir, 'serverless-state.json');
  if (existsSync(statePath)) {
    const state = JSON.parse(readFileSync(statePath, 'utf8')) as {
      service?: { service?: string; provider?: { stage?: string; region?: string } };
    };
    const service = state.service?.service;
    const stage = state.service?.provider?.stage;
    if (service && stage) stackName = `${service}-${stage}`;
    region = state.service?.provider?.region ?? region;
  }
  return { template, stackName, region };
}

function suffix(stackName: string, logicalId: string): string {
  return createHash('sha256')
    .update(`${stackName}/${logicalId}`)
    .digest('base64')
    .replace(/[^A-Za-z0-9]/g, '')
    .slice(0, 12)
    .toUpperCase();
}

function shortId(stackName: string, logicalId: string, length: number): string {
  const digest = createHash('sha256').update(`${stackName}/${logicalId}`).digest();
  return [...digest.subarray(0, length)].map((byte) => (byte % 36).toString(36)).join('');
}

export class Stack {
  readonly template: CfnTemplate;
  readonly context: StackContext;
  private readonly conditionCache = new Map<string, boolean>();

  constructor(template: CfnTemplate, context: StackContext) {
    this.template = template;
    this.context = context;
  }

  /** The resources CloudFormation would create (their Condition, if any, holds). */
  resources(type?: string): Array<[string, Resource]> {
    return Object.entries(this.template.Resources).filter(
      ([, resource]) =>
        (type === undefined || resource.Type === type) &&
        (resource.Condition === undefined || this.condition(resource.Condition)),
    );
  }

  resource(logicalId: string): Resource {
    const resource = this.template.Resources[logicalId];
    if (!resource) throw new Error(`template has no resource ${logicalId}`);
    return resource;
  }

  /** A generated physical name as CloudFormation makes one (max `limit` characters). */
  generatedName(logicalId: string, limit = 64): string {
    const tail = `-${logicalId}-${suffix(this.context.stackName, logicalId)}`;
    return `${this.context.stackName.slice(0, Math.max(1, limit - tail.length))}${tail}`.slice(
      0,
      limit,
    );
  }

  private prop(logicalId: string, name: string): string | undefined {
    const value = this.resource(logicalId).Properties?.[name];
    return value === undefined ? undefined : String(this.resolve(value));
  }

  /** The physical name of a resource (what most Refs return). */
  physicalName(logicalId: string): string {
    const resource = this.resource(logicalId);
    const { region, accountId } = this.context;
    switch (resource.Type) {
      case 'AWS::Lambda::Function':
        return this.prop(logicalId, 'FunctionName') ?? this.generatedName(logicalId);
      case 'AWS::SQS::Queue': {
        const declared = this.prop(logicalId, 'QueueName');
        if (declared) return declared;
        const fifo = this.resource(logicalId).Properties?.FifoQueue === true;
        return `${this.generatedName(logicalId, fifo ? 75 : 80)}${fifo ? '.fifo' : ''}`;
      }
      case 'AWS::SNS::Topic':
        return this.prop(logicalId, 'TopicName') ?? this.generatedName(logicalId, 256);
      case 'AWS::DynamoDB::Table':
        return this.prop(logicalId, 'TableName') ?? this.generatedName(logicalId, 255);
      case 'AWS::SSM::Document':
        return this.prop(logicalId, 'Name') ?? this.generatedName(logicalId, 128);
      case 'AWS::Logs::LogGroup':
        return this.prop(logicalId, 'LogGroupName') ?? this.generatedName(logicalId, 512);
      case 'AWS::IAM::Role':
        return this.prop(logicalId, 'RoleName') ?? this.generatedName(logicalId);
      case 'AWS::IAM::ManagedPolicy':
        return `arn:aws:iam::${accountId}:policy/${this.prop(logicalId, 'ManagedPolicyName') ?? this.generatedName(logicalId)}`;
      case 'AWS::Events::Rule':
        return this.prop(logicalId, 'Name') ?? this.generatedName(logicalId);
      case 'AWS::CloudWatch::Alarm':
        return this.prop(logicalId, 'AlarmName') ?? this.generatedName(logicalId, 255);
      // API Gateway ids: 10 lowercase alphanumerics for an API, 7 for a route or integration.
      case 'AWS::ApiGatewayV2::Api':
        return shortId(this.context.stackName, logicalId, 10);
      case 'AWS::ApiGatewayV2::Route':
      case 'AWS::ApiGatewayV2::Integration':
        return shortId(this.context.stackName, logicalId, 7);
      case 'AWS::ApiGatewayV2::Stage':
        return this.prop(logicalId, 'StageName') ?? '$default';
      case 'AWS::KMS::Key':
        return [8, 4, 4, 4, 12]
          .map((n, i) => createHash('md5').update(`${logicalId}${i}`).digest('hex').slice(0, n))
          .join('-');
      default:
        return `${this.generatedName(logicalId)}${region ? '' : ''}`;
    }
  }

  /** Ref: https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-ref.html */
  ref(logicalId: string): string {
    const { region, accountId, stackName } = this.context;
    switch (logicalId) {
      case 'AWS::Region':
        return region;
      case 'AWS::AccountId':
        return accountId;
      case 'AWS::Partition':
        return 'aws';
      case 'AWS::StackName':
        return stackName;
      case 'AWS::URLSuffix':
        return 'amazonaws.com';
      case 'AWS::StackId':
        return `arn:aws:cloudformation:${region}:${accountId}:stack/${stackName}/00000000-0000-0000-0000-000000000000`;
    }
    const resource = this.resource(logicalId);
    const name = this.physicalName(logicalId);
    switch (resource.Type) {
      case 'AWS::SQS::Queue':
        return `${this.context.sqsEndpoint}/${accountId}/${name}`;
      case 'AWS::SNS::Topic':
        return `arn:aws:sns:${region}:${accountId}:${name}`;
      default:
        return name;
    }
  }

  getAtt(logicalId: string, attribute: string): string {
    const { region, accountId } = this.context;
    const resource = this.resource(logicalId);
    const name = this.physicalName(logicalId);
    const arns: Record<string, string> = {
      'AWS::Lambda::Function': `arn:aws:lambda:${region}:${accountId}:function:${name}`,
      'AWS::SQS::Queue': `arn:aws:sqs:${region}:${accountId}:${name}`,
      'AWS::SNS::Topic': `arn:aws:sns:${region}:${accountId}:${name}`,
      'AWS::DynamoDB::Table': `arn:aws:dynamodb:${region}:${accountId}:table/${name}`,
      'AWS::Logs::LogGroup': `arn:aws:logs:${region}:${accountId}:log-group:${name}:*`,
      'AWS::IAM::Role': `arn:aws:iam::${accountId}:role/${name}`,
      'AWS::Events::Rule': `arn:aws:events:${region}:${accountId}:rule/${name}`,
      'AWS::KMS::Key': `arn:aws:kms:${region}:${accountId}:key/${name}`,
      'AWS::CloudWatch::Alarm': `arn:aws:cloudwatch:${region}:${accountId}:alarm:${name}`,
    };
    if (attribute === 'Arn') {
      const arn = arns[resource.Type];
      if (arn) return arn;
    }
    if (resource.Type === 'AWS::SQS::Queue' && attribute === 'QueueName') return name;
    if (resource.Type === 'AWS::SQS::Queue' && attribute === 'QueueUrl') return this.ref(logicalId);
    if (resource.Type === 'AWS::SNS::Topic' && attribute === 'TopicName') return name;
    if (resource.Type === 'AWS::DynamoDB::Table' && attribute === 'StreamArn') {
      return `${arns[resource.Type]}/stream/1970-01-01T00:00:00.000`;
    }
    if (resource.Type === 'AWS::IAM::Role' && attribute === 'RoleId')
      return `AROA${suffix(name, 'id')}`;
    if (resource.Type === 'AWS::KMS::Key' && attribute === 'KeyId') return name;
    throw new Error(
      `local cloud: Fn::GetAtt ${logicalId}.${attribute} (${resource.Type}) is not supported`,
    );
  }

  condition(name: string): boolean {
    const cached = this.conditionCache.get(name);
    if (cached !== undefined) return cached;
    const definition = this.template.Conditions?.[name];
    if (definition === undefined) throw new Error(`template has no condition ${name}`);
    const value = Boolean(this.resolve(definition));
    this.conditionCache.set(name, value);
    return value;
  }

  /** Resolves every intrinsic function in a template value. */
  resolve(value: unknown): unknown {
    if (Array.isArray(value)) {
      return value.map((item) => this.resolve(item)).filter((item) => item !== NO_VALUE);
    }
    if (value === null || typeof value !== 'object') return value;
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 1) {
      const [[key, arg]] = entries as [[string, unknown]];
      const resolved = this.intrinsic(key, arg);
      if (resolved !== NOT_INTRINSIC) return resolved;
    }
    const out: Record<string, unknown> = {};
    for (const [key, item] of entries) {
      const resolved = this.resolve(item);
      if (resolved !== NO_VALUE) out[key] = resolved;
    }
    return out;
  }

  private intrinsic(key: string, arg: unknown): unknown {
    switch (key) {
      case 'Ref':
        return arg === 'AWS::NoValue' ? NO_VALUE : this.ref(String(arg));
      case 'Fn::GetAtt': {
        const [logicalId, attribute] = Array.isArray(arg) ? arg : String(arg).split('.');
        return this.getAtt(String(logicalId), String(attribute));
      }
      case 'Fn::Sub': {
        const [text, vars] = Array.isArray(arg) ? arg : [arg, {}];
        const variables = this.resolve(vars) as Record<string, unknown>;
        return String(text).replace(/\$\{([^}!][^}]*)\}/g, (_, name: string) => {
          if (Object.hasOwn(variables, name)) return String(variables[name]);
          if (name.includes('.')) {
            const [logicalId = '', attribute = ''] = name.split('.', 2);
            return this.getAtt(logicalId, attribute);
          }
          return this.ref(name);
        });
      }
      case 'Fn::Join': {
        const [separator, items] = arg as [string, unknown[]];
        return (this.resolve(items) as unknown[]).join(separator);
      }
      case 'Fn::Select': {
        const [index, items] = arg as [unknown, unknown];
        return (this.resolve(items) as unknown[])[Number(this.resolve(index))];
      }
      case 'Fn::Split': {
        const [separator, text] = arg as [string, unknown];
        return String(this.resolve(text)).split(separator);
      }
      case 'Fn::If': {
        const [condition, whenTrue, whenFalse] = arg as [string, unknown, unknown];
        return this.resolve(this.condition(condition) ? whenTrue : whenFalse);
      }
      case 'Fn::Equals': {
        const [a, b] = this.resolve(arg) as [unknown, unknown];
        return JSON.stringify(a) === JSON.stringify(b);
      }
      case 'Fn::Not':
        return !(this.resolve(arg) as unknown[])[0];
      case 'Fn::And':
        return (this.resolve(arg) as unknown[]).every(Boolean);
      case 'Fn::Or':
        return (this.resolve(arg) as unknown[]).some(Boolean);
      case 'Condition':
        return this.condition(String(arg));
      default:
        return NOT_INTRINSIC;
    }
  }
}

const NOT_INTRINSIC = Symbol('not an intrinsic function');
const NO_VALUE = Symbol('AWS::NoValue');

export function defaultStackContext(
  stackName: string,
  region: string,
  sqsEndpoint: string,
): StackContext {
  return { stackName, region, accountId: ACCOUNT_ID, sqsEndpoint };
}
