import { describe, expect, it } from 'vitest';
import { Clock, type ClockHost } from './clock.ts';
import { EventBus, type Rule, type RuleTarget } from './eventbridge.ts';
import { rateSeconds, Schedules } from './schedule.ts';

/** A clock whose timers run only when the test advances it. */
function manualClock(): { clock: Clock; advance(ms: number): void } {
  let now = 1_800_000_000_000;
  const timers: Array<{ at: number; fn: () => void; handle: number }> = [];
  let next = 0;
  const host: ClockHost = {
    now: () => now,
    setTimeout: (fn, ms) => {
      timers.push({ at: now + ms, fn, handle: ++next });
      return next;
    },
    clearTimeout: (handle) => {
      const i = timers.findIndex((t) => t.handle === handle);
      if (i >= 0) timers.splice(i, 1);
    },
  };
  return {
    clock: new Clock(1, host),
    advance(ms) {
      const until = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const due = timers[0];
        if (due === undefined || due.at > until) break;
        timers.shift();
        now = due.at;
        due.fn();
      }
      now = until;
    },
  };
}

function world(target: Partial<RuleTarget> = {}) {
  const { clock, advance } = manualClock();
  const payloads: string[] = [];
  const bus = new EventBus({
    region: 'eu-west-1',
    clock,
    invoke: async (_target, payload) => {
      payloads.push(payload);
    },
    deadLetter: () => undefined,
  });
  const schedules = new Schedules({ bus, clock, region: 'eu-west-1' });
  const rule = (schedule: string): Rule => ({
    name: 'stack-DriftScheduleProd2-ABC',
    arn: 'arn:aws:events:eu-west-1:000000000000:rule/stack-DriftScheduleProd2-ABC',
    pattern: {},
    enabled: true,
    schedule,
    targets: [{ id: 'drift', arn: 'arn:aws:lambda:eu-west-1:000000000000:function:d', ...target }],
  });
  return { bus, schedules, rule, payloads, advance };
}

describe('scheduled rules on the local cloud', () => {
  it('reads rate expressions as EventBridge does', () => {
    expect(rateSeconds('rate(1 minute)')).toBe(60);
    expect(rateSeconds('rate(6 hours)')).toBe(21_600);
    expect(rateSeconds('rate(2 days)')).toBe(172_800);
    expect(() => rateSeconds('rate(1 hours)')).toThrow(/singular exactly when the value is 1/);
    expect(() => rateSeconds('rate(5 hour)')).toThrow(/singular exactly when the value is 1/);
    expect(() => rateSeconds('cron(0 3 * * ? *)', 'R')).toThrow(/R: .*cron is not/);
  });

  it('fires a Scheduled Event to the rule target one period after creation, then every period', async () => {
    const { schedules, rule, payloads, advance } = world();
    schedules.add('DriftScheduleProd2', rule('rate(1 hour)'));
    advance(3_599_000);
    expect(payloads).toHaveLength(0);
    advance(1_000);
    advance(3_600_000);
    await Promise.resolve();
    expect(payloads).toHaveLength(2);
    const event = JSON.parse(payloads[0] as string);
    expect(event).toMatchObject({
      version: '0',
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      region: 'eu-west-1',
      resources: ['arn:aws:events:eu-west-1:000000000000:rule/stack-DriftScheduleProd2-ABC'],
      detail: {},
    });
    expect(event.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('fires now on demand, by logical id or name, and refuses an unknown rule', async () => {
    const { schedules, rule, payloads } = world();
    schedules.add('DriftScheduleProd2', rule('rate(6 hours)'));
    const event = schedules.fire('DriftScheduleProd2');
    schedules.fire('stack-DriftScheduleProd2-ABC');
    await Promise.resolve();
    expect(payloads).toHaveLength(2);
    expect(JSON.parse(payloads[0] as string).id).toBe(event.id);
    expect(() => schedules.fire('Nope')).toThrow(
      /no scheduled rule Nope; scheduled: DriftScheduleProd2/,
    );
  });

  it('applies an InputTransformer: quoted placeholders as text, bare ones as JSON', async () => {
    const { schedules, rule, payloads } = world({
      inputTransformer: {
        inputPathsMap: { id: '$.id', time: '$.time', resources: '$.resources', none: '$.detail.x' },
        inputTemplate:
          '{"environment":"prod","eventId":"<id>","time":"<time>","rules":<resources>,"none":<none>,"said":"at \\"<time>\\" <unmapped>"}',
      },
    });
    schedules.add('R', rule('rate(6 hours)'));
    const event = schedules.fire('R');
    await Promise.resolve();
    expect(JSON.parse(payloads[0] as string)).toEqual({
      environment: 'prod',
      eventId: event.id,
      time: event.time,
      rules: event.resources,
      none: null,
      said: `at "${event.time}" <unmapped>`,
    });
  });

  it('delivers nothing for a disabled rule', async () => {
    const { schedules, rule, payloads } = world();
    schedules.add('R', { ...rule('rate(6 hours)'), enabled: false });
    schedules.fire('R');
    await Promise.resolve();
    expect(payloads).toHaveLength(0);
  });
});
