import { type CloudWatchClient, paginateDescribeAlarms } from '@aws-sdk/client-cloudwatch';

/** An alarm that stops a staged rollout, as the halt's alert names it. */
export interface FiringAlarm {
  name: string;
  reason?: string;
}

/**
 * The configured alarms now in ALARM (DescribeAlarms by name, metric and composite alarms, all
 * pages). A configured alarm that does not exist is reported as firing: a typo must not let a
 * bad secret through unwatched. Throws the SDK error (the caller's message is retried).
 */
export async function firingAlarms(
  cloudwatch: CloudWatchClient,
  names: readonly string[],
): Promise<FiringAlarm[]> {
  if (names.length === 0) return [];
  const found = new Map<string, { state?: string; reason?: string }>();
  // AlarmNames takes at most 100 names, which the config enforces
  // (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html).
  for await (const page of paginateDescribeAlarms(
    { client: cloudwatch },
    { AlarmNames: [...names], AlarmTypes: ['MetricAlarm', 'CompositeAlarm'] },
  )) {
    for (const alarm of [...(page.MetricAlarms ?? []), ...(page.CompositeAlarms ?? [])]) {
      if (alarm.AlarmName === undefined) continue;
      found.set(alarm.AlarmName, {
        ...(alarm.StateValue === undefined ? {} : { state: alarm.StateValue }),
        ...(alarm.StateReason === undefined ? {} : { reason: alarm.StateReason }),
      });
    }
  }
  return names.flatMap((name): FiringAlarm[] => {
    const alarm = found.get(name);
    if (alarm === undefined) return [{ name, reason: 'no such alarm (DescribeAlarms found none)' }];
    if (alarm.state !== 'ALARM') return [];
    return [{ name, ...(alarm.reason === undefined ? {} : { reason: alarm.reason }) }];
  });
}
