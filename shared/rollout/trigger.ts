/**
 * What started a rollout: a Parameter Store change, a person's resync, a new instance, or the
 * scheduled drift repair (`custom.fanout.drift.schedule`; `eventId` is the schedule's event, or
 * absent for a run invoked by hand).
 */
export type Trigger =
  | { type: 'event'; eventId: string }
  | { type: 'resync'; principal: string }
  | { type: 'bootstrap'; instanceId: string }
  | { type: 'drift'; eventId?: string };

/** A trigger as the on-call reads it, in alerts and the status table. Never throws. */
export function describeTrigger(trigger: Trigger): string {
  switch (trigger.type) {
    case 'event':
      return 'parameter change';
    case 'resync':
      return `resync by ${trigger.principal}`;
    case 'bootstrap':
      return `bootstrap of ${trigger.instanceId}`;
    case 'drift':
      return trigger.eventId === undefined
        ? 'drift repair (run by hand)'
        : 'scheduled drift repair';
  }
}
