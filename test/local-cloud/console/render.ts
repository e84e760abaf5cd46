/**
 * Model → text, pure: the live screen (`renderScreen`) and the one-line-per-event log
 * (`eventLine`). No terminal, clock or cloud here, so both are unit-tested as strings.
 */
import { describeTrigger } from '../../../shared/rollout/trigger.ts';
import {
  type AlertRow,
  BAR_STATES,
  type ConsoleEvent,
  type ConsoleModel,
  type InstanceRow,
  type RolloutRow,
} from './model.ts';

/** One character per state in the progress bar; the legend under the rollouts names them. */
export const BAR_CHARS: Record<(typeof BAR_STATES)[number], string> = {
  success: '#',
  unchanged: '=',
  failed: 'X',
  unreachable: '?',
  superseded: '~',
  pending: '.',
};

const LABELS: Record<(typeof BAR_STATES)[number], string> = {
  success: 'updated',
  unchanged: 'unchanged',
  failed: 'failed',
  unreachable: 'unreachable',
  superseded: 'superseded',
  pending: 'pending',
};

/** A bar of `width` characters, each state's share at least one character when non-zero. */
export function progressBar(counts: RolloutRow['counts'], width = 20): string {
  const total = Math.max(counts.total, 1);
  const present = BAR_STATES.filter((state) => counts[state] > 0);
  const sizes = present.map((state) => Math.max(1, Math.round((counts[state] / total) * width)));
  // Rounding may overshoot or undershoot: take from or give to the largest share.
  let excess = sizes.reduce((sum, size) => sum + size, 0) - width;
  while (present.length > 0 && excess !== 0) {
    const largest = sizes.indexOf(Math.max(...sizes));
    if (excess > 0 && (sizes[largest] ?? 0) <= 1) break;
    sizes[largest] = (sizes[largest] ?? 0) - Math.sign(excess);
    excess -= Math.sign(excess);
  }
  const bar = present.map((state, i) => BAR_CHARS[state].repeat(sizes[i] ?? 0)).join('');
  return `[${bar.padEnd(width, ' ')}]`;
}

/** "2 updated, 1 unreachable" — the non-zero counts, pending last. Never empty. */
export function countsText(counts: RolloutRow['counts']): string {
  const parts = BAR_STATES.filter((state) => counts[state] > 0).map(
    (state) => `${counts[state]} ${LABELS[state]}`,
  );
  return parts.length === 0 ? 'no targets' : parts.join(', ');
}

/** "2 updated of 3, 1 retry": the counts, the total and the retries if any. */
export function tallyText(counts: RolloutRow['counts']): string {
  const retries =
    counts.retries > 0 ? `, ${counts.retries} ${counts.retries === 1 ? 'retry' : 'retries'}` : '';
  return `${countsText(counts)} of ${counts.total}${retries}`;
}

/** How a settled rollout ended, in words. */
export function outcomeText(rollout: RolloutRow): string {
  const c = rollout.counts;
  if (rollout.state !== 'Settled') return 'in progress';
  if (rollout.trigger.type === 'drift') {
    const problems = c.failed > 0 || c.unreachable - c.terminated > 0;
    const repaired = c.success === 0 ? 'no drift' : `drift repaired: ${c.success} (alert)`;
    return problems ? `${repaired}; settled with problems (alert)` : repaired;
  }
  if (c.failed === 0 && c.unreachable - c.terminated <= 0) {
    if (c.success === c.total) return 'Success everywhere';
    if (c.unchanged === c.total) return 'Unchanged everywhere (already current)';
    return 'clean';
  }
  return 'settled with problems (alert)';
}

function triggerText(rollout: RolloutRow): string {
  return rollout.trigger.type === 'event' ? 'parameter change' : describeTrigger(rollout.trigger);
}

function what(rollout: RolloutRow): string {
  return `${rollout.parameters.join(', ')}${rollout.version === undefined ? '' : ` v${rollout.version}`} → ${rollout.environment}`;
}

function clock(at: Date): string {
  return at.toISOString().slice(11, 19);
}

function rolloutLines(rollout: RolloutRow): string[] {
  const state =
    rollout.state === 'Settled' ? outcomeText(rollout) : (rollout.stage ?? rollout.state);
  return [
    `  ${rollout.rolloutId}  ${what(rollout)}  (${triggerText(rollout)})`,
    `    ${progressBar(rollout.counts)} ${tallyText(rollout.counts)}  ${state}`,
  ];
}

