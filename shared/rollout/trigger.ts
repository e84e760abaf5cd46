/** What started a rollout: a Parameter Store change, a person's resync, or a new instance. */
export type Trigger =
  | { type: 'event'; eventId: string }
  | { type: 'resync'; principal: string }
  | { type: 'bootstrap'; instanceId: string };

/** A trigger as the on-call reads it, in alerts and the status table. Never throws. */
export function describeTrigger(trigger: Trigger): string {
  switch (trigger.type) {
    case 'event':
      return 'parameter change';
    case 'resync':
      return `resync by ${trigger.principal}`;
    case 'bootstrap':
      return `bootstrap of ${trigger.instanceId}`;
  }
}
