/**
 * EC2 and SNS as real clients see them (every AWS CLI found, with --endpoint-url; the JS SDK).
 * EC2: API_DescribeInstances.html, API_RunInstances.html, API_TerminateInstances.html,
 * API_CreateTags.html, API_DeleteTags.html, API_DescribeTags.html; errors-overview.html
 * (DryRunOperation 412, InvalidInstanceID.NotFound / .Malformed, InvalidAction).
 * SNS: API_ListTopics.html, API_ListSubscriptions.html, CommonErrors.html (InvalidAction).
 */
import { DeleteTagsCommand, DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { ListSubscriptionsCommand, ListTopicsCommand, SNSClient } from '@aws-sdk/client-sns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROD_1, PROD_2, startTestCloud, testFleet } from '../e2e/local-cloud.ts';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { errorCode, findClis, runCli } from './clients.ts';

const clis = findClis();

describe('EC2 and SNS conformance', () => {
  let cloud: LocalCloud;
  let ec2: EC2Client;
  let sns: SNSClient;
  let topicArn: string;

  beforeAll(async () => {
    cloud = await startTestCloud(testFleet());
    ec2 = new EC2Client(cloud.clientConfig('ec2'));
    sns = new SNSClient(cloud.clientConfig('sns'));
    topicArn = [...cloud.sns.topics.keys()][0] as string;
  });

  afterAll(async () => {
    ec2?.destroy();
    sns?.destroy();
    await cloud?.stop();
  });

  describe('with the JS SDK', () => {
    it('DryRun answers DryRunOperation for a read too, and changes nothing', async () => {
      await expect(
        ec2.send(new DescribeInstancesCommand({ InstanceIds: [PROD_1], DryRun: true })),
      ).rejects.toMatchObject({ name: 'DryRunOperation', $metadata: { httpStatusCode: 412 } });
      await expect(
        ec2.send(new DeleteTagsCommand({ Resources: [PROD_1], DryRun: true })),
      ).rejects.toMatchObject({ name: 'DryRunOperation' });
      expect(cloud.fleet.get(PROD_1).tags.Environment).toBe('prod');
    });

    it('refuses more than 200 filter values in one call with FilterLimitExceeded; 200 pass', async () => {
      // Unknown ids in an instance-id filter only match nothing; their number is what counts.
      const ids = (n: number) =>
        Array.from({ length: n }, (_, i) => `i-0c${i.toString(16).padStart(15, '0')}`);
      const describe = (named: string[]) =>
        ec2.send(
          new DescribeInstancesCommand({
            Filters: [
              { Name: 'tag:Environment', Values: ['prod'] },
              { Name: 'instance-id', Values: [PROD_1, ...named] },
            ],
          }),
        );
      const found = await describe(ids(198));
      expect(found.Reservations?.flatMap((r) => r.Instances?.map((i) => i.InstanceId))).toEqual([
        PROD_1,
      ]);
      await expect(describe(ids(199))).rejects.toMatchObject({
        name: 'FilterLimitExceeded',
        message: 'The maximum number of filter values specified on a single call is 200',
        $metadata: { httpStatusCode: 400 },
      });
    });

    it('ListTopics and ListSubscriptions list the stack’s topic and its subscriptions', async () => {
      const topics = await sns.send(new ListTopicsCommand({}));
      expect(topics.Topics?.map((topic) => topic.TopicArn)).toEqual(
        [...cloud.sns.topics.keys()].sort(),
      );
      const subscriptions = await sns.send(new ListSubscriptionsCommand({}));
      expect(subscriptions.Subscriptions?.length).toBe(
        [...cloud.sns.topics.values()].reduce((sum, topic) => sum + topic.subscriptions.length, 0),
      );
    });
  });

  describe.each(clis)('with the AWS CLI $version ($path)', (cli) => {
    const ec2Cli = (...args: string[]) =>
      runCli(cli, cloud.endpoints.ec2, cloud.clientEnv, ['ec2', ...args]);
    const snsCli = (...args: string[]) =>
      runCli(cli, cloud.endpoints.sns, cloud.clientEnv, ['sns', ...args]);

    it('describes, tags and untags instances, with the tag-change events AWS emits', async () => {
      const before = cloud.events().length;
      const [described, tagged] = await Promise.all([
        ec2Cli(
          'describe-instances',
          '--filters',
          'Name=tag:Environment,Values=prod',
          'Name=instance-state-name,Values=running',
          '--query',
          'Reservations[].Instances[].InstanceId',
        ),
        ec2Cli('create-tags', '--resources', PROD_2, '--tags', 'Key=Team,Value=conformance'),
      ]);
      expect(described.json).toEqual(expect.arrayContaining([PROD_1, PROD_2]));
      expect(tagged.code).toBe(0);
      const tags = await ec2Cli(
        'describe-tags',
        '--filters',
        `Name=resource-id,Values=${PROD_2}`,
        'Name=key,Values=Team',
      );
      expect(tags.json.Tags).toEqual([
        { ResourceId: PROD_2, ResourceType: 'instance', Key: 'Team', Value: 'conformance' },
      ]);
      const untagged = await ec2Cli('delete-tags', '--resources', PROD_2, '--tags', 'Key=Team');
      expect(untagged.code).toBe(0);
      expect(cloud.fleet.get(PROD_2).tags.Team).toBeUndefined();
      const tagEvents = cloud
        .events()
        .slice(before)
        .filter((event) => event['detail-type'] === 'Tag Change on Resource');
      expect(tagEvents.map((event) => event.detail['changed-tag-keys'])).toEqual([
        ['Team'],
        ['Team'],
      ]);
    });

    it('answers EC2 errors with EC2 codes', async () => {
      const [dryRun, missing, malformed, unknown] = await Promise.all([
        ec2Cli('terminate-instances', '--instance-ids', PROD_1, '--dry-run'),
        ec2Cli('describe-instances', '--instance-ids', 'i-0123456789abcdef0'),
        ec2Cli('create-tags', '--resources', 'i-nope', '--tags', 'Key=a,Value=b'),
        ec2Cli('describe-vpcs'),
      ]);
      expect(errorCode(dryRun)).toBe('DryRunOperation');
      expect(cloud.fleet.get(PROD_1).state).toBe('running');
      expect(errorCode(missing)).toBe('InvalidInstanceID.NotFound');
      expect(errorCode(malformed)).toBe('InvalidInstanceID.Malformed');
      expect(errorCode(unknown)).toBe('InvalidAction');
    });

    it('lists topics and subscriptions; an unknown SNS action is InvalidAction', async () => {
      const [topics, subscriptions, unknown] = await Promise.all([
        snsCli('list-topics'),
        snsCli('list-subscriptions-by-topic', '--topic-arn', topicArn),
        snsCli('list-platform-applications'),
      ]);
      expect(topics.json.Topics.map((topic: any) => topic.TopicArn)).toContain(topicArn);
      expect(subscriptions.code).toBe(0);
      expect(errorCode(unknown)).toBe('InvalidAction');
    });
  });
});
