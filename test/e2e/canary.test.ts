import { randomBytes } from 'node:crypto';
import { DynamoDBClient, paginateScan } from '@aws-sdk/client-dynamodb';
import {
  GetCommandInvocationCommand,
  paginateListCommandInvocations,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import {
  DEV_1,
  PROD_1,
  PROD_2,
  PROD_3,
  PROD_UNMANAGED,
  rolloutOfChange,
  SECRETS_FILE,
  settledView,
  startTestCloud,
  testFleet,
} from './local-cloud.ts';

const CANARY = `s3cr3t-canary-${randomBytes(8).toString('hex')}`;
const VALUE = `<?php\nreturn ['db_password' => '${CANARY}'];\n`;

describe('the secret value never leaves Parameter Store except onto the instances', () => {
  let cloud: LocalCloud;
  let rolloutId: string;
  /** Everything the cloud captured, by where it came from. */
  const captured = new Map<string, string>();
  const capture = (where: string, value: unknown) =>
    captured.set(where, typeof value === 'string' ? value : JSON.stringify(value));

  beforeAll(async () => {
    cloud = await startTestCloud(
      testFleet().map((spec) => {
        // Fails its first fetch: retried, then Success.
        if (spec.id === PROD_2) return { ...spec, faults: { fetchFailures: 1 } };
        // No apache user: chown fails, exit 73 WriteFailed, permanent.
        if (spec.id === PROD_3) return { ...spec, users: ['root', 'nobody'] };
        return spec;
      }),
    );
    cloud.putParameter('/prod/env.php', VALUE);
    rolloutId = await rolloutOfChange(cloud, 0);
    const view = await settledView(cloud, rolloutId);
    await cloud.waitFor(
      () =>
        cloud.snsMessages().some((m) => m.messageAttributes.rolloutId?.StringValue === rolloutId),
      { message: 'the alert' },
    );
    // The rollout did what this test needs: a success, a permanent failure, a retry that worked.
    const byId = new Map(view.instances.map((i: any) => [i.instanceId, i]));
    expect(byId.get(PROD_1)).toMatchObject({ status: 'Success', attempts: 1 });
    expect(byId.get(PROD_2)).toMatchObject({ status: 'Success', attempts: 2 });
    expect(byId.get(PROD_3)).toMatchObject({ status: 'Failed', lastError: { exitCode: 73 } });
    expect(byId.get(PROD_UNMANAGED)).toMatchObject({ status: 'Unreachable' });
    // The on-call reads it all: status over HTTP and as a table, a dry run and a resync.
    await cloud.callApi(`/environments/prod/rollouts/${rolloutId}`);
    await cloud.callApi('/environments/prod/rollouts?parameter=/prod/env.php');
    await cloud.fn('status').invoke({ rolloutId });
    await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php', dryRun: true },
    });
    const resync = await cloud.callApi('/environments/prod/resync', {
      body: { parameter: '/prod/env.php', instanceIds: [PROD_1] },
    });
    await settledView(cloud, resync.json.rolloutId);
    await cloud.commandsSettled();
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('is on the disks of the instances that got the file (the scan can see it)', () => {
    expect(cloud.fleet.get(PROD_1).readFile(SECRETS_FILE).toString()).toContain(CANARY);
    expect(cloud.fleet.get(PROD_2).readFile(SECRETS_FILE).toString()).toContain(CANARY);
    expect(cloud.fleet.get(PROD_3).exists(SECRETS_FILE)).toBe(false);
    expect(cloud.fleet.get(DEV_1).exists(SECRETS_FILE)).toBe(false);
  });

  it('is nowhere in what the cloud captured', async () => {
    // Function logs, events, results and errors (SQS batches arrive in the events).
    for (const record of cloud.invocations()) {
      capture(`${record.functionName} ${record.requestId} logs`, record.logs.join(''));
      capture(`${record.functionName} ${record.requestId} event`, record.event);
      capture(`${record.functionName} ${record.requestId} result`, record.result ?? null);
      capture(`${record.functionName} ${record.requestId} error`, record.error ?? null);
    }
    // SNS messages.
    for (const message of cloud.snsMessages()) capture(`sns ${message.messageId}`, message);
    // Every DynamoDB item of every table.
    const dynamodb = new DynamoDBClient(cloud.clientConfig('dynamodb'));
    for (const [logicalId] of cloud.stack.resources('AWS::DynamoDB::Table')) {
      const table = cloud.stack.physicalName(logicalId);
      let items = 0;
      for await (const page of paginateScan({ client: dynamodb }, { TableName: table })) {
        for (const item of page.Items ?? []) capture(`dynamodb ${table} ${items++}`, item);
      }
      expect(items, table).toBeGreaterThan(0);
    }
    dynamodb.destroy();
    // Every SQS message, still queued or already consumed.
    for (const queue of cloud.sqs.queues.values()) {
      for (const message of [...queue.messages, ...queue.deleted]) {
        capture(`sqs ${queue.name} ${message.messageId}`, message);
      }
    }
    // Every command: its parameters and each invocation's output, as stored and through the API.
    const ssm = new SSMClient({ ...cloud.clientConfig('ssm'), maxAttempts: 1 });
    for (const command of cloud.ssm.commands.values()) {
      capture(`command ${command.commandId} parameters`, [command.parameters, command.comment]);
      for (const invocation of command.invocations.values()) {
        capture(`command ${command.commandId} ${invocation.instanceId}`, invocation);
        const api = await ssm
          .send(
            new GetCommandInvocationCommand({
              CommandId: command.commandId,
              InstanceId: invocation.instanceId,
            }),
          )
          .catch((error: Error) => ({ error: error.name }));
        capture(`GetCommandInvocation ${command.commandId} ${invocation.instanceId}`, api);
      }
      for await (const page of paginateListCommandInvocations(
        { client: ssm },
        { CommandId: command.commandId, Details: true },
      )) {
        capture(`ListCommandInvocations ${command.commandId}`, page.CommandInvocations);
      }
    }
    ssm.destroy();
    // Every EventBridge event, and every HTTP API request and response.
    for (const event of cloud.events()) capture(`event ${event.id}`, event);
    for (const request of cloud.apiRequests()) capture(`api ${request.requestId}`, request);

    // Assert: a lot was captured, and none of it holds the value.
    expect(captured.size).toBeGreaterThan(50);
    const leaks = [...captured].filter(([, text]) => text.includes(CANARY)).map(([where]) => where);
    expect(leaks).toEqual([]);
  });
});
