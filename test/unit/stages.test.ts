import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';
import { rolloutAlert } from '../../shared/report/alerts.ts';
import { stagesView } from '../../shared/report/status.ts';
import {
  assignStages,
  countTargets,
  type NewTarget,
  planChunks,
  type Rollout,
  type StageProgress,
  settleAlertOwed,
  stageEnds,
  supersedes,
  targetsAfter,
} from '../../shared/rollout/model.ts';
import { testConfigInput } from '../support/fixtures.ts';

const ids = (n: number) => Array.from({ length: n }, (_, i) => `i-0${String(i).padStart(16, '0')}`);
const pending = (instanceIds: string[], path = '/etc/a'): NewTarget[] =>
  instanceIds.map((instanceId) => ({
    instanceId,
    parameter: '/prod/a',
    path,
    status: 'Pending' as const,
  }));

describe('stage sizes', () => {
  it('is a canary, the waves (cumulative, percentages rounded up) and then everyone', () => {
    expect(stageEnds(100, { canary: 1, waves: ['10%', '50%'] })).toEqual([1, 10, 50, 100]);
    expect(stageEnds(7, { canary: '10%', waves: ['50%'] })).toEqual([1, 4, 7]);
  });

  it('adds at least one instance a stage and drops stages past the fleet', () => {
    expect(stageEnds(3, { canary: 1, waves: [1, '1%', 5, '100%'] })).toEqual([1, 2, 3]);
    expect(stageEnds(1, { canary: 1, waves: ['50%'] })).toEqual([1]);
    expect(stageEnds(0, { canary: 1, waves: [] })).toEqual([]);
  });
});

describe('assigning targets to stages', () => {
  it('puts instances in id order, every file of an instance in the same stage', () => {
    const fleet = ids(5).reverse();
    const targets = [...pending(fleet, '/etc/a'), ...pending(fleet, '/etc/b')];
    const {
      targets: staged,
      instances,
      perStage,
    } = assignStages(targets, {
      canary: 1,
      waves: [3],
    });
    expect(instances).toEqual([1, 2, 2]);
    expect(perStage).toEqual([2, 4, 4]);
    const stageOf = (id: string, path: string) =>
      staged.find((t) => t.instanceId === id && t.path === path)?.stage;
    const sorted = [...fleet].sort();
    expect(stageOf(sorted[0] ?? '', '/etc/a')).toBe(0);
    expect(stageOf(sorted[0] ?? '', '/etc/b')).toBe(0);
    expect(stageOf(sorted[4] ?? '', '/etc/b')).toBe(2);
  });

  it('gives unreachable targets no stage: nothing is sent to them', () => {
    const targets: NewTarget[] = [
      ...pending(ids(2)),
      {
        instanceId: 'i-0ffffffffffffffff',
        parameter: '/prod/a',
        path: '/etc/a',
        status: 'Unreachable',
      },
    ];
    const { targets: staged } = assignStages(targets, { canary: 1, waves: [] });
    expect(staged.find((t) => t.status === 'Unreachable')?.stage).toBeUndefined();
  });

  it('plans chunks that never span two stages, numbered on across them', () => {
    const { targets } = assignStages(pending(ids(120)), { canary: 1, waves: ['50%'] });
    const chunks = planChunks(targets);
    expect(chunks.map((c) => [c.stage, c.index, c.instanceIds.length])).toEqual([
      [0, 0, 1],
      [1, 1, 50],
      [1, 2, 9],
      [2, 3, 50],
      [2, 4, 10],
    ]);
  });

  it('plans unstaged targets exactly as before', () => {
    const chunks = planChunks(pending(ids(60)));
    expect(chunks.map((c) => [c.stage, c.index, c.instanceIds.length])).toEqual([
      [undefined, 0, 50],
      [undefined, 1, 10],
    ]);
  });

  it('counts the targets still waiting after each stage', () => {
    expect(targetsAfter({ targets: [1, 4, 5] }, 0)).toBe(9);
    expect(targetsAfter({ targets: [1, 4, 5] }, 2)).toBe(0);
  });
});

describe('custom.fanout.rollout.stages', () => {
  const withStages = (stages: unknown) => ({
    ...structuredClone(testConfigInput),
    rollout: { ...testConfigInput.rollout, stages },
  });

  it('is off by default and fills its own defaults per environment', () => {
    expect(parseConfig(testConfigInput).rollout.stages).toEqual({});
    expect(parseConfig(withStages({ prod: {} })).rollout.stages).toEqual({
      prod: { canary: 1, waves: [], bakeSeconds: 300, alarms: [] },
    });
  });

  it('refuses an unknown environment, a bad size and an alarm listed twice, naming each', () => {
    const bad = withStages({
      staging: {},
      prod: { canary: '0%', waves: ['150%'], alarms: ['a', 'a'], bakeSeconds: -1 },
    });
    expect(() => parseConfig(bad)).toThrow(ConfigError);
    try {
      parseConfig(bad);
    } catch (error) {
      const message = (error as Error).message;
      expect(message).toContain(
        'custom.fanout.rollout.stages.staging: staging is not one of the environments',
      );
      expect(message).toContain('custom.fanout.rollout.stages.prod.canary');
      expect(message).toContain('custom.fanout.rollout.stages.prod.waves[0]');
      expect(message).toContain(
        'custom.fanout.rollout.stages.prod.alarms: an alarm is listed twice',
      );
      expect(message).toContain('custom.fanout.rollout.stages.prod.bakeSeconds');
    }
  });
});

