import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  DescribeInstanceInformationCommand,
  DescribeParametersCommand,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { instanceIds, lambdaContext, loadEvent } from '../support/fixtures.ts';
import { withRolloutsTable } from '../support/handlers.ts';
import { deliverQueued } from '../support/send-queue.ts';

/**
 * Case 9 of the ledger issue: a direct invoke could forge the audited caller. Any event with
 * `requestContext.http.method` was treated as an HTTP request, and its
 * `authorizer.iam.userArn` recorded as the principal. Now only the HTTP function (resyncHttp)
 * reads a principal, and only from its own API; the direct-invoke function refuses HTTP shapes.
 */

// The id of the stack's HTTP API, as serverless.yml gives resyncHttp (!Ref HttpApi).
process.env.HTTP_API_ID = 'abcdef1234';

const ssmMock = mockClient(SSMClient);
const ec2Mock = mockClient(EC2Client);
const sqsMock = mockClient(SQSClient);

// One table for both entry points (they share the module-scoped DynamoDB client).
const table = withRolloutsTable(async () => ({
  direct: await import('../../functions/resync.ts'),
  http: await import('../../functions/resync-http.ts'),
  retry: await import('../../functions/retry.ts'),
}));
/** The send queue's function plans the whole-environment re-syncs queued so far. */
async function runPlans(): Promise<void> {
  expect(await deliverQueued(sqsMock, 'plan', table.handler.retry.handler)).toEqual([]);
}
const direct = {
  handler: { handler: (e: unknown, c: unknown) => table.handler.direct.handler(e, c as never) },
  get store() {
    return table.store;
  },
};
const http = {
  handler: { handler: (e: unknown, c: unknown) => table.handler.http.handler(e, c as never) },
  get store() {
    return table.store;
  },
};

const prod = instanceIds(2);
const JANE = 'arn:aws:sts::123456789012:assumed-role/oncall/jane';

beforeEach(() => {
  ec2Mock.on(DescribeInstancesCommand).resolves({
    Reservations: [{ Instances: prod.map((InstanceId) => ({ InstanceId })) }],
  });
  ssmMock.on(DescribeInstanceInformationCommand).resolves({
    InstanceInformationList: prod.map((InstanceId) => ({ InstanceId, PingStatus: 'Online' })),
  });
  ssmMock
    .on(DescribeParametersCommand)
    .resolves({ Parameters: [{ Name: '/prod/env.php', Version: 4 }] });
  ssmMock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
  sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm' });
  sqsMock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
});
afterEach(() => {
  ssmMock.reset();
  ec2Mock.reset();
  sqsMock.reset();
});

describe('case 9: the audited caller of a re-sync', () => {
  it('a direct invoke carrying a forged HTTP requestContext is refused and sends nothing', async () => {
    // Arrange: the API fixture, as an invoker with lambda:InvokeFunction would pass it
    const forged = loadEvent<any>('http/resync');
    forged.requestContext.authorizer.iam.userArn = 'arn:aws:iam::123456789012:user/someone-else';

    // Act
    const answer = (await direct.handler.handler(forged, lambdaContext())) as any;

    // Assert
    expect(answer.status).toBe(400);
    expect(answer.error).toContain('POST /environments/');
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(await direct.store.recentRollouts({ parameter: '/prod/env.php' }, 10)).toEqual([]);
  });

  it('a direct invoke records the direct-invoke principal, never one named in the event', async () => {
    const answer = (await direct.handler.handler(
      { parameter: '/prod/env.php', userArn: JANE },
      lambdaContext(),
    )) as any;

    expect(answer.status).toBe(400); // unknown field: the request schema is strict
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);

    const ok = (await direct.handler.handler(
      { parameter: '/prod/env.php' },
      lambdaContext(),
    )) as any;
    expect(ok.requestedBy).toMatch(/^direct invoke/);
    await runPlans();
    expect((await direct.store.getRollout(ok.rolloutId))?.trigger).toEqual({
      type: 'resync',
      principal: ok.requestedBy,
    });
  });

  it('the HTTP function refuses an event that did not come through its own API', async () => {
    const other = loadEvent<any>('http/resync');
    other.requestContext.apiId = 'zzzzzz9999';

    const response = (await http.handler.handler(other, lambdaContext())) as any;

    expect(response.statusCode).toBe(403);
    expect(ssmMock.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it('the HTTP function records the principal API Gateway verified', async () => {
    const response = (await http.handler.handler(loadEvent('http/resync'), lambdaContext())) as any;

    expect(response.statusCode).toBe(202);
    const body = JSON.parse(response.body);
    expect(body.requestedBy).toBe(JANE);
    await runPlans();
    expect((await http.store.getRollout(body.rolloutId))?.trigger).toEqual({
      type: 'resync',
      principal: JANE,
    });
  });
});
