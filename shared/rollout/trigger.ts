/**
 * What started a rollout: a Parameter Store change, a person's resync, a new instance, a staged
 * rollout's halt or resume, or the scheduled drift repair (`custom.fanout.drift.schedule`; `eventId` is the schedule's event, or
 * absent for a run invoked by hand).
 */
export type Trigger =
  | { type: 'event'; eventId: string }
  | { type: 'resync'; principal: string }
  | { type: 'bootstrap'; instanceId: string }
  | { type: 'drift'; eventId?: string }
  /** The instances a halted staged rollout had reached, taken back to the previous version. */
  | { type: 'rollback'; of: string; stage: number }
  /** The rolled-back instances of a halted rollout a person resumed, given its version again. */
  | { type: 'resume'; of: string; principal: string };

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
    case 'rollback':
      return `rollback of ${trigger.of} (halted at stage ${trigger.stage + 1})`;
    case 'resume':
      return `resume of ${trigger.of} by ${trigger.principal}`;
  }
}
