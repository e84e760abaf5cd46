import { type Key, targetKey } from './items.ts';
import type { Target, TargetRef } from './model.ts';
import type { RolloutTable } from './table.ts';

/**
 * The claims on the rollouts table (RolloutStore delegates here): who may send an attempt, who
 * may publish an alert, and what the sweep may re-send. Each is one conditional write; a failed
 * condition is the answer "no", never an error.
 */

export async function claimAttempt(
  table: RolloutTable,
  rolloutId: string,
  ref: TargetRef,
  attempt: number,
): Promise<boolean> {
  return table.conditional({
    Key: targetKey(rolloutId, ref),
    UpdateExpression: 'SET claimedAttempt = :attempt, claimedUntil = :until',
    ConditionExpression:
      '#status = :pending AND attempt = :attempt AND attribute_not_exists(commandId) AND (attribute_not_exists(claimedAttempt) OR claimedAttempt < :attempt OR claimedUntil < :now)',
    ExpressionAttributeNames: { '#status': 'status' },
    ExpressionAttributeValues: {
      ':pending': 'Pending',
      ':attempt': attempt,
      ':until': table.leaseEnd(),
      ':now': table.isoNow(),
    },
  });
}

export async function markResent(
  table: RolloutTable,
  rolloutId: string,
  target: Target,
  max: number,
): Promise<boolean> {
  return table.conditional({
    Key: targetKey(rolloutId, target),
    UpdateExpression: 'SET retryAt = :now, resends = if_not_exists(resends, :zero) + :one',
    ConditionExpression:
      '#status = :pending AND attempt = :attempt AND attribute_not_exists(commandId) AND (attribute_not_exists(claimedUntil) OR claimedUntil < :now) AND (attribute_not_exists(resends) OR resends < :max)',
    ExpressionAttributeNames: { '#status': 'status' },
    ExpressionAttributeValues: {
      ':now': table.isoNow(),
      ':zero': 0,
      ':one': 1,
      ':pending': 'Pending',
      ':attempt': target.attempt,
      ':max': max,
    },
  });
}

export async function releaseClaims(
  table: RolloutTable,
  rolloutId: string,
  refs: TargetRef[],
  attempt: number,
): Promise<void> {
  await Promise.all(
    refs.map((ref) =>
      table.conditional({
        Key: targetKey(rolloutId, ref),
        UpdateExpression: 'REMOVE claimedAttempt, claimedUntil',
        ConditionExpression: 'claimedAttempt = :attempt AND attribute_not_exists(commandId)',
        ExpressionAttributeValues: { ':attempt': attempt },
      }),
    ),
  );
}

export async function claimAlertItem(
  table: RolloutTable,
  key: { pk: string; sk: string },
  mayCreate: boolean,
  onCreate: Record<string, unknown> = {},
): Promise<boolean> {
  const sets = ['alert = :sending', 'alertClaimUntil = :until'];
  const values: Record<string, unknown> = {
    ':sending': 'Sending',
    ':pending': 'Pending',
    ':until': table.leaseEnd(),
    ':now': table.isoNow(),
  };
  const names: Record<string, string> = {};
  for (const [name, value] of Object.entries(onCreate)) {
    // `#name`: some attribute names (type) are DynamoDB reserved words.
    sets.push(`#${name} = if_not_exists(#${name}, :${name})`);
    names[`#${name}`] = name;
    values[`:${name}`] = value;
  }
  return table.conditional({
    Key: key,
    UpdateExpression: `SET ${sets.join(', ')}`,
    ...(Object.keys(names).length > 0 ? { ExpressionAttributeNames: names } : {}),
    ConditionExpression: `${mayCreate ? 'attribute_not_exists(pk) OR ' : ''}alert = :pending OR (alert = :sending AND alertClaimUntil < :now)`,
    ExpressionAttributeValues: values,
  });
}

export async function markAlertItemSent(table: RolloutTable, key: Key): Promise<void> {
  await table.conditional({
    Key: key,
    UpdateExpression: 'SET alert = :sent REMOVE alertClaimUntil',
    ConditionExpression: 'alert = :sending',
    ExpressionAttributeValues: { ':sent': 'Sent', ':sending': 'Sending' },
  });
}