function instanceLine(instance: InstanceRow): string {
  const state = [instance.state, instance.lifecycle, instance.managed ? '' : 'no SSM agent']
    .filter(Boolean)
    .join(', ');
  const files =
    instance.files.length === 0
      ? 'no file written yet'
      : instance.files
          .map(
            (file) =>
              `${file.path} ${file.version === undefined ? '-' : `v${file.version}`}${file.failedSince === undefined ? '' : ` (a later run failed, exit ${file.failedSince})`}`,
          )
          .join('  ');
  return `  ${instance.id}  ${instance.name.padEnd(18)} ${state.padEnd(22)} ${files}`;
}

function alertLine(alert: AlertRow): string {
  return `  ${clock(alert.at)}  ${alert.subject}`;
}

/**
 * The live screen: title, packaging or demo step, rollouts (in flight first, then the most
 * recent), alerts, and the instances of the selected environment. Lines longer than `width`
 * are cut, so the terminal never wraps them (log-update redraws by line count).
 */
export function renderScreen(
  model: ConsoleModel,
  options: { width?: number; now?: number; maxRollouts?: number; maxAlerts?: number } = {},
): string {
  const { width = 120, now = Date.now(), maxRollouts = 6, maxAlerts = 4 } = options;
  const lines: string[] = [model.title];
  if (model.packaging && model.packaging.doneAt === undefined) {
    const seconds = Math.floor((now - model.packaging.startedAt) / 1000);
    // Nothing else exists yet: no cloud, no rollouts.
    return [model.title, `Packaging the service (serverless package) … ${seconds} s`]
      .map((line) => (line.length > width ? `${line.slice(0, width - 1)}…` : line))
      .join('\n');
  }
  if (model.step) {
    lines.push(
      model.step.index === 0
        ? `Demo: ${model.step.title}`
        : `Demo step ${model.step.index}/${model.step.total}: ${model.step.title}`,
    );
    for (const line of model.step.detail?.split('\n') ?? []) lines.push(`  ${line}`);
  }
  const inFlight = model.rollouts.filter((r) => r.state !== 'Settled');
  const recent = model.rollouts.filter((r) => r.state === 'Settled');
  const shown = [...inFlight, ...recent].slice(0, maxRollouts);
  lines.push('', `Rollouts (${inFlight.length} in flight, ${recent.length} settled)`);
  if (shown.length === 0) lines.push('  none yet');
  for (const rollout of shown) lines.push(...rolloutLines(rollout));
  lines.push(
    `  ${BAR_STATES.map((state) => `${BAR_CHARS[state]} ${LABELS[state]}`).join('  ')}`,
    '',
    `Alerts (${model.alerts.length})`,
  );
  if (model.alerts.length === 0) lines.push('  none');
  for (const alert of model.alerts.slice(0, maxAlerts)) lines.push(alertLine(alert));
  const instances = model.instances.filter(
    (instance) => instance.environment === model.selectedEnvironment,
  );
  lines.push('', `Instances of ${model.selectedEnvironment ?? '(no environment yet)'}`);
  for (const instance of instances) lines.push(instanceLine(instance));
  return lines
    .map((line) => (line.length > width ? `${line.slice(0, width - 1)}…` : line))
    .join('\n');
}

/** One line (no timestamp) for an event, as the non-terminal driver prints it. */
export function eventText(event: ConsoleEvent): string {
  switch (event.kind) {
    case 'packaging':
      return `packaging the service … ${event.elapsedSeconds} s`;
    case 'packaged':
      return event.reused
        ? 'using the packaged service (newer than the sources)'
        : `packaged the service in ${event.seconds} s`;
    case 'step':
      return event.step.index === 0
        ? `demo: ${event.step.title}`
        : `demo step ${event.step.index}/${event.step.total}: ${event.step.title}`;
    case 'rollout-started':
      return `rollout ${event.rollout.rolloutId} started (${triggerText(event.rollout)}): ${what(event.rollout)}, ${event.rollout.counts.total} targets`;
    case 'rollout-settled':
      return `rollout ${event.rollout.rolloutId} settled: ${outcomeText(event.rollout)}: ${tallyText(event.rollout.counts)} (${what(event.rollout)})`;
    case 'rollout-stage':
      return `rollout ${event.rollout.rolloutId}: ${event.rollout.stage ?? ''} (${what(event.rollout)})`;
    case 'alert':
      return `ALERT ${event.alert.subject}`;
    case 'note':
      return event.text;
  }
}

/** `eventText` with the wall-clock time in front: `14:03:07  …`. */
export function eventLine(event: ConsoleEvent, at: Date): string {
  return `${clock(at)}  ${eventText(event)}`;
}
