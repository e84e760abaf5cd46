import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { PROD_1, PROD_2, propagateResults, SECRETS_FILE, startTestCloud } from './local-cloud.ts';

describe('deleting a parameter, end to end on the local cloud', () => {
  let cloud: LocalCloud;

  beforeAll(async () => {
    cloud = await startTestCloud();
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('alerts the on-call once and changes no file', async () => {
    // Arrange: every prod instance has the current file.
    cloud.putParameter('/prod/env.php', 'DB_PASSWORD=one\n');
    await cloud.waitFor(() => propagateResults(cloud).length === 1, {
      message: 'the first rollout',
    });
    await cloud.commandsSettled();
    const before = [PROD_1, PROD_2].map((id) => cloud.fleet.get(id).readFile(SECRETS_FILE));
    const commandsBefore = cloud.ssm.commands.size;
    // Act
    cloud.deleteParameter('/prod/env.php');
    const deleteAlerts = () =>
      cloud
        .snsMessages()
        .filter((message) => message.messageAttributes.operation?.StringValue === 'Delete');
    const alert = await cloud.waitFor(() => deleteAlerts()[0], { message: 'the alert' });
    await cloud.waitFor(() => propagateResults(cloud).length === 2, {
      message: 'propagate to finish',
    });
    // Assert (other alerts, e.g. a rollout summary naming the unmanaged instance, may exist too)
    expect(deleteAlerts()).toHaveLength(1);
    expect(alert.topicArn).toBe(cloud.stack.ref('AlertsTopic'));
    expect(alert.subject).toContain('Delete');
    expect(alert.subject).toContain('/prod/env.php');
    expect(alert.messageAttributes.operation).toEqual({
      DataType: 'String',
      StringValue: 'Delete',
    });
    expect(alert.message).not.toContain('DB_PASSWORD');
    expect(propagateResults(cloud)[1]).toMatchObject({ status: 'skipped', operation: 'Delete' });
    expect(cloud.ssm.commands.size).toBe(commandsBefore);
    [PROD_1, PROD_2].forEach((id, index) => {
      expect(
        cloud.fleet
          .get(id)
          .readFile(SECRETS_FILE)
          .equals(before[index] as Buffer),
      ).toBe(true);
    });
  });
});
