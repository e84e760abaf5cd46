import type { Rollout } from '../rollout/model.ts';
import type { RolloutStore } from '../rollout/store.ts';

/**
 * What a staged rollout's hold on a parameter means now, read from the holder rollout itself
 * (the hold item only says who holds it: a hold its holder has moved past is ignored):
 * - staging: a staged rollout is going out (sending or baking a stage); drift repair and
 *   re-syncs leave the parameter to it, new instances get its version like any change;
 * - pinned: it halted (and may since have been abandoned); new instances, drift repair and
 *   re-syncs write `version`, the last complete one, never the halted one.
 */
export type HoldView =
  | { state: 'staging'; rolloutId: string }
  | { state: 'pinned'; rolloutId: string; version: number };

/** The parameter's hold in the environment now, or undefined. Throws the SDK error. */
export async function holdOf(
  store: RolloutStore,
  environment: string,
  parameter: string,
): Promise<HoldView | undefined> {
  const { hold } = await store.getRelease(environment, parameter);
  if (hold === undefined) return undefined;
  const holder = await store.getRollout(hold.rolloutId);
  const stages = holder?.stages;
  if (holder === undefined || stages === undefined) return undefined;
  const { rolloutId } = hold;
  if (stages.phase === 'Sending' || stages.phase === 'Baking') {
    return holder.state === 'InProgress' ? { state: 'staging', rolloutId } : undefined;
  }
  // Halted, or abandoned after a halt: pinned until a newer change lifts it.
  const halted =
    stages.phase === 'Halted' || (stages.phase === 'Abandoned' && stages.halt !== undefined);
  if (halted && hold.pinned !== undefined) {
    return { state: 'pinned', rolloutId, version: hold.pinned };
  }
  return undefined;
}

/** The hold of each of `names` that has one now, by name. Throws the SDK error. */
export async function holdsOf(
  store: RolloutStore,
  environment: string,
  names: readonly string[],
): Promise<Map<string, HoldView>> {
  const holds = new Map<string, HoldView>();
  for (const name of new Set(names)) {
    const view = await holdOf(store, environment, name);
    if (view !== undefined) holds.set(name, view);
  }
  return holds;
}

/**
 * The parameters among `names` a staged rollout is going out for right now, each with that
 * rollout's id. Throws the SDK error.
 */
export async function stagingParameters(
  store: RolloutStore,
  environment: string,
  names: readonly string[],
): Promise<Map<string, string>> {
  const holds = await holdsOf(store, environment, names);
  return new Map(
    [...holds].flatMap(([name, view]) =>
      view.state === 'staging' ? [[name, view.rolloutId]] : [],
    ),
  );
}

/**
 * The newer version of the rollout's parameter a staged change started for since, if any: that
 * change stages itself from its own canary, so this rollout goes no further. Throws the SDK
 * error.
 */
export async function newerChange(
  store: RolloutStore,
  rollout: Pick<Rollout, 'parameters' | 'version' | 'environment'>,
): Promise<number | undefined> {
  const [parameter] = rollout.parameters;
  if (parameter === undefined || rollout.version === undefined) return undefined;
  const { latestChange } = await store.getRelease(rollout.environment, parameter);
  return latestChange !== undefined && latestChange > rollout.version ? latestChange : undefined;
}