function stagedRollout(stages: Partial<StageProgress>, counts = countTargets([])): Rollout {
  return {
    rolloutId: '20261129T120000000Z-0123abcd',
    trigger: { type: 'event', eventId: 'e-1' },
    environment: 'prod',
    parameters: ['/prod/a'],
    files: [{ parameter: '/prod/a', path: '/etc/a' }],
    version: 7,
    createdAt: '2026-11-29T12:00:00.000Z',
    state: 'InProgress',
    alert: 'Pending',
    counts,
    pins: { '/prod/a': 7 },
    stages: {
      instances: [1, 2, 7],
      targets: [1, 2, 7],
      bakeSeconds: 300,
      alarms: ['prod-api-5xx'],
      current: 0,
      phase: 'Sending',
      startedAt: '2026-11-29T12:00:00.000Z',
      previousVersion: 6,
      ...stages,
    },
  };
}

const viewOf = (stages: Partial<StageProgress>) =>
  stagesView(stagedRollout(stages).stages as StageProgress);

describe('what the on-call reads of a staged rollout', () => {
  const halt = {
    stage: 0,
    reason: 'alarm prod-api-5xx in ALARM during the bake of the canary (stage 1 of 3)',
    at: '2026-11-29T12:05:00.000Z',
    rollbackRolloutId: '20261129T120500000Z-feedbeef',
    failedAtHalt: 0,
  };

  it('the status says where it stands', () => {
    expect(viewOf({}).summary).toBe('sending the canary (stage 1 of 3)');
    expect(
      viewOf({ current: 1, phase: 'Baking', bakeUntil: '2026-11-29T12:10:00.000Z' }).summary,
    ).toBe('stage 2 of 3 passed; baking until 2026-11-29T12:10:00.000Z, then the next stage');
    expect(viewOf({ phase: 'Halted', halt }).summary).toMatch(
      /^HALTED at the canary \(stage 1 of 3\): alarm prod-api-5xx in ALARM/,
    );
  });

  it('the halt alert says where, why, what was rolled back and how to resume or abandon', () => {
    const alert = rolloutAlert(stagedRollout({ phase: 'Halted', halt }), [], 'prod');
    expect(alert.subject).toBe('secrets-fanout: prod /prod/a v7 HALTED at the canary of 3');
    const text = alert.lines.join('\n');
    expect(text).toContain(`Why: ${halt.reason}`);
    expect(text).toContain('the 1 instances reached are being rolled back to v6');
    expect(text).toContain('Untouched: 9 instances were never sent this version.');
    expect(text).toContain('new instances, drift repair and re-syncs write v6');
    expect(text).toContain('"action":"resume"');
    expect(text).toContain('"action":"abandon"');
    expect(alert.attributes.kind).toBe('rollout-halted');
  });

  it('a settled rollout does not page again for failures its halt reported', () => {
    const counts = { ...countTargets([]), total: 10, success: 9, failed: 1 };
    const resumed = stagedRollout({ phase: 'Done', halt: { ...halt, failedAtHalt: 1 } }, counts);
    expect(settleAlertOwed(resumed)).toBe(false);
    const worse = { ...resumed, counts: { ...counts, success: 8, failed: 2 } };
    expect(settleAlertOwed(worse)).toBe(true);
    expect(settleAlertOwed(stagedRollout({ phase: 'Abandoned', halt }, counts))).toBe(false);
  });
});

describe('which rollout supersedes a pending retry', () => {
  const at = '2026-11-29T12:00:00.000Z';
  it('a higher version does, even started in the same millisecond (a pinned retry never lands after it)', () => {
    const v3 = { rolloutId: 'a', createdAt: at, version: 3 };
    const v4 = { rolloutId: 'b', createdAt: at, version: 4 };
    expect(supersedes(v4, v3)).toBe(true);
    expect(supersedes(v3, v4)).toBe(false);
  });

  it('at one version, only a rollout started later does', () => {
    const first = { rolloutId: 'a', createdAt: at, version: 3 };
    const second = { rolloutId: 'b', createdAt: '2026-11-29T12:00:00.001Z', version: 3 };
    expect(supersedes(second, first)).toBe(true);
    expect(supersedes(first, second)).toBe(false);
  });
});
