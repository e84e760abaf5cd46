import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveTargets } from '../../shared/send/fleet.ts';
import { instanceIds } from '../support/fixtures.ts';

const ec2Mock = mockClient(EC2Client);
const ssmMock = mockClient(SSMClient);
const clients = { ec2: new EC2Client({}), ssm: new SSMClient({}) };
const query = { tagKey: 'Environment', environment: 'prod' };

/** EC2 answers with the given instances, `pageSize` per page, linked by NextToken. */
function ec2Has(ids: string[], pageSize = 1000) {
  const pages = Math.max(1, Math.ceil(ids.length / pageSize));
  for (let page = 0; page < pages; page++) {
    const slice = ids.slice(page * pageSize, (page + 1) * pageSize);
    const reply = {
      Reservations: [{ Instances: slice.map((InstanceId) => ({ InstanceId })) }],
      ...(page + 1 < pages ? { NextToken: `page-${page + 1}` } : {}),
    };
    const input = page === 0 ? {} : { NextToken: `page-${page}` };
    ec2Mock.on(DescribeInstancesCommand, input).resolves(reply);
  }
}

/** SSM knows these instances with these ping statuses; answers per InstanceIds filter. */
function ssmKnows(status: Record<string, string>) {
  ssmMock.on(DescribeInstanceInformationCommand).callsFake((input) => {
    const wanted: string[] = input.Filters?.find((f: any) => f.Key === 'InstanceIds')?.Values ?? [];
    return {
      InstanceInformationList: wanted
        .filter((id) => status[id] !== undefined)
        .map((InstanceId) => ({ InstanceId, PingStatus: status[InstanceId] })),
    };
  });
}

afterEach(() => {
  ec2Mock.reset();
  ssmMock.reset();
});

describe('resolveTargets', () => {
  it('asks EC2 for running instances carrying the environment tag, 1,000 per page', async () => {
    ec2Has([]);
    ssmKnows({});
    await resolveTargets(clients, query);
    expect(ec2Mock.commandCalls(DescribeInstancesCommand)[0]?.args[0].input).toEqual({
      Filters: [
        { Name: 'tag:Environment', Values: ['prod'] },
        { Name: 'instance-state-name', Values: ['running'] },
      ],
      MaxResults: 1000,
    });
  });

  it('returns nothing and asks SSM nothing for an empty environment', async () => {
    ec2Has([]);
    ssmKnows({});
    const targets = await resolveTargets(clients, query);
    expect(targets).toEqual({ reachable: [], unreachable: [] });
    expect(ssmMock.commandCalls(DescribeInstanceInformationCommand)).toHaveLength(0);
  });

  it.each([1, 50, 51, 1000, 2500])(
    'follows every page for %i instances: ceil(n/1000) EC2 pages, ceil(n/50) SSM calls',
    async (n) => {
      // Arrange
      const ids = instanceIds(n);
      ec2Has(ids);
      ssmKnows(Object.fromEntries(ids.map((id) => [id, 'Online'])));
      // Act
      const targets = await resolveTargets(clients, query);
      // Assert
      expect(targets.reachable).toEqual(ids);
      expect(ec2Mock.commandCalls(DescribeInstancesCommand)).toHaveLength(Math.ceil(n / 1000));
      const ssmCalls = ssmMock.commandCalls(DescribeInstanceInformationCommand);
      expect(ssmCalls).toHaveLength(Math.ceil(n / 50));
      for (const call of ssmCalls) {
        expect(call.args[0].input.Filters?.[0]?.Values?.length).toBeLessThanOrEqual(50);
        expect(call.args[0].input.MaxResults).toBe(50);
      }
    },
  );

  it('follows EC2 NextToken when pages are smaller than asked', async () => {
    const ids = instanceIds(7);
    ec2Has(ids, 3);
    ssmKnows(Object.fromEntries(ids.map((id) => [id, 'Online'])));
    const targets = await resolveTargets(clients, query);
    expect(targets.reachable).toEqual(ids);
    expect(ec2Mock.commandCalls(DescribeInstancesCommand)).toHaveLength(3);
  });

  it('reports running instances SSM cannot reach instead of dropping them', async () => {
    // Arrange
    const [online, lost, inactive, unmanaged] = instanceIds(4);
    ec2Has([online!, lost!, inactive!, unmanaged!]);
    ssmKnows({ [online!]: 'Online', [lost!]: 'ConnectionLost', [inactive!]: 'Inactive' });
    // Act
    const targets = await resolveTargets(clients, query);
    // Assert
    expect(targets).toEqual({
      reachable: [online],
      unreachable: [
        { instanceId: lost, reason: 'ConnectionLost' },
        { instanceId: inactive, reason: 'Inactive' },
        { instanceId: unmanaged, reason: 'NotManagedBySSM' },
      ],
    });
  });

  it('restricts to given instance ids with an instance-id filter', async () => {
    const ids = instanceIds(2);
    ec2Has(ids);
    ssmKnows(Object.fromEntries(ids.map((id) => [id, 'Online'])));
    await resolveTargets(clients, { ...query, instanceIds: ids });
    expect(ec2Mock.commandCalls(DescribeInstancesCommand)[0]?.args[0].input.Filters).toContainEqual(
      {
        Name: 'instance-id',
        Values: ids,
      },
    );
  });

  it('names at most 198 ids a call (EC2 takes 200 filter values), and finds them all', async () => {
    // Arrange: 450 named ids, of which EC2 knows every other one as running and tagged.
    const ids = instanceIds(450);
    const known = new Set(ids.filter((_, i) => i % 2 === 0));
    ec2Mock.on(DescribeInstancesCommand).callsFake((input) => {
      const named: string[] = input.Filters.find((f: any) => f.Name === 'instance-id').Values;
      return {
        Reservations: [
          { Instances: named.filter((id) => known.has(id)).map((InstanceId) => ({ InstanceId })) },
        ],
      };
    });
    ssmKnows(Object.fromEntries(ids.map((id) => [id, 'Online'])));
    // Act
    const targets = await resolveTargets(clients, { ...query, instanceIds: ids });
    // Assert
    const calls = ec2Mock.commandCalls(DescribeInstancesCommand).map((c) => c.args[0].input);
    expect(calls.map((input) => input.Filters?.flatMap((f) => f.Values ?? []).length)).toEqual([
      200, 200, 56,
    ]);
    expect(
      calls.flatMap((input) => input.Filters?.find((f) => f.Name === 'instance-id')?.Values),
    ).toEqual(ids);
    expect(targets.reachable).toEqual([...known].sort());
  });

  it('throws when one of the named calls fails', async () => {
    ec2Mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [] })
      .rejects(Object.assign(new Error('throttled'), { name: 'RequestLimitExceeded' }));
    await expect(
      resolveTargets(clients, { ...query, instanceIds: instanceIds(400) }),
    ).rejects.toThrow('throttled');
  });

  it('asks nothing when restricted to no instances', async () => {
    const targets = await resolveTargets(clients, { ...query, instanceIds: [] });
    expect(targets).toEqual({ reachable: [], unreachable: [] });
    expect(ec2Mock.calls()).toHaveLength(0);
  });

  it('throws when EC2 cannot be read', async () => {
    ec2Mock
      .on(DescribeInstancesCommand)
      .rejects(Object.assign(new Error('denied'), { name: 'UnauthorizedOperation' }));
    await expect(resolveTargets(clients, query)).rejects.toThrow('denied');
  });
});
