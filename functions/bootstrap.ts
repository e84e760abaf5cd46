import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import {
  type BootstrapCheck,
  checkBootstrap,
  firstCheck,
} from '../shared/bootstrap/new-instances.ts';
import { requireEnv } from '../shared/config.ts';
import { depsFromEnv } from '../shared/deps.ts';
import {
  BootstrapCheckSchema,
  InstanceStateEventSchema,
  LaunchLifecycleEventSchema,
  TagChangeEventSchema,
} from '../shared/messages/instance-events.ts';
import { autoscaling } from '../shared/platform/clients/autoscaling.ts';
import { observed } from '../shared/platform/middleware.ts';
import { parseOrThrow } from '../shared/platform/parse.ts';
import { logger, metrics } from '../shared/platform/powertools.ts';

const deps = {
  ...depsFromEnv(),
  autoscaling,
  bootstrapQueueUrl: requireEnv('BOOTSTRAP_QUEUE_URL'),
};
const processor = new BatchProcessor(EventType.SQS);

/** What a message on the bootstrap queue asks for, as the check to run now. */
function checkFor(body: Record<string, unknown>): BootstrapCheck | undefined {
  switch (body['detail-type']) {
    case 'EC2 Instance-launch Lifecycle Action': {
      const event = parseOrThrow(LaunchLifecycleEventSchema, body, 'lifecycle event');
      const d = event.detail;
      if (d.LifecycleHookName !== deps.config.bootstrap.lifecycleHookName) {
        // Another hook on the group (the rule filters these; a hand-edited rule may not).
        return undefined;
      }
      return firstCheck(deps, d.EC2InstanceId, new Date(event.time), {
        groupName: d.AutoScalingGroupName,
        hookName: d.LifecycleHookName,
        token: d.LifecycleActionToken,
      });
    }
    case 'EC2 Instance State-change Notification': {
      const event = parseOrThrow(InstanceStateEventSchema, body, 'state-change event');
      return firstCheck(deps, event.detail['instance-id'], new Date(event.time));
    }
    case 'Tag Change on Resource': {
      const event = parseOrThrow(TagChangeEventSchema, body, 'tag change event');
      const instanceId = event.resources[0]?.split('/').at(-1) ?? '';
      return firstCheck(deps, instanceId, new Date(event.time));
    }
    default:
      return parseOrThrow(BootstrapCheckSchema, body, 'bootstrap check');
  }
}

async function bootstrapRecord(record: SQSRecord): Promise<void> {
  const check = checkFor(JSON.parse(record.body));
  if (check === undefined) {
    logger.info('lifecycle hook is not ours; left alone');
    return;
  }
  const result = await checkBootstrap(deps, check);
  metrics.addMetric('BootstrapChecks', MetricUnit.Count, 1);
  // Keys on the line itself: records of a batch run concurrently, so appended keys would mix.
  logger.info('bootstrap checked', {
    instanceId: check.instanceId,
    result,
    checks: check.checks,
    lifecycle: check.lifecycle?.groupName,
  });
}

/**
 * New instances get their files: launch lifecycle actions, instances entering `running`, and
 * instances tagged later arrive here through the bootstrap queue, as do the delayed re-checks
 * of bootstraps waiting for SSM or for their files.
 */
export const lambdaHandler = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
  processPartialResponse(event, bootstrapRecord, processor, {
    context,
    throwOnFullBatchFailure: false,
  });

export const handler = observed<SQSEvent, SQSBatchResponse>().handler(lambdaHandler);
