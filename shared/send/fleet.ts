import { type EC2Client, type Instance, paginateDescribeInstances } from '@aws-sdk/client-ec2';
import { paginateDescribeInstanceInformation, type SSMClient } from '@aws-sdk/client-ssm';
import { chunk, mapSettled } from '../platform/chunk.ts';

// DescribeInstances returns at most 1,000 instances a page; DescribeInstanceInformation at most
// 50, and its InstanceIds filter takes at most 50 ids
// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html,
//  https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeInstanceInformation.html).
const EC2_PAGE_SIZE = 1000;
// EC2 refuses a call with more than 200 filter values in all: 400 FilterLimitExceeded, "The
// maximum number of filter values specified on a single call is 200" (as real clients report it:
// github.com/convox/rack/issues/2205, github.com/gjbae1212/gossm/issues/31).
const MAX_FILTER_VALUES = 200;
const SSM_PAGE_SIZE = 50;
// DescribeInstanceInformation calls in flight; the SDK's adaptive retry absorbs throttling.
const DESCRIBE_CALLS_IN_FLIGHT = 8;

/** Why a tagged, running instance cannot be sent a command. */
export type UnreachableReason = 'NotManagedBySSM' | 'ConnectionLost' | 'Inactive' | 'NotOnline';

export interface UnreachableInstance {
  instanceId: string;
  reason: UnreachableReason;
}

export interface Targets {
  /** Running, tagged, SSM-managed and Online: these get a command. */
  reachable: string[];
  /** Running and tagged, but SSM cannot reach them now: reported, never silently dropped. */
  unreachable: UnreachableInstance[];
}

export interface TargetQuery {
  tagKey: string;
  environment: string;
  /** Restrict to these ids (each must still carry the tag and be running). */
  instanceIds?: string[];
}

/**
 * Finds the running instances tagged `<tagKey>=<environment>` and splits them by whether SSM
 * can reach them. ceil(N/1000) DescribeInstances pages, ceil(N/50) DescribeInstanceInformation
 * calls, nothing per instance. Throws the SDK error if either API fails after retries.
 */
export async function resolveTargets(
  clients: { ec2: EC2Client; ssm: SSMClient },
  query: TargetQuery,
): Promise<Targets> {
  const running = await runningTaggedInstances(clients.ec2, query);
  const pingStatus = await pingStatusOf(clients.ssm, running);
  const reachable: string[] = [];
  const unreachable: UnreachableInstance[] = [];
  for (const instanceId of running) {
    const status = pingStatus.get(instanceId);
    if (status === 'Online') reachable.push(instanceId);
    else unreachable.push({ instanceId, reason: unreachableReason(status) });
  }
  return { reachable, unreachable };
}

/**
 * Whether any running instance carries the environment's tag: one DescribeInstances call of
 * the smallest page, whatever the fleet's size (in practice). Throws the SDK error.
 */
export async function hasRunningInstance(
  ec2: EC2Client,
  query: Pick<TargetQuery, 'tagKey' | 'environment'>,
): Promise<boolean> {
  const pages = paginateDescribeInstances(
    { client: ec2, pageSize: 5 },
    {
      Filters: [
        { Name: `tag:${query.tagKey}`, Values: [query.environment] },
        { Name: 'instance-state-name', Values: ['running'] },
      ],
      // DescribeInstances' smallest MaxResults is 5 (same API reference as above). A page may
      // come back empty with a NextToken, so follow it until an instance shows or none is left.
      MaxResults: 5,
    },
  );
  for await (const page of pages) {
    if ((page.Reservations ?? []).some((r) => (r.Instances ?? []).length > 0)) return true;
  }
  return false;
}

