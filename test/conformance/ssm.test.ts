/**
 * SSM as real clients see it (AWS CLI with --endpoint-url, and the JS SDK), against the
 * Systems Manager API reference: API_PutParameter.html (Tags with Overwrite: ValidationException;
 * reserved names), API_GetParameter.html (name or ARN, :version or :label selectors),
 * API_GetParametersByPath.html, API_DeleteParameters.html, API_LabelParameterVersion.html,
 * API_DescribeParameters.html (Filters and ParameterFilters), API_ListCommands.html with
 * API_CommandFilter.html (Status), API_CancelCommand.html, API_ListDocuments.html,
 * API_DescribeDocument.html.
 */
import {
  CancelCommandCommand,
  DescribeParametersCommand,
  GetCommandInvocationCommand,
  GetParameterCommand,
  GetParametersByPathCommand,
  LabelParameterVersionCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  PutParameterCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCloud } from '../e2e/local-cloud.ts';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { errorCode, findClis, runCli } from './clients.ts';

const clis = findClis();

/** The document's parameters for one file, as the service sends them (shared/commands.ts). */
const DOCUMENT_PARAMETERS = {
  ParameterName: ['/conf/a'],
  DestinationPath: ['/etc/app/conformance.env'],
  FileOwner: ['root'],
  FileGroup: ['root'],
  FileMode: ['0400'],
  Format: ['raw'],
  Backups: ['1'],
};

