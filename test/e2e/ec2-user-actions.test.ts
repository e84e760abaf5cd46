/**
 * A user's own EC2 actions drive the service end to end, as in AWS: RunInstances and
 * TerminateInstances emit "EC2 Instance State-change Notification" events, CreateTags and
 * DeleteTags the `aws.tag` "Tag Change on Resource" event
 * (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html,
 * https://docs.aws.amazon.com/tag-editor/latest/userguide/monitor-tag-changes.html). An instance
 * launched without the environment tag gets nothing; once tagged, the bootstrap gives it its file.
 */
import {
  CreateTagsCommand,
  DescribeTagsCommand,
  EC2Client,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AwsEvent, LocalCloud } from '../local-cloud/cloud.ts';
import {
  rolloutOfChange,
  SECRETS_FILE,
  settledView,
  startTestCloud,
  testFleet,
} from './local-cloud.ts';

const VALUE = 'DB_PASSWORD=s3cr3t-for-tests-tagged-later\n';

describe('an instance launched untagged and tagged later, by the user, end to end', () => {
  let cloud: LocalCloud;
  let ec2: EC2Client;
  let instanceId: string;
  const eventsFor = (type: string) =>
    cloud
      .events()
      .filter(
        (event: AwsEvent) =>
          event['detail-type'] === type &&
          event.resources.some((resource) => resource.endsWith(`/${instanceId}`)),
      );

  beforeAll(async () => {
    cloud = await startTestCloud(testFleet());
    ec2 = new EC2Client(cloud.clientConfig('ec2'));
    cloud.putParameter('/prod/env.php', VALUE);
    await settledView(cloud, await rolloutOfChange(cloud, 0));
    const launched = await ec2.send(
      new RunInstancesCommand({
        ImageId: 'ami-0123456789abcdef0',
        InstanceType: 't3.micro',
        MinCount: 1,
        MaxCount: 1,
        TagSpecifications: [
          { ResourceType: 'instance', Tags: [{ Key: 'Name', Value: 'web-new' }] },
        ],
      }),
    );
    instanceId = launched.Instances?.[0]?.InstanceId as string;
    await cloud.waitFor(() => cloud.fleet.get(instanceId).state === 'running', {
      message: 'the new instance to run',
    });
    // The running event reached the bootstrap, which found no environment tag.
    await cloud.waitFor(
      () =>
        cloud
          .invocations('bootstrap')
          .some((record) => JSON.stringify(record.event).includes(instanceId)),
      { message: 'the bootstrap to see the untagged instance' },
    );
  }, 120_000);

  afterAll(async () => {
    ec2?.destroy();
    await cloud?.stop();
  });

  it('launching emits pending then running state-change events, and sends nothing', () => {
    expect(
      eventsFor('EC2 Instance State-change Notification').map((event) => event.detail.state),
    ).toEqual(['pending', 'running']);
    expect(() => cloud.fleet.get(instanceId).readFile(SECRETS_FILE)).toThrow();
    expect(
      [...cloud.ssm.commands.values()].filter((command) =>
        command.instanceIds.includes(instanceId),
      ),
    ).toEqual([]);
  });

  it('tagging it Environment=prod emits Tag Change on Resource and delivers the file', async () => {
    // Act
    await ec2.send(
      new CreateTagsCommand({
        Resources: [instanceId],
        Tags: [{ Key: 'Environment', Value: 'prod' }],
      }),
    );

    // Assert
    const [tagEvent] = eventsFor('Tag Change on Resource');
    expect(tagEvent).toMatchObject({
      source: 'aws.tag',
      detail: {
        'changed-tag-keys': ['Environment'],
        service: 'ec2',
        'resource-type': 'instance',
        tags: { Name: 'web-new', Environment: 'prod' },
      },
    });
    await cloud.waitFor(
      () => {
        try {
          return cloud.fleet.get(instanceId).readFile(SECRETS_FILE).toString() === VALUE;
        } catch {
          return false;
        }
      },
      { message: 'the tagged instance to get its file' },
    );
    const tags = await ec2.send(
      new DescribeTagsCommand({ Filters: [{ Name: 'resource-id', Values: [instanceId] }] }),
    );
    expect(tags.Tags?.map((tag) => [tag.Key, tag.Value]).sort()).toEqual([
      ['Environment', 'prod'],
      ['Name', 'web-new'],
    ]);
  });

  it('terminating it emits shutting-down then terminated', async () => {
    const answer = await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
    expect(answer.TerminatingInstances?.[0]).toMatchObject({
      InstanceId: instanceId,
      PreviousState: { Name: 'running' },
      CurrentState: { Name: 'shutting-down' },
    });
    await cloud.waitFor(() => cloud.fleet.get(instanceId).state === 'terminated', {
      message: 'the instance to terminate',
    });
    expect(
      eventsFor('EC2 Instance State-change Notification').map((event) => event.detail.state),
    ).toEqual(['pending', 'running', 'shutting-down', 'terminated']);
  });

  it('refuses with DryRunOperation instead of acting on a dry run', async () => {
    const before = cloud.fleet.list().length;
    await expect(
      ec2.send(
        new RunInstancesCommand({
          ImageId: 'ami-0123456789abcdef0',
          MinCount: 1,
          MaxCount: 1,
          DryRun: true,
        }),
      ),
    ).rejects.toMatchObject({ name: 'DryRunOperation' });
    expect(cloud.fleet.list()).toHaveLength(before);
  });
});
