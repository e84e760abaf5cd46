/**
 * The console's pure parts: model → screen text, and model events → timestamped lines.
 */
import { describe, expect, it } from 'vitest';
import { lineDriver } from '../local-cloud/console/drivers.ts';
import type { ConsoleModel, RolloutRow } from '../local-cloud/console/model.ts';
import {
  eventLine,
  outcomeText,
  progressBar,
  renderScreen,
  tallyText,
} from '../local-cloud/console/render.ts';

const counts = (partial: Partial<RolloutRow['counts']>): RolloutRow['counts'] => {
  const full = {
    pending: 0,
    success: 0,
    unchanged: 0,
    failed: 0,
    unreachable: 0,
    superseded: 0,
    terminated: 0,
    retries: 0,
    ...partial,
  };
  return {
    ...full,
    total:
      full.pending +
      full.success +
      full.unchanged +
      full.failed +
      full.unreachable +
      full.superseded,
  };
};

const inFlight: RolloutRow = {
  rolloutId: '20261129T140000000Z-0000aaaa',
  trigger: { type: 'bootstrap', instanceId: 'i-0123456789abcdef0' },
  environment: 'staging',
  parameters: ['/staging/env.php', '/staging/app/secrets.env'],
  state: 'InProgress',
  createdAt: '2026-11-29T14:00:00.000Z',
  counts: counts({ pending: 1, success: 1 }),
};
const withAlert: RolloutRow = {
  rolloutId: '20261129T135900000Z-0000bbbb',
  trigger: { type: 'event', eventId: 'e-1' },
  environment: 'prod',
  parameters: ['/prod/env.php'],
  version: 4,
  state: 'Settled',
  createdAt: '2026-11-29T13:59:00.000Z',
  settledAt: '2026-11-29T13:59:30.000Z',
  counts: counts({ success: 2, unreachable: 1 }),
};
const resynced: RolloutRow = {
  rolloutId: '20261129T135800000Z-0000cccc',
  trigger: { type: 'resync', principal: 'arn:aws:iam::123456789012:user/jane' },
  environment: 'dev',
  parameters: ['/dev/env.php'],
  version: 2,
  state: 'Settled',
  createdAt: '2026-11-29T13:58:00.000Z',
  counts: counts({ unchanged: 2 }),
};

function model(): ConsoleModel {
  return {
    title: 'secrets-fanout on the local cloud',
    step: { index: 5, total: 6, title: 'A scale-out', detail: 'expect: InService' },
    rollouts: [inFlight, withAlert, resynced],
    alerts: [
      {
        at: new Date('2026-11-29T13:59:31Z'),
        subject: 'secrets-fanout: prod /prod/env.php v4: 0 failed, 1 unreachable',
      },
    ],
    selectedEnvironment: 'staging',
    instances: [
      {
        id: 'i-0de0000000000c001',
        name: 'web-staging-a',
        environment: 'staging',
        state: 'running',
        managed: true,
        files: [{ path: '/etc/app/secrets.env', version: 1, failedSince: 65 }],
      },
      {
        id: 'i-0123456789abcdef0',
        name: 'web-staging-asg',
        environment: 'staging',
        state: 'running',
        lifecycle: 'Pending:Wait',
        managed: true,
        files: [],
      },
      {
        id: 'i-0de0000000000a004',
        name: 'web-prod-no-agent',
        environment: 'prod',
        state: 'running',
        managed: false,
        files: [],
      },
    ],
  };
}

