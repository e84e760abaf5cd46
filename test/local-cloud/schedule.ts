/**
 * EventBridge scheduled rules (AWS::Events::Rule with a ScheduleExpression) on the local cloud's
 * scaled clock. Only rate expressions are modelled
 * (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rate-expressions.html: a positive
 * whole number and minute(s) | hour(s) | day(s), singular exactly when the value is 1; the rule
 * first runs one period after it is created). A cron expression, or anything else, is refused
 * when the template is loaded, naming the rule, rather than silently never firing.
 *
 * Each run delivers a "Scheduled Event" to the rule's own targets (never matched against other
 * rules), shaped as EventBridge sends it: source "aws.events", detail-type "Scheduled Event",
 * the rule's ARN in resources, an empty detail
 * (https://docs.aws.amazon.com/lambda/latest/dg/with-scheduled-events.html).
 * `fire(rule)` runs one now, for a test or the operator, without waiting out the period.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from './clock.ts';
import type { AwsEvent, EventBus, Rule } from './eventbridge.ts';
import { ACCOUNT_ID } from './http.ts';

const RATE = /^rate\(([1-9][0-9]*) (minute|minutes|hour|hours|day|days)\)$/;
const UNIT_SECONDS: Record<string, number> = { minute: 60, hour: 3600, day: 86400 };

/** Seconds between runs of a rate expression; throws (as PutRule would refuse it) otherwise. */
export function rateSeconds(expression: string, ruleName = 'rule'): number {
  const match = RATE.exec(expression);
  const [, value, unit] = match ?? [];
  if (match === null || value === undefined || unit === undefined) {
    throw new Error(
      `local cloud: ${ruleName}: ScheduleExpression "${expression}" is not supported; only rate(<n> minute(s)|hour(s)|day(s)) is modelled (cron is not)`,
    );
  }
  if ((value === '1') !== !unit.endsWith('s')) {
    throw new Error(
      `local cloud: ${ruleName}: Parameter ScheduleExpression is not valid: "${expression}" (the unit is singular exactly when the value is 1)`,
    );
  }
  return Number(value) * (UNIT_SECONDS[unit.replace(/s$/, '')] ?? Number.NaN);
}

export class Schedules {
  private readonly rules = new Map<string, { rule: Rule; seconds: number }>();
  /** Every Scheduled Event delivered, in order. */
  readonly fired: AwsEvent[] = [];
  private readonly bus: EventBus;
  private readonly clock: Clock;
  private readonly region: string;

  constructor(options: { bus: EventBus; clock: Clock; region: string }) {
    this.bus = options.bus;
    this.clock = options.clock;
    this.region = options.region;
  }

  /** Registers a scheduled rule by its key (the logical id) and starts its timer. Throws for an unsupported expression. */
  add(key: string, rule: Rule): void {
    const seconds = rateSeconds(rule.schedule ?? '', rule.name);
    this.rules.set(key, { rule, seconds });
    const tick = () => {
      this.fire(key);
      this.clock.after(seconds, tick);
    };
    this.clock.after(seconds, tick);
  }

  /** The scheduled rules by key. */
  keys(): string[] {
    return [...this.rules.keys()];
  }

  /** Runs a scheduled rule now: its Scheduled Event, to its targets. Throws for an unknown key. */
  fire(key: string): AwsEvent {
    const entry = this.rules.get(key) ?? [...this.rules.values()].find((e) => e.rule.name === key);
    if (entry === undefined) {
      throw new Error(
        `local cloud: no scheduled rule ${key}; scheduled: ${this.keys().join(', ')}`,
      );
    }
    const event: AwsEvent = {
      version: '0',
      id: randomUUID(),
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      account: ACCOUNT_ID,
      time: this.clock
        .now()
        .toISOString()
        .replace(/\.\d{3}Z$/, 'Z'),
      region: this.region,
      resources: [entry.rule.arn],
      detail: {},
    };
    this.fired.push(event);
    this.bus.deliverToRule(entry.rule, event);
    return event;
  }
}