describe('SSM conformance', () => {
  let cloud: LocalCloud;
  let ssm: SSMClient;

  beforeAll(async () => {
    // No fleet: no rollout runs, parameters are only data here.
    cloud = await startTestCloud([]);
    ssm = new SSMClient(cloud.clientConfig('ssm'));
    cloud.putParameter('/conf/a', 's3cr3t-for-tests-a');
    cloud.putParameter('/conf/b', 's3cr3t-for-tests-b1');
    cloud.putParameter('/conf/b', 's3cr3t-for-tests-b2');
    cloud.putParameter('/conf/deep/c', 's3cr3t-for-tests-c');
    cloud.putParameter('/other/d', 'plain', { type: 'String' });
  });

  afterAll(async () => {
    ssm?.destroy();
    await cloud?.stop();
  });

  describe('with the JS SDK', () => {
    it('GetParametersByPath: one level or recursive, decrypted on request, 10 a page at most', async () => {
      const one = await ssm.send(
        new GetParametersByPathCommand({ Path: '/conf', WithDecryption: true }),
      );
      expect(one.Parameters?.map((p) => [p.Name, p.Value])).toEqual([
        ['/conf/a', 's3cr3t-for-tests-a'],
        ['/conf/b', 's3cr3t-for-tests-b2'],
      ]);
      const all = await ssm.send(
        new GetParametersByPathCommand({ Path: '/conf', Recursive: true }),
      );
      expect(all.Parameters?.map((p) => p.Name)).toEqual(['/conf/a', '/conf/b', '/conf/deep/c']);
      expect(all.Parameters?.[0]?.Value).not.toBe('s3cr3t-for-tests-a');
      await expect(
        ssm.send(new GetParametersByPathCommand({ Path: '/conf', MaxResults: 11 })),
      ).rejects.toMatchObject({ name: 'ValidationException' });
    });

    it('GetParameter takes an ARN and a label selector; labels move between versions', async () => {
      const arn = cloud.ssm.parameterArn('/conf/b');
      const byArn = await ssm.send(new GetParameterCommand({ Name: arn, WithDecryption: true }));
      expect(byArn.Parameter).toMatchObject({ Name: '/conf/b', Version: 2 });
      const labelled = await ssm.send(
        new LabelParameterVersionCommand({
          Name: '/conf/b',
          ParameterVersion: 1,
          Labels: ['blue', '1bad', 'awsx'],
        }),
      );
      expect(labelled).toMatchObject({ ParameterVersion: 1, InvalidLabels: ['1bad', 'awsx'] });
      const byLabel = await ssm.send(
        new GetParameterCommand({ Name: '/conf/b:blue', WithDecryption: true }),
      );
      expect(byLabel.Parameter).toMatchObject({
        Version: 1,
        Value: 's3cr3t-for-tests-b1',
        Selector: ':blue',
      });
      await ssm.send(new LabelParameterVersionCommand({ Name: '/conf/b', Labels: ['blue'] }));
      const moved = await ssm.send(new GetParameterCommand({ Name: '/conf/b:blue' }));
      expect(moved.Parameter?.Version).toBe(2);
      await expect(
        ssm.send(new GetParameterCommand({ Name: '/conf/b:green' })),
      ).rejects.toMatchObject({
        name: 'ParameterVersionNotFound',
      });
    });

    it('PutParameter refuses Tags with Overwrite, and a reserved name with AccessDenied', async () => {
      await expect(
        ssm.send(
          new PutParameterCommand({
            Name: '/conf/a',
            Value: 'x',
            Type: 'SecureString',
            Overwrite: true,
            Tags: [{ Key: 'team', Value: 'ops' }],
          }),
        ),
      ).rejects.toMatchObject({ name: 'ValidationException' });
      await expect(
        ssm.send(new PutParameterCommand({ Name: '/aws/reference/x', Value: 'x', Type: 'String' })),
      ).rejects.toMatchObject({ name: 'AccessDeniedException' });
      expect(cloud.ssm.currentParameter('/conf/a')?.Version).toBe(1);
    });

    it('DescribeParameters applies legacy Filters, and refuses them with ParameterFilters', async () => {
      const legacy = await ssm.send(
        new DescribeParametersCommand({ Filters: [{ Key: 'Type', Values: ['String'] }] }),
      );
      expect(legacy.Parameters?.map((p) => p.Name)).toEqual(['/other/d']);
      const byName = await ssm.send(
        new DescribeParametersCommand({ Filters: [{ Key: 'Name', Values: ['/prod'] }] }),
      );
      expect(byName.Parameters).toEqual([]);
      await expect(
        ssm.send(
          new DescribeParametersCommand({
            Filters: [{ Key: 'Type', Values: ['String'] }],
            ParameterFilters: [{ Key: 'Name', Values: ['/other/d'] }],
          }),
        ),
      ).rejects.toMatchObject({ name: 'ValidationException' });
    });

    it('CancelCommand cancels a command in progress; ListCommands filters by Status', async () => {
      // Arrange: an untagged, managed instance whose agent is offline, so its command stays in progress
      const instance = cloud.fleet.add({ tags: { Name: 'conformance' } });
      cloud.fleet.setOnline(instance.id, false);
      const sent = await ssm.send(
        new SendCommandCommand({
          DocumentName: cloud.documentName,
          InstanceIds: [instance.id],
          Parameters: DOCUMENT_PARAMETERS,
          TimeoutSeconds: 3600,
        }),
      );
      const commandId = sent.Command?.CommandId as string;
      const listed = async (status: string) =>
        (
          await ssm.send(new ListCommandsCommand({ Filters: [{ key: 'Status', value: status }] }))
        ).Commands?.map((command) => command.CommandId);
      expect(await listed('InProgress')).toEqual([commandId]);

      // Act
      await ssm.send(new CancelCommandCommand({ CommandId: commandId }));

      // Assert
      const invocation = await ssm.send(
        new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instance.id }),
      );
      expect(invocation).toMatchObject({ Status: 'Cancelled', StatusDetails: 'Cancelled' });
      expect(await listed('Cancelled')).toEqual([commandId]);
      expect(await listed('InProgress')).toEqual([]);
      await expect(
        ssm.send(new CancelCommandCommand({ CommandId: '00000000-0000-4000-8000-000000000000' })),
      ).rejects.toMatchObject({ name: 'InvalidCommandId' });
    });
    it('ListCommands matches Status, not StatusDetails: a Failed (Incomplete) command is listed', async () => {
      // Arrange: one instance that may read /conf/a and one that may not (its fetch fails)
      const reader = cloud.fleet.add({ tags: { Environment: 'conf', Name: 'reads' } });
      const denied = cloud.fleet.add({ tags: { Name: 'denied' } });
      const sent = await ssm.send(
        new SendCommandCommand({
          DocumentName: cloud.documentName,
          InstanceIds: [reader.id, denied.id],
          Parameters: DOCUMENT_PARAMETERS,
          MaxErrors: '1',
        }),
      );
      const commandId = sent.Command?.CommandId as string;
      await cloud.commandsSettled();

      // Act
      const failed = await ssm.send(
        new ListCommandsCommand({ Filters: [{ key: 'Status', value: 'Failed' }] }),
      );

      // Assert: one of two failed within MaxErrors 1: Status Failed, StatusDetails Incomplete
      const command = failed.Commands?.find((c) => c.CommandId === commandId);
      expect(command).toMatchObject({ Status: 'Failed', StatusDetails: 'Incomplete' });
      const invocations = await ssm.send(
        new ListCommandInvocationsCommand({
          CommandId: commandId,
          Filters: [{ key: 'Status', value: 'Failed' }],
        }),
      );
      expect(invocations.CommandInvocations?.map((i) => i.InstanceId)).toEqual([denied.id]);
    });
  });

  describe.each(clis)('with the AWS CLI $version ($path)', (cli) => {
    const aws = (...args: string[]) =>
      runCli(cli, cloud.endpoints.ssm, cloud.clientEnv, ['ssm', ...args]);

    it('reads, lists and deletes parameters as the runbook does', async () => {
      cloud.putParameter('/cli/one', 's3cr3t-for-tests-1');
      cloud.putParameter('/cli/two', 's3cr3t-for-tests-2');
      const [got, byPath, described, history] = await Promise.all([
        aws(
          'get-parameter',
          '--name',
          '/cli/one',
          '--with-decryption',
          '--query',
          'Parameter.[Version,Value]',
          '--output',
          'text',
        ),
        aws('get-parameters-by-path', '--path', '/cli', '--query', 'Parameters[].Name'),
        aws('describe-parameters', '--parameter-filters', 'Key=Path,Values=/cli'),
        aws('get-parameter-history', '--name', '/cli/one', '--query', 'Parameters[].Version'),
      ]);
      expect(got.stdout).toBe('1\ts3cr3t-for-tests-1\n');
      expect(byPath.json).toEqual(['/cli/one', '/cli/two']);
      expect(described.json.Parameters.map((p: any) => p.Name)).toEqual(['/cli/one', '/cli/two']);
      expect(history.json).toEqual([1]);
      const deleted = await aws('delete-parameters', '--names', '/cli/one', '/cli/nope');
      expect(deleted.json).toEqual({
        DeletedParameters: ['/cli/one'],
        InvalidParameters: ['/cli/nope'],
      });
      expect(cloud.ssm.currentParameter('/cli/one')).toBeUndefined();
    });

    it('answers errors with SSM codes, and an unknown operation in AWS shape', async () => {
      const [missing, reserved, tagsAndOverwrite, unknown] = await Promise.all([
        aws('get-parameter', '--name', '/cli/none'),
        aws('put-parameter', '--name', '/ssm/x', '--value', 'x', '--type', 'String'),
        aws(
          'put-parameter',
          '--name',
          '/cli/two',
          '--value',
          'x',
          '--type',
          'String',
          '--overwrite',
          '--tags',
          'Key=a,Value=b',
        ),
        aws('list-associations'),
      ]);
      expect(errorCode(missing)).toBe('ParameterNotFound');
      expect(errorCode(reserved)).toBe('AccessDeniedException');
      expect(errorCode(tagsAndOverwrite)).toBe('ValidationException');
      expect(errorCode(unknown)).toBe('UnknownOperationException');
      for (const result of [missing, reserved, tagsAndOverwrite, unknown])
        expect(result.code).not.toBe(0);
    });

    it('lists and describes the stack’s document', async () => {
      const [listed, described, missing] = await Promise.all([
        aws('list-documents', '--filters', 'Key=Owner,Values=Self'),
        aws('describe-document', '--name', cloud.documentName),
        aws('describe-document', '--name', 'NoSuchDocument'),
      ]);
      expect(listed.json.DocumentIdentifiers.map((d: any) => d.Name)).toEqual([cloud.documentName]);
      expect(described.json.Document).toMatchObject({
        Name: cloud.documentName,
        DocumentType: 'Command',
        Status: 'Active',
        HashType: 'Sha256',
      });
      expect(described.json.Document.Parameters.map((p: any) => p.Name)).toContain('ParameterName');
      expect(errorCode(missing)).toBe('InvalidDocument');
    });
  });
});