describe('the console renderer', () => {
  it('draws one share per state, at least one character each, filling the width', () => {
    expect(progressBar(counts({ success: 2, unreachable: 1 }), 9)).toBe('[######???]');
    expect(progressBar(counts({ success: 98, failed: 1, pending: 1 }), 10)).toBe('[########X.]');
    expect(progressBar(counts({ pending: 3 }), 4)).toBe('[....]');
    expect(progressBar(counts({}), 4)).toBe('[    ]');
    for (const bar of [
      progressBar(
        counts({ success: 1, unchanged: 1, failed: 1, unreachable: 1, superseded: 1, pending: 1 }),
        5,
      ),
      progressBar(counts({ success: 7, unchanged: 3, failed: 1 }), 20),
    ]) {
      expect(bar.length - 2).toBeGreaterThanOrEqual(5);
    }
  });

  it('says how a rollout ended in words', () => {
    expect(outcomeText(withAlert)).toBe('settled with problems (alert)');
    expect(outcomeText(resynced)).toBe('Unchanged everywhere (already current)');
    expect(outcomeText({ ...resynced, counts: counts({ success: 2 }) })).toBe('Success everywhere');
    expect(outcomeText(inFlight)).toBe('in progress');
    expect(tallyText(counts({ success: 2, retries: 1 }))).toBe('2 updated of 2, 1 retry');
  });

  it('renders rollouts in flight first, with trigger, version, environment and bar', () => {
    const screen = renderScreen(model(), { width: 200 }).split('\n');
    expect(screen[0]).toBe('secrets-fanout on the local cloud');
    expect(screen[1]).toBe('Demo step 5/6: A scale-out');
    expect(screen).toContain('Rollouts (1 in flight, 2 settled)');
    const first = screen.indexOf('Rollouts (1 in flight, 2 settled)') + 1;
    expect(screen[first]).toBe(
      '  20261129T140000000Z-0000aaaa  /staging/env.php, /staging/app/secrets.env → staging  (bootstrap of i-0123456789abcdef0)',
    );
    expect(screen[first + 1]).toMatch(
      /^ {4}\[#{10}\.{10}\] 1 updated, 1 pending of 2 {2}InProgress$/,
    );
    expect(screen[first + 2]).toContain('/prod/env.php v4 → prod  (parameter change)');
    expect(screen[first + 3]).toContain(
      '2 updated, 1 unreachable of 3  settled with problems (alert)',
    );
    expect(screen[first + 4]).toContain(
      '/dev/env.php v2 → dev  (resync by arn:aws:iam::123456789012:user/jane)',
    );
    expect(screen.join('\n')).toContain('# updated  = unchanged  X failed  ? unreachable');
  });

  it('renders the alerts and only the selected environment’s instances with their versions', () => {
    const text = renderScreen(model(), { width: 200 });
    expect(text).toContain(
      'Alerts (1)\n  13:59:31  secrets-fanout: prod /prod/env.php v4: 0 failed, 1 unreachable',
    );
    expect(text).toContain('Instances of staging');
    expect(text).toMatch(
      /i-0de0000000000c001 {2}web-staging-a .*\/etc\/app\/secrets\.env v1 \(a later run failed, exit 65\)/,
    );
    expect(text).toMatch(
      /i-0123456789abcdef0 {2}web-staging-asg .*running, Pending:Wait .*no file written yet/,
    );
    expect(text).not.toContain('web-prod-no-agent');
  });

  it('shows where a staged rollout stands instead of its state, and a line when that changes', () => {
    const halted: RolloutRow = {
      ...withAlert,
      state: 'InProgress',
      counts: counts({ failed: 1, pending: 2 }),
      stage: 'HALTED at the canary (stage 1 of 3): alarm prod-api-5xx in ALARM',
    };
    const screen = renderScreen({ ...model(), rollouts: [halted] }, { width: 200 });
    expect(screen).toContain('HALTED at the canary (stage 1 of 3): alarm prod-api-5xx in ALARM');
    expect(
      eventLine({ kind: 'rollout-stage', rollout: halted }, new Date('2026-11-29T14:00:05Z')),
    ).toBe(
      '14:00:05  rollout 20261129T135900000Z-0000bbbb: HALTED at the canary (stage 1 of 3): alarm prod-api-5xx in ALARM (/prod/env.php v4 → prod)',
    );
  });

  it('cuts lines to the width and shows packaging progress', () => {
    const screen = renderScreen(
      { ...model(), packaging: { startedAt: 1_000 } },
      { width: 40, now: 13_500 },
    );
    expect(screen).toContain('Packaging the service (serverless packa…');
    for (const line of screen.split('\n')) expect(line.length).toBeLessThanOrEqual(40);
    expect(renderScreen({ ...model(), packaging: { startedAt: 0 } }, { now: 12_400 })).toBe(
      'secrets-fanout on the local cloud\nPackaging the service (serverless package) … 12 s',
    );
    expect(
      renderScreen({ ...model(), packaging: { startedAt: 0, doneAt: 12_000 } }, { now: 12_400 }),
    ).not.toContain('Packaging');
  });
});

describe('the line driver (stdout not a terminal)', () => {
  it('prints one timestamped line per event and nothing on redraws', () => {
    const lines: string[] = [];
    const at = new Date('2026-11-29T14:03:07Z');
    const driver = lineDriver(
      (line) => lines.push(line),
      () => at,
    );
    driver.event({ kind: 'packaging', elapsedSeconds: 5 });
    driver.event({ kind: 'step', step: { index: 1, total: 6, title: 'A clean rollout' } });
    driver.event({ kind: 'rollout-started', rollout: resynced });
    driver.changed();
    driver.event({ kind: 'rollout-settled', rollout: resynced });
    driver.event({ kind: 'alert', alert: { at, subject: 'secrets-fanout: prod …' } });
    driver.event({ kind: 'step', step: { index: 0, total: 6, title: 'the story is over' } });
    expect(lines).toEqual([
      '14:03:07  packaging the service … 5 s',
      '14:03:07  demo step 1/6: A clean rollout',
      '14:03:07  rollout 20261129T135800000Z-0000cccc started (resync by arn:aws:iam::123456789012:user/jane): /dev/env.php v2 → dev, 2 targets',
      '14:03:07  rollout 20261129T135800000Z-0000cccc settled: Unchanged everywhere (already current): 2 unchanged of 2 (/dev/env.php v2 → dev)',
      '14:03:07  ALERT secrets-fanout: prod …',
      '14:03:07  demo: the story is over',
    ]);
    expect(eventLine({ kind: 'rollout-started', rollout: inFlight }, at)).toBe(
      '14:03:07  rollout 20261129T140000000Z-0000aaaa started (bootstrap of i-0123456789abcdef0): /staging/env.php, /staging/app/secrets.env → staging, 2 targets',
    );
  });
});
