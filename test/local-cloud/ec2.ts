/**
 * EC2 DescribeInstances over the EC2 Query protocol (form-encoded POST, Version=2016-11-15,
 * XML in the 2016-11-15 namespace; errors as <Response><Errors><Error>… with RequestID), as
 * @aws-sdk/client-ec2 sends and parses it (research notes §6, from the SDK probe).
 * https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html
 * Error codes: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
 */
import type { Fleet, Instance } from './fleet.ts';
import { STATE_CODES } from './fleet.ts';
import {
  ACCOUNT_ID,
  decodeToken,
  encodeToken,
  parseForm,
  type Reply,
  type Request,
  ServiceError,
  type ServiceFaults,
  shouldThrottle,
  xmlEscape,
} from './http.ts';

const NAMESPACE = 'http://ec2.amazonaws.com/doc/2016-11-15/';
const FILTERS = new Set(['instance-state-name', 'instance-state-code', 'instance-id', 'tag-key']);

export class Ec2Service {
  faults: ServiceFaults = {};
  private readonly fleet: Fleet;
  private readonly region: string;

  constructor(fleet: Fleet, region: string) {
    this.fleet = fleet;
    this.region = region;
  }

  handle(request: Request): Reply {
    const form = parseForm(request.body);
    try {
      // Throttling: RequestLimitExceeded (botocore's ec2 retry policy, research notes §6).
      if (shouldThrottle(this.faults))
        throw new ServiceError('RequestLimitExceeded', 'Request limit exceeded.', 503);
      const action = form.get('Action');
      if (action !== 'DescribeInstances') {
        throw new ServiceError(
          'InvalidAction',
          `The action ${action ?? '(none)'} is not valid for this web service.`,
        );
      }
      return {
        status: 200,
        headers: { 'content-type': 'text/xml;charset=UTF-8' },
        body: this.describeInstances(form, request.requestId),
      };
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return {
        status: error.status,
        headers: { 'content-type': 'text/xml;charset=UTF-8' },
        body: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${error.code}</Code><Message>${xmlEscape(error.message)}</Message></Error></Errors><RequestID>${request.requestId}</RequestID></Response>`,
      };
    }
  }

  private describeInstances(form: Map<string, string>, requestId: string): string {
    const ids = indexed(form, 'InstanceId');
    const maxResultsText = form.get('MaxResults');
    if (maxResultsText !== undefined && ids.length > 0) {
      throw new ServiceError(
        'InvalidParameterCombination',
        'The parameter instancesSet cannot be used with the parameter maxResults',
      );
    }
    let maxResults: number | undefined;
    if (maxResultsText !== undefined) {
      maxResults = Number(maxResultsText);
      // "This value can be between 5 and 1000" (research notes §6; the error text is UNCONFIRMED).
      if (!Number.isInteger(maxResults) || maxResults < 5 || maxResults > 1000) {
        throw new ServiceError(
          'InvalidParameterValue',
          `Value ( ${maxResultsText} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.`,
        );
      }
    }
    for (const id of ids) {
      if (!/^i-([0-9a-f]{8}|[0-9a-f]{17})$/.test(id))
        throw new ServiceError('InvalidInstanceID.Malformed', `Invalid id: "${id}"`);
    }
    const missing = ids.filter((id) => !this.fleet.find(id));
    if (missing.length > 0) {
      throw new ServiceError(
        'InvalidInstanceID.NotFound',
        `The instance ID${missing.length > 1 ? 's' : ''} '${missing.join(', ')}' ${missing.length > 1 ? 'do' : 'does'} not exist`,
      );
    }
    let instances = ids.length > 0 ? ids.map((id) => this.fleet.get(id)) : this.fleet.list();
    for (let n = 1; form.has(`Filter.${n}.Name`); n += 1) {
      const name = form.get(`Filter.${n}.Name`) as string;
      const values = indexed(form, `Filter.${n}.Value`);
      if (!name.startsWith('tag:') && !FILTERS.has(name)) {
        throw new ServiceError('InvalidParameterValue', `The filter '${name}' is invalid`);
      }
      instances = instances.filter((instance) =>
        values.some((value) => filterMatches(instance, name, value)),
      );
    }
    instances.sort(
      (a, b) => a.launchTime.getTime() - b.launchTime.getTime() || a.id.localeCompare(b.id),
    );
    const fingerprint = JSON.stringify(
      [...form.entries()].filter(([key]) => key !== 'NextToken' && key !== 'MaxResults'),
    );
    let offset = 0;
    const token = form.get('NextToken');
    if (token !== undefined) {
      const decoded = decodeToken(token, fingerprint);
      if (decoded === undefined)
        throw new ServiceError('InvalidParameterValue', `Invalid value '${token}' for nextToken`);
      offset = decoded;
    }
    const size = maxResults ?? instances.length;
    const slice = instances.slice(offset, offset + size);
    const next =
      offset + size < instances.length ? encodeToken(offset + size, fingerprint) : undefined;
    const reservations = slice.map((instance) => this.reservationXml(instance)).join('');
    return `<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse xmlns="${NAMESPACE}"><requestId>${requestId}</requestId><reservationSet>${reservations}</reservationSet>${next ? `<nextToken>${next}</nextToken>` : ''}</DescribeInstancesResponse>`;
  }

  private reservationXml(instance: Instance): string {
    const tags = Object.entries(instance.tags)
      .map(
        ([key, value]) =>
          `<item><key>${xmlEscape(key)}</key><value>${xmlEscape(value)}</value></item>`,
      )
      .join('');
    const hostname = `ip-${instance.privateIp.replace(/\./g, '-')}.${this.region}.compute.internal`;
    return (
      `<item><reservationId>r-${instance.id.slice(2)}</reservationId><ownerId>${ACCOUNT_ID}</ownerId><groupSet/>` +
      `<instancesSet><item><instanceId>${instance.id}</instanceId><imageId>ami-0123456789abcdef0</imageId>` +
      `<instanceState><code>${STATE_CODES[instance.state]}</code><name>${instance.state}</name></instanceState>` +
      `<privateDnsName>${instance.state === 'terminated' ? '' : hostname}</privateDnsName><dnsName/>` +
      `<instanceType>t3.micro</instanceType><launchTime>${instance.launchTime.toISOString()}</launchTime>` +
      `<placement><availabilityZone>${this.region}a</availabilityZone><tenancy>default</tenancy></placement>` +
      `<privateIpAddress>${instance.privateIp}</privateIpAddress><architecture>x86_64</architecture>` +
      `<rootDeviceType>ebs</rootDeviceType><platformDetails>Linux/UNIX</platformDetails>` +
      `<tagSet>${tags}</tagSet></item></instancesSet></item>`
    );
  }
}

function indexed(form: Map<string, string>, prefix: string): string[] {
  const values: string[] = [];
  for (let n = 1; form.has(`${prefix}.${n}`); n += 1)
    values.push(form.get(`${prefix}.${n}`) as string);
  return values;
}

function filterMatches(instance: Instance, name: string, value: string): boolean {
  // Filter values are case-sensitive and may use * and ? wildcards (API_Filter.html).
  const like = (actual: string | undefined) =>
    actual !== undefined &&
    new RegExp(
      `^${value
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
    ).test(actual);
  if (name.startsWith('tag:')) return like(instance.tags[name.slice(4)]);
  switch (name) {
    case 'tag-key':
      return Object.keys(instance.tags).some((key) => like(key));
    case 'instance-state-name':
      return like(instance.state);
    case 'instance-state-code':
      return String(STATE_CODES[instance.state]) === value;
    case 'instance-id':
      return like(instance.id);
    default:
      return false;
  }
}
