/**
 * The guided demo on the console: plays the story (demo.ts) and labels each step on screen as
 * it happens, with what to expect and, once done, how its rollouts ended. `npm start` and the
 * demo's end-to-end test both go through here, so the test sees what a user sees.
 */
import type { LocalCloud } from '../cloud.ts';
import { DEMO_STORY, type DemoStep, runStory, type StepOutcome } from '../demo.ts';
import type { ConsoleDriver } from './drivers.ts';
import type { ConsoleModel } from './model.ts';
import { outcomeText, tallyText } from './render.ts';
import { rolloutStoreOf, type Watcher } from './watch.ts';

export const STORY_OVER =
  'the story is over; the cloud is yours: try the commands above (Ctrl-C stops)';

/**
 * Plays the story; resolves with each step's outcome, or undefined if a step failed (the
 * screen says which and why; the cloud keeps running).
 */
export async function playDemo(
  cloud: LocalCloud,
  model: ConsoleModel,
  driver: ConsoleDriver,
  watcher: Watcher,
  options: {
    steps?: DemoStep[];
    timeoutMs?: number;
    /** Real milliseconds between steps (a person reading a live screen); default none. */
    pauseMs?: number;
    onSay?: (text: string) => void;
  } = {},
): Promise<StepOutcome[] | undefined> {
  const steps = options.steps ?? DEMO_STORY;
  const total = steps.length;
  const show = (step: NonNullable<ConsoleModel['step']>) => {
    model.step = step;
    driver.event({ kind: 'step', step });
    driver.changed();
  };
  try {
    const outcomes = await runStory(
      cloud,
      rolloutStoreOf(cloud),
      {
        step(index, step) {
          model.selectedEnvironment = step.environment;
          show({ index, total, title: step.title, detail: step.expect });
          driver.event({ kind: 'note', text: `  ${step.expect}` });
        },
        say(text) {
          options.onSay?.(text);
          if (model.step) model.step.detail = `${model.step.detail?.split('\n')[0]}\n${text}`;
          driver.event({ kind: 'note', text: `  ${text}` });
          driver.changed();
        },
        async stepDone(index, step, outcome) {
          // The screen shows each rollout settle before the step says it is done.
          await watcher.refresh();
          const summary = outcome.rollouts
            .map(
              (r) =>
                `${r.parameters.join(', ')}${r.version === undefined ? '' : ` v${r.version}`}: ${outcomeText(r)} (${tallyText(r.counts)})`,
            )
            .join('; ');
          if (model.step) model.step.detail = `${step.expect}\ndone: ${summary}`;
          driver.event({ kind: 'note', text: `step ${index}/${total} done: ${summary}` });
          driver.changed();
        },
      },
      {
        steps,
        ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
        ...(options.pauseMs === undefined ? {} : { pauseMs: options.pauseMs }),
      },
    );
    await watcher.refresh();
    show({ index: 0, total, title: STORY_OVER });
    return outcomes;
  } catch (error) {
    show({
      index: 0,
      total,
      title: `the demo stopped: ${(error as Error).message}; the cloud keeps running`,
    });
    return undefined;
  }
}
