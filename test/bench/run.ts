/**
 * `npm run bench`: one parameter change pushed to 1,000 prod instances on the local cloud, and
 * what it cost: SendCommand calls, DescribeInstances pages, DescribeInstanceInformation calls,
 * track invocations, DynamoDB item writes per instance and rollout-counter updates per batch,
 * wall time to settle. Checked against the targets of the tracking issue (issue 3).
 *
 * The agent runs in stub mode: writing the value directly instead of running the document under
 * /bin/sh (each real run starts a node process for the `aws` shim; 1,000 of them take minutes
 * on 2 cores). Everything else — functions, SSM, EC2, SQS, EventBridge, DynamoDB — is real.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { type InstanceSpec, startLocalCloud } from '../local-cloud/cloud.ts';
import { packageService, serviceCopy } from '../support/package.ts';

const INSTANCES = Number(process.env.BENCH_INSTANCES ?? '1000');
const CLOCK_SCALE = Number(process.env.BENCH_CLOCK_SCALE ?? '100');

const fleet: InstanceSpec[] = Array.from({ length: INSTANCES }, (_, i) => ({
  id: `i-0b${String(i).padStart(15, '0')}`,
  tags: { Environment: 'prod', Name: `web-prod-${i}` },
  directories: ['/var/www/html'],
}));

const packagedDir = mkdtempSync(join(tmpdir(), 'secrets-fanout-bench-'));
console.log(`Packaging the service (stage bench) into ${packagedDir} …`);
const service = await serviceCopy({});
await packageService(packagedDir, service, 'bench');
console.log(
  `Starting the local cloud: ${INSTANCES} prod instances, clock ×${CLOCK_SCALE}, agent in STUB mode (no /bin/sh runs: the value is written directly)`,
);
const cloud = await startLocalCloud({
  packagedDir,
  fleet,
  clockScale: CLOCK_SCALE,
  agent: { deliverySeconds: 1, stubScript: true },
  sqsDelayFloorMs: 250,
  functionEnvironment: { POWERTOOLS_LOG_LEVEL: 'WARN' },
});
const dynamodb = new DynamoDBClient(cloud.clientConfig('dynamodb'));
const rolloutsTable = cloud.stack.physicalName('RolloutsTable');
try {
  const startedAt = Date.now();
  cloud.putParameter('/prod/env.php', "<?php\nreturn ['db_password' => 'bench'];\n");
  const propagate = await cloud.waitFor(() => cloud.invocations('propagate')[0], {
    timeoutMs: 120_000,
    message: 'propagate',
  });
  const rolloutId = (propagate.result as any)?.rollout?.rolloutId as string | undefined;
  if (rolloutId === undefined)
    throw new Error(`propagate failed: ${JSON.stringify(propagate.error)}`);
  const sentAt = Date.now();
  let last = '';
  await cloud.waitFor(
    async () => {
      const { Item } = await dynamodb.send(
        new GetItemCommand({
          TableName: rolloutsTable,
          Key: { pk: { S: `R#${rolloutId}` }, sk: { S: '#ROLLOUT' } },
          ConsistentRead: true,
        }),
      );
      const line = `pending ${Item?.nPending?.N}, success ${Item?.nSuccess?.N}, state ${Item?.state?.S}`;
      if (line !== last)
        process.stdout.write(`  ${((Date.now() - startedAt) / 1000).toFixed(1)} s  ${line}\n`);
      last = line;
      return Item?.state?.S === 'Settled';
    },
    { timeoutMs: 600_000, message: 'the rollout to settle' },
  );
  const settledAt = Date.now();

  const calls = (service: string, operation: string, callerPart?: string) =>
    cloud.calls.filter(
      (c) =>
        c.service === service &&
        c.operation === operation &&
        (callerPart === undefined || c.caller.includes(callerPart)),
    ).length;
  const writes = cloud.dynamodbWrites.filter((w) => w.status === 200);
  const byTable = new Map<string, Map<string, number>>();
  for (const w of writes) {
    const ops = byTable.get(w.table) ?? new Map<string, number>();
    ops.set(w.operation, (ops.get(w.operation) ?? 0) + 1);
    byTable.set(w.table, ops);
  }
  const rolloutWrites = writes.filter((w) => w.table === rolloutsTable);
  const counterUpdates = rolloutWrites.filter(
    (w) => w.key.sk?.S === '#ROLLOUT' && w.key.pk?.S === `R#${rolloutId}`,
  );
  const targetWrites = rolloutWrites.filter((w) => String(w.key.sk?.S ?? '').startsWith('T#'));
  const track = cloud.invocations('track');
  const trackCounterUpdates = counterUpdates.filter(
    (w) => w.caller.endsWith('-track') && w.operation === 'TransactWriteItems',
  ).length;
  const settleUpdates = counterUpdates.filter((w) => w.operation === 'UpdateItem').length;

  const rows: Array<[string, string | number, string]> = [
    ['instances (prod, running, managed)', INSTANCES, ''],
    [
      'SendCommand calls',
      calls('ssm', 'SendCommand'),
      `target ceil(N/50) = ${Math.ceil(INSTANCES / 50)}`,
    ],
    [
      'DescribeInstances pages (propagate)',
      calls('ec2', 'DescribeInstances', 'propagate'),
      `target ceil(N/1000) = ${Math.ceil(INSTANCES / 1000)}`,
    ],
    ['DescribeInstances calls (all functions)', calls('ec2', 'DescribeInstances'), ''],
    [
      'DescribeInstanceInformation calls',
      calls('ssm', 'DescribeInstanceInformation'),
      `target ceil(N/50) = ${Math.ceil(INSTANCES / 50)}`,
    ],
    ['ListCommandInvocations calls (track)', calls('ssm', 'ListCommandInvocations'), ''],
    ['GetCommandInvocation calls (track)', calls('ssm', 'GetCommandInvocation'), 'failures only'],
    ['track invocations', track.length, 'target ≤ 20'],
    ['track batch sizes', track.map((r) => (r.event as any)?.Records?.length ?? 0).join(' '), ''],
    ['DynamoDB item writes, rollouts table', rolloutWrites.length, ''],
    ['  of which target items', targetWrites.length, ''],
    [
      '  target item writes per instance',
      (targetWrites.length / INSTANCES).toFixed(2),
      'target ≤ 2',
    ],
    ['  all rollouts-table writes per instance', (rolloutWrites.length / INSTANCES).toFixed(2), ''],
    ['rollout item (counter) updates', counterUpdates.length, ''],
    [
      '  counter updates in track transactions / batches',
      `${trackCounterUpdates} / ${track.length}`,
      'target 1 per batch',
    ],
    ['  plain UpdateItem of the rollout item (settle)', settleUpdates, ''],
    ['wall time: put → propagate done', `${((sentAt - startedAt) / 1000).toFixed(1)} s`, ''],
    [
      'wall time: put → settled',
      `${((settledAt - startedAt) / 1000).toFixed(1)} s`,
      `clock ×${CLOCK_SCALE}`,
    ],
  ];
  console.log('\nDynamoDB item writes by table and operation:');
  for (const [table, ops] of byTable) {
    console.log(`  ${table}: ${[...ops].map(([op, n]) => `${op} ${n}`).join(', ')}`);
  }
  console.log(`\nResults (agent STUB mode), rollout ${rolloutId}:`);
  const width = Math.max(...rows.map(([name]) => name.length));
  for (const [name, value, note] of rows) {
    console.log(`  ${name.padEnd(width)}  ${String(value).padStart(8)}  ${note}`);
  }
} finally {
  dynamodb.destroy();
  await cloud.stop();
  rmSync(packagedDir, { recursive: true, force: true });
  rmSync(service, { recursive: true, force: true });
}
