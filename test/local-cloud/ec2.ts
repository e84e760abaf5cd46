/**
 * EC2 DescribeInstances, RunInstances, TerminateInstances, CreateTags, DeleteTags and DescribeTags
 * over the EC2 Query protocol (form-encoded POST, Version=2016-11-15,
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

/** What the rest of the local cloud does when a user launches, terminates or tags an instance. */
export interface Ec2Hooks {
  /** Launches an instance (pending, then running; state-change events), with these tags. */
  launch(tags: Record<string, string>): Instance;
  /** Terminates an instance (shutting-down, then terminated; state-change events). */
  terminate(instance: Instance): void;
  /** Tags changed: the `aws.tag` "Tag Change on Resource" event. */
  tagsChanged(instance: Instance, changedKeys: string[]): void;
}

const ACTIONS = new Set([
  'DescribeInstances',
  'RunInstances',
  'TerminateInstances',
  'CreateTags',
  'DeleteTags',
  'DescribeTags',
]);

export class Ec2Service {
  faults: ServiceFaults = {};
  hooks: Ec2Hooks | undefined;
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
      const action = form.get('Action') ?? '';
      if (!ACTIONS.has(action)) {
        throw new ServiceError(
          'InvalidAction',
          `The action ${action || '(none)'} is not valid for this web service.`,
        );
      }
      // DryRun: the checks, then DryRunOperation (412) instead of the change
      // (errors-overview.html: "Request would have succeeded, but DryRun flag is set.").
      const dryRun = form.get('DryRun') === 'true';
      const body = this.act(action, form, request.requestId, dryRun);
      return {
        status: 200,
        headers: { 'content-type': 'text/xml;charset=UTF-8' },
        body,
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

  private act(
    action: string,
    form: Map<string, string>,
    requestId: string,
    dryRun: boolean,
  ): string {
    const dry = () => {
      if (dryRun) {
        throw new ServiceError(
          'DryRunOperation',
          'Request would have succeeded, but DryRun flag is set.',
          412,
        );
      }
    };
    const xml = (body: string) =>
      `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${NAMESPACE}"><requestId>${requestId}</requestId>${body}</${action}Response>`;
    switch (action) {
      case 'DescribeInstances': {
        const body = this.describeInstances(form, requestId);
        dry();
        return body;
      }
      case 'CreateTags':
      case 'DeleteTags': {
        // API_CreateTags.html / API_DeleteTags.html: ResourceId.N, Tag.N.Key, Tag.N.Value.
        const instances = this.instancesOf(indexed(form, 'ResourceId'), 'resourceIdSet');
        const tags: Array<{ key: string; value: string | undefined }> = [];
        for (let n = 1; form.has(`Tag.${n}.Key`); n += 1) {
          tags.push({ key: form.get(`Tag.${n}.Key`) as string, value: form.get(`Tag.${n}.Value`) });
        }
        if (action === 'CreateTags' && tags.length === 0) {
          throw new ServiceError('MissingParameter', 'The request must contain the parameter Tag');
        }
        for (const { key, value } of tags) {
          // Tag restrictions (Using_Tags.html): the aws: prefix is reserved; key ≤ 128, value ≤ 256.
          if (key.toLowerCase().startsWith('aws:')) {
            throw new ServiceError(
              'InvalidParameterValue',
              `Value ( ${key} ) for parameter key is invalid. Tag keys starting with 'aws:' are reserved for internal use`,
            );
          }
          if (key.length > 128 || (value ?? '').length > 256) {
            throw new ServiceError(
              'InvalidParameterValue',
              `Value ( ${key} ) for parameter key is invalid. Tag keys may be at most 128 and values 256 characters long`,
            );
          }
        }
        if (action === 'CreateTags') {
          for (const instance of instances) {
            const keys = new Set([...Object.keys(instance.tags), ...tags.map((t) => t.key)]);
            if (keys.size > 50) {
              throw new ServiceError(
                'TagLimitExceeded',
                'The maximum number of Tags for a resource has been reached.',
              );
            }
          }
        }
        dry();
        for (const instance of instances) {
          const changed: string[] = [];
          for (const { key, value } of tags) {
            if (action === 'CreateTags') {
              if (instance.tags[key] !== (value ?? '')) changed.push(key);
              instance.tags[key] = value ?? '';
            } else if (
              key in instance.tags &&
              (value === undefined || instance.tags[key] === value)
            ) {
              delete instance.tags[key];
              changed.push(key);
            }
          }
          // DeleteTags without Tag.N deletes every tag (API_DeleteTags.html, Tags).
          if (action === 'DeleteTags' && tags.length === 0) {
            for (const key of Object.keys(instance.tags)) {
              delete instance.tags[key];
              changed.push(key);
            }
          }
          if (changed.length > 0) this.hooks?.tagsChanged(instance, changed);
        }
        return xml('<return>true</return>');
      }
      case 'DescribeTags': {
        // API_DescribeTags.html: filters key, value, resource-id, resource-type.
        checkFilterValueLimit(form);
        let rows = this.fleet
          .list()
          .filter((instance) => instance.state !== 'terminated')
          .flatMap((instance) =>
            Object.entries(instance.tags).map(([key, value]) => ({ id: instance.id, key, value })),
          );
        for (let n = 1; form.has(`Filter.${n}.Name`); n += 1) {
          const name = form.get(`Filter.${n}.Name`) as string;
          const values = indexed(form, `Filter.${n}.Value`);
          const field = (row: { id: string; key: string; value: string }): string => {
            switch (name) {
              case 'key':
                return row.key;
              case 'value':
                return row.value;
              case 'resource-id':
                return row.id;
              case 'resource-type':
                return 'instance';
              default:
                throw new ServiceError('InvalidParameterValue', `The filter '${name}' is invalid`);
            }
          };
          rows = rows.filter((row) => values.some((value) => wildcard(value).test(field(row))));
        }
        if (form.has('MaxResults') || form.has('NextToken')) {
          throw new ServiceError(
            'InvalidParameterValue',
            'The local cloud does not implement DescribeTags pagination (MaxResults, NextToken).',
          );
        }
        dry();
        return xml(
          `<tagSet>${rows
            .map(
              (row) =>
                `<item><resourceId>${row.id}</resourceId><resourceType>instance</resourceType><key>${xmlEscape(row.key)}</key><value>${xmlEscape(row.value)}</value></item>`,
            )
            .join('')}</tagSet>`,
        );
      }
      case 'RunInstances': {
        // API_RunInstances.html: ImageId, MinCount ≤ MaxCount, TagSpecification.N (instance).
        const min = Number(form.get('MinCount'));
        const max = Number(form.get('MaxCount'));
        if (!form.has('MinCount') || !form.has('MaxCount')) {
          throw new ServiceError(
            'MissingParameter',
            `The request must contain the parameter ${form.has('MinCount') ? 'MaxCount' : 'MinCount'}`,
          );
        }
        if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max < min) {
          throw new ServiceError(
            'InvalidParameterValue',
            `Value (${min}) for parameter minCount is invalid. Expected a positive integer not above maxCount (${max}).`,
          );
        }
        if (!/^ami-[0-9a-f]{8,17}$/.test(form.get('ImageId') ?? '')) {
          throw new ServiceError(
            'InvalidAMIID.Malformed',
            `Invalid id: "${form.get('ImageId') ?? ''}" (expecting "ami-...")`,
          );
        }
        const tags: Record<string, string> = {};
        for (let n = 1; form.has(`TagSpecification.${n}.ResourceType`); n += 1) {
          const type = form.get(`TagSpecification.${n}.ResourceType`);
          if (type !== 'instance') {
            throw new ServiceError(
              'InvalidParameterValue',
              `The local cloud tags instances only, not ${type}.`,
            );
          }
          for (let m = 1; form.has(`TagSpecification.${n}.Tag.${m}.Key`); m += 1) {
            tags[form.get(`TagSpecification.${n}.Tag.${m}.Key`) as string] =
              form.get(`TagSpecification.${n}.Tag.${m}.Value`) ?? '';
          }
        }
        for (const key of [...form.keys()]) {
          if (
            !/^(Action|Version|ImageId|InstanceType|MinCount|MaxCount|DryRun|TagSpecification\.|ClientToken$|KeyName$|SubnetId$|SecurityGroupId\.|IamInstanceProfile\.)/.test(
              key,
            )
          ) {
            throw new ServiceError(
              'InvalidParameterValue',
              `The local cloud does not implement the RunInstances parameter ${key}.`,
            );
          }
        }
        dry();
        const hooks = this.requireHooks();
        const launched = Array.from({ length: max }, () => hooks.launch(tags));
        return xml(
          `<reservationId>r-${launched[0]?.id.slice(2)}</reservationId><ownerId>${ACCOUNT_ID}</ownerId><groupSet/><instancesSet>${launched
            .map((instance) => this.instanceXml(instance))
            .join('')}</instancesSet>`,
        );
      }
      case 'TerminateInstances': {
        const instances = this.instancesOf(indexed(form, 'InstanceId'), 'instanceId');
        dry();
        const hooks = this.requireHooks();
        const changes = instances.map((instance) => {
          const previous = instance.state;
          if (previous !== 'terminated') hooks.terminate(instance);
          return `<item><instanceId>${instance.id}</instanceId><currentState><code>${STATE_CODES[instance.state]}</code><name>${instance.state}</name></currentState><previousState><code>${STATE_CODES[previous]}</code><name>${previous}</name></previousState></item>`;
        });
        return xml(`<instancesSet>${changes.join('')}</instancesSet>`);
      }
      default:
        throw new ServiceError(
          'InvalidAction',
          `The action ${action} is not valid for this web service.`,
        );
    }
  }

