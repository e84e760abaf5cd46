// A Serverless Framework plugin (package time only): fails `serverless package` and `deploy`
// when a function's environment would not fit Lambda's 4 KB, rather than letting CloudFormation
// fail half-way through a deploy.
//
// Lambda measures the variables as one JSON string ("...exceeded the 4KB limit. String measured:
// {"NAME":"value",...}", as reported in github.com/github-aws-runners/terraform-aws-github-runner
// issue 3594), so every quote inside FANOUT_CONFIG, itself JSON, counts twice, and the names count
// too (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html: 4 KB for all
// environment variables together). Values CloudFormation fills in at deploy time (queue URLs,
// generated table names) are sized as the longest CloudFormation would generate for this stack.

const MAX_ENVIRONMENT_BYTES = 4096;
const ACCOUNT = '123456789012';
// CloudFormation names a resource without a name property "<stack>-<logical id>-<suffix>",
// cut to what the type allows; the random suffix is 12 or 13 characters.
const SUFFIX = 'X'.repeat(13);
const NAME_LIMITS = {
  'AWS::SQS::Queue': 80,
  'AWS::DynamoDB::Table': 255,
  'AWS::SNS::Topic': 256,
  'AWS::SSM::Document': 128,
  'AWS::Logs::LogGroup': 512,
};

/**
 * The longest value an environment variable can take once deployed: itself when it is a string,
 * else the longest value CloudFormation gives the reference. Throws for a reference it cannot
 * size, so a new kind of variable is sized on purpose.
 */
function deployedValue(value, { resources, stack, region, partition }) {
  if (typeof value === 'string') return value;
  const logicalId = value.Ref;
  const resource = logicalId === undefined ? undefined : resources[logicalId];
  if (resource === undefined) {
    throw new Error(`environment-size: cannot size ${JSON.stringify(value)}`);
  }
  const generated = () =>
    `${stack}-${logicalId}-${SUFFIX}`.slice(0, NAME_LIMITS[resource.Type] ?? 255);
  const properties = resource.Properties ?? {};
  switch (resource.Type) {
    case 'AWS::SQS::Queue': // Ref: the queue URL
      return `https://sqs.${region}.amazonaws.com/${ACCOUNT}/${properties.QueueName ?? generated()}`;
    case 'AWS::SNS::Topic': // Ref: the topic ARN
      return `arn:${partition}:sns:${region}:${ACCOUNT}:${properties.TopicName ?? generated()}`;
    case 'AWS::DynamoDB::Table':
      return typeof properties.TableName === 'string' ? properties.TableName : generated();
    case 'AWS::Logs::LogGroup':
      return typeof properties.LogGroupName === 'string' ? properties.LogGroupName : generated();
    case 'AWS::SSM::Document':
      return typeof properties.Name === 'string' ? properties.Name : generated();
    case 'AWS::ApiGatewayV2::Api': // Ref: the API id
      return 'a'.repeat(10);
    default:
      throw new Error(`environment-size: cannot size a Ref to ${resource.Type} (${logicalId})`);
  }
}

/** Bytes Lambda counts for this environment, and each variable's share, largest first. */
function measure(variables, context) {
  const deployed = Object.fromEntries(
    Object.entries(variables).map(([name, value]) => [name, deployedValue(value, context)]),
  );
  const shares = Object.entries(deployed)
    .map(([name, value]) => [name, Buffer.byteLength(JSON.stringify({ [name]: value })) - 2])
    .sort((a, b) => b[1] - a[1]);
  return { bytes: Buffer.byteLength(JSON.stringify(deployed)), shares };
}

/** Every function whose environment is over Lambda's 4 KB, as a sentence each. */
function oversized(template, context) {
  const problems = [];
  for (const [logicalId, resource] of Object.entries(template.Resources ?? {})) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const variables = resource.Properties?.Environment?.Variables ?? {};
    const { bytes, shares } = measure(variables, { ...context, resources: template.Resources });
    if (bytes > MAX_ENVIRONMENT_BYTES) {
      const largest = shares
        .slice(0, 3)
        .map(([name, size]) => `${name} ${size}`)
        .join(', ');
      problems.push(
        `${logicalId}: its environment is ${bytes} bytes as Lambda measures it (JSON, quotes escaped), over its ${MAX_ENVIRONMENT_BYTES}; largest: ${largest}. Map fewer or shorter files or environments in custom.fanout.`,
      );
    }
  }
  return problems;
}

class EnvironmentSize {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { 'before:package:finalize': () => this.check() };
  }

  check() {
    const provider = this.serverless.getProvider('aws');
    const region = provider.getRegion();
    const context = {
      stack: provider.naming.getStackName(),
      region,
      partition: region.startsWith('cn-')
        ? 'aws-cn'
        : region.startsWith('us-gov-')
          ? 'aws-us-gov'
          : 'aws',
    };
    // Before finalize, the resources of serverless.yml are not merged into the template yet.
    const compiled = this.serverless.service.provider.compiledCloudFormationTemplate;
    const template = {
      Resources: { ...(this.serverless.service.resources?.Resources ?? {}), ...compiled.Resources },
    };
    const problems = oversized(template, context);
    if (problems.length > 0) {
      throw new this.serverless.classes.Error(
        `Lambda allows 4 KB of environment variables per function:\n  ${problems.join('\n  ')}`,
      );
    }
  }
}

module.exports = EnvironmentSize;
module.exports.oversized = oversized;
module.exports.measure = measure;
module.exports.MAX_ENVIRONMENT_BYTES = MAX_ENVIRONMENT_BYTES;