async function runningTaggedInstances(ec2: EC2Client, query: TargetQuery): Promise<string[]> {
  const filters = [
    { Name: `tag:${query.tagKey}`, Values: [query.environment] },
    { Name: 'instance-state-name', Values: ['running'] },
  ];
  if (query.instanceIds === undefined) return [...(await describeRunning(ec2, filters))].sort();
  // With explicit ids, filter on instance-id instead of passing InstanceIds: InstanceIds fails
  // the whole call (InvalidInstanceID.NotFound) for one unknown id, and cannot be paginated.
  // EC2 refuses more than 200 filter values in one call (FilterLimitExceeded), the two above
  // included: a rollback of thousands of instances names them in calls of 198, a few in flight.
  const results = await mapSettled(
    chunk(
      query.instanceIds,
      MAX_FILTER_VALUES - filters.reduce((sum, f) => sum + f.Values.length, 0),
    ),
    DESCRIBE_CALLS_IN_FLIGHT,
    (ids) => describeRunning(ec2, [...filters, { Name: 'instance-id', Values: ids }]),
  );
  const ids = new Set<string>();
  for (const result of results) {
    if (result.status === 'rejected') throw result.reason;
    for (const id of result.value) ids.add(id);
  }
  return [...ids].sort();
}

/** The ids of the instances these filters match, every page. Throws the SDK error. */
async function describeRunning(
  ec2: EC2Client,
  filters: Array<{ Name: string; Values: string[] }>,
): Promise<Set<string>> {
  return new Set((await describeMatching(ec2, filters)).keys());
}

/** The instances these filters match, by id, every page of 1,000. Throws the SDK error. */
async function describeMatching(
  ec2: EC2Client,
  filters: Array<{ Name: string; Values: string[] }>,
  into = new Map<string, Instance>(),
): Promise<Map<string, Instance>> {
  const pages = paginateDescribeInstances(
    { client: ec2, pageSize: EC2_PAGE_SIZE },
    { Filters: filters, MaxResults: EC2_PAGE_SIZE },
  );
  for await (const page of pages) {
    for (const reservation of page.Reservations ?? []) {
      for (const instance of reservation.Instances ?? []) {
        if (instance.InstanceId !== undefined) into.set(instance.InstanceId, instance);
      }
    }
  }
  return into;
}

async function pingStatusOf(ssm: SSMClient, instanceIds: string[]): Promise<Map<string, string>> {
  const status = new Map<string, string>();
  // Independent calls (one per 50 ids), a few in flight: 200 of them for 10,000 instances.
  const results = await mapSettled(
    chunk(instanceIds, SSM_PAGE_SIZE),
    DESCRIBE_CALLS_IN_FLIGHT,
    async (ids) => {
      const pages = paginateDescribeInstanceInformation(
        { client: ssm, pageSize: SSM_PAGE_SIZE },
        { Filters: [{ Key: 'InstanceIds', Values: ids }], MaxResults: SSM_PAGE_SIZE },
      );
      for await (const page of pages) {
        for (const info of page.InstanceInformationList ?? []) {
          if (info.InstanceId !== undefined) status.set(info.InstanceId, info.PingStatus ?? '');
        }
      }
    },
  );
  const failed = results.find((result) => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return status;
}

function unreachableReason(pingStatus: string | undefined): UnreachableReason {
  switch (pingStatus) {
    case undefined:
      return 'NotManagedBySSM';
    case 'ConnectionLost':
    case 'Inactive':
      return pingStatus;
    default:
      return 'NotOnline';
  }
}

/**
 * The EC2 view of these instances, by id, whatever their state; ids EC2 no longer lists are
 * absent. One paginated DescribeInstances per 200 ids. Throws the SDK error.
 */
export async function describeInstancesById(
  ec2: EC2Client,
  instanceIds: readonly string[],
): Promise<Map<string, Instance>> {
  const found = new Map<string, Instance>();
  for (const ids of chunk([...new Set(instanceIds)], MAX_FILTER_VALUES)) {
    await describeMatching(ec2, [{ Name: 'instance-id', Values: ids }], found);
  }
  return found;
}
