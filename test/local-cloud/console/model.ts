/**
 * What `npm start` shows, as plain data: the rollouts in flight and recent, the alerts, the
 * instances of the selected environment, packaging and the demo's current step. The watcher
 * (watch.ts) fills it from the running cloud; render.ts turns it into text; the drivers
 * (drivers.ts) draw that in place on a terminal or print one line per event elsewhere.
 * Nothing here ever holds a secret value: versions, counts, states and alert subjects only.
 */
import type { Counts, RolloutState } from '../../../shared/rollout/model.ts';
import type { Trigger } from '../../../shared/rollout/trigger.ts';

export interface RolloutRow {
  rolloutId: string;
  trigger: Trigger;
  environment: string;
  parameters: string[];
  version?: number;
  state: RolloutState;
  createdAt: string;
  settledAt?: string;
  counts: Counts;
  /** A staged rollout: where it stands ("sending stage 2 of 3", "HALTED at the canary …"). */
  stage?: string;
}

export interface AlertRow {
  at: Date;
  subject: string;
  rolloutId?: string;
}

export interface InstanceFile {
  path: string;
  /** The version the last successful run on the instance wrote (or found already there). */
  version?: number;
  /** A run after that one failed: its exit code (the file on disk is still `version`). */
  failedSince?: number;
}

export interface InstanceRow {
  id: string;
  name: string;
  environment: string;
  /** EC2 state, and the Auto Scaling lifecycle state when the instance is in a group. */
  state: string;
  lifecycle?: string;
  managed: boolean;
  files: InstanceFile[];
}

export interface DemoStepView {
  /** 1-based; 0 for the closing "your turn" line. */
  index: number;
  total: number;
  title: string;
  detail?: string;
}

export interface ConsoleModel {
  title: string;
  packaging?: { startedAt: number; doneAt?: number };
  step?: DemoStepView;
  /** Newest first. */
  rollouts: RolloutRow[];
  /** Newest first. */
  alerts: AlertRow[];
  selectedEnvironment?: string;
  instances: InstanceRow[];
}

/** What the non-terminal driver prints a line for. */
export type ConsoleEvent =
  | { kind: 'packaging'; elapsedSeconds: number }
  | { kind: 'packaged'; seconds: number; reused: boolean }
  | { kind: 'step'; step: DemoStepView }
  | { kind: 'rollout-started'; rollout: RolloutRow }
  | { kind: 'rollout-settled'; rollout: RolloutRow }
  | { kind: 'rollout-stage'; rollout: RolloutRow }
  | { kind: 'alert'; alert: AlertRow }
  | { kind: 'note'; text: string };

export function emptyModel(title: string): ConsoleModel {
  return { title, rollouts: [], alerts: [], instances: [] };
}

/** The terminal states a rollout's targets end in, in the order they are drawn. */
export const BAR_STATES = [
  'success',
  'unchanged',
  'failed',
  'unreachable',
  'superseded',
  'pending',
] as const satisfies ReadonlyArray<keyof Counts>;