  private requireHooks(): Ec2Hooks {
    if (!this.hooks) throw new Error('the local EC2 has no launch/terminate hooks');
    return this.hooks;
  }

  /** The instances named by ids, checked as EC2 checks them (malformed, not found). */
  private instancesOf(ids: string[], parameter: string): Instance[] {
    if (ids.length === 0) {
      throw new ServiceError(
        'MissingParameter',
        `The request must contain the parameter ${parameter}`,
      );
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
    return ids.map((id) => this.fleet.get(id));
  }

  private describeInstances(form: Map<string, string>, requestId: string): string {
    checkFilterValueLimit(form);
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
    return `<item><reservationId>r-${instance.id.slice(2)}</reservationId><ownerId>${ACCOUNT_ID}</ownerId><groupSet/><instancesSet>${this.instanceXml(instance)}</instancesSet></item>`;
  }

  private instanceXml(instance: Instance): string {
    const tags = Object.entries(instance.tags)
      .map(
        ([key, value]) =>
          `<item><key>${xmlEscape(key)}</key><value>${xmlEscape(value)}</value></item>`,
      )
      .join('');
    const hostname = `ip-${instance.privateIp.replace(/\./g, '-')}.${this.region}.compute.internal`;
    return (
      `<item><instanceId>${instance.id}</instanceId><imageId>ami-0123456789abcdef0</imageId>` +
      `<instanceState><code>${STATE_CODES[instance.state]}</code><name>${instance.state}</name></instanceState>` +
      `<privateDnsName>${instance.state === 'terminated' ? '' : hostname}</privateDnsName><dnsName/>` +
      `<instanceType>t3.micro</instanceType><launchTime>${instance.launchTime.toISOString()}</launchTime>` +
      `<placement><availabilityZone>${this.region}a</availabilityZone><tenancy>default</tenancy></placement>` +
      `<privateIpAddress>${instance.privateIp}</privateIpAddress><architecture>x86_64</architecture>` +
      `<rootDeviceType>ebs</rootDeviceType><platformDetails>Linux/UNIX</platformDetails>` +
      `<tagSet>${tags}</tagSet></item>`
    );
  }
}

/**
 * EC2 refuses a call whose filters hold more than 200 values in all, with a 400
 * FilterLimitExceeded: "The maximum number of filter values specified on a single call is 200"
 * (the error real clients report, e.g. github.com/convox/rack/issues/2205 for DescribeInstances
 * with one instance-id filter of more ids, and gjbae1212/gossm#31). Counted over every filter of
 * the call, as the message says.
 */
const MAX_FILTER_VALUES = 200;
function checkFilterValueLimit(form: Map<string, string>): void {
  let values = 0;
  for (let n = 1; form.has(`Filter.${n}.Name`); n += 1) {
    values += indexed(form, `Filter.${n}.Value`).length;
  }
  if (values > MAX_FILTER_VALUES) {
    throw new ServiceError(
      'FilterLimitExceeded',
      `The maximum number of filter values specified on a single call is ${MAX_FILTER_VALUES}`,
    );
  }
}

function indexed(form: Map<string, string>, prefix: string): string[] {
  const values: string[] = [];
  for (let n = 1; form.has(`${prefix}.${n}`); n += 1)
    values.push(form.get(`${prefix}.${n}`) as string);
  return values;
}

/** An EC2 filter value: case-sensitive, with * and ? wildcards (API_Filter.html). */
function wildcard(value: string): RegExp {
  return new RegExp(
    `^${value
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
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
