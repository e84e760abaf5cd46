/**
 * The guided demo `npm start` plays (and test/e2e/demo.test.ts plays against its own cloud):
 * steps as data, each labelled on screen as it happens, and a runner. It needs the service
 * packaged with the demo's dotenv-checked file (`withDemoDotenvFile`): the shipped mapping is a
 * single `raw` file, which only an empty value fails, and Parameter Store refuses empty values.
 *
 * The fleet is honest about what each environment shows: dev and staging are fully reachable
 * (a clean rollout there ends Success everywhere); prod has an instance without an SSM agent,
 * shown in its own step. Demo values are obviously fake and never printed.
 */
import type { Rollout } from '../../shared/rollout/model.ts';
import type { RolloutStore } from '../../shared/rollout/store.ts';
import { DEMO_DOTENV_FILE } from '../support/package.ts';
import type { GroupSpec, ScalingActivity } from './autoscaling.ts';
import type { InstanceSpec, LocalCloud } from './cloud.ts';

export const ENV_PHP = '/var/www/html/env.php';
export const SECRETS_ENV = DEMO_DOTENV_FILE;

export const DEMO_INSTANCES = {
  devA: 'i-0de0000000000d001',
  devB: 'i-0de0000000000d002',
  stagingA: 'i-0de0000000000c001',
  stagingB: 'i-0de0000000000c002',
  prodA: 'i-0de0000000000a001',
  prodB: 'i-0de0000000000a002',
  prodNoAgent: 'i-0de0000000000a004',
} as const;

export const DEMO_FLEET: InstanceSpec[] = [
  { id: DEMO_INSTANCES.devA, tags: { Environment: 'dev', Name: 'web-dev-a' } },
  { id: DEMO_INSTANCES.devB, tags: { Environment: 'dev', Name: 'web-dev-b' } },
  { id: DEMO_INSTANCES.stagingA, tags: { Environment: 'staging', Name: 'web-staging-a' } },
  { id: DEMO_INSTANCES.stagingB, tags: { Environment: 'staging', Name: 'web-staging-b' } },
  { id: DEMO_INSTANCES.prodA, tags: { Environment: 'prod', Name: 'web-prod-a' } },
  { id: DEMO_INSTANCES.prodB, tags: { Environment: 'prod', Name: 'web-prod-b' } },
  // Tagged and running, but its SSM agent is not registered: Unreachable (step 4).
  {
    id: DEMO_INSTANCES.prodNoAgent,
    tags: { Environment: 'prod', Name: 'web-prod-no-agent' },
    managed: false,
  },
];

export const DEMO_GROUP = 'web-staging';

/** A staging group with the README's launch hook (AWS's default heartbeat, 3,600 s). */
export const DEMO_GROUPS: GroupSpec[] = [
  {
    name: DEMO_GROUP,
    tags: [
      { key: 'Environment', value: 'staging' },
      { key: 'Name', value: 'web-staging-asg' },
    ],
    launchHook: { name: 'secrets-fanout', heartbeatTimeout: 3600, defaultResult: 'ABANDON' },
  },
];

/** Obviously fake values; the invalid one's line 2 is not KEY=value. */
export const DEMO_VALUES = {
  devPhp: "<?php\nreturn ['db_password' => 'demo-dev-password'];\n",
  stagingDotenvV1: 'DB_PASSWORD=demo-staging-password\n',
  stagingDotenvInvalid:
    'DB_PASSWORD=demo-staging-password-2\nAPI_TOKEN demo-token-without-equals\n',
  stagingDotenvFixed: 'DB_PASSWORD=demo-staging-password-2\nAPI_TOKEN=demo-token\n',
  stagingPhp: "<?php\nreturn ['db_password' => 'demo-staging-password'];\n",
  prodPhp: "<?php\nreturn ['db_password' => 'demo-prod-password'];\n",
} as const;

/** What the format-check step says after the invalid value's rollout settled, before the fix. */
export const FIX_NOTE = 'fixing the value, as the alert says: the next put is pushed everywhere';

export interface DemoContext {
  cloud: LocalCloud;
  store: RolloutStore;
  /** Real milliseconds to wait for one rollout (or one lifecycle) at most. */
  timeoutMs: number;
  /** A line for the user, shown under the step. */
  say(text: string): void;
}

export interface StepOutcome {
  /** The rollouts the step started, oldest first, each settled (and its alert sent, if any). */
  rollouts: Rollout[];
  /** Scale-out only: the new instance, and whether each file was on disk when its lifecycle action completed. */
  scaleOut?: { instanceId: string; completion?: ScalingActivity; filesAtCompletion: string[] };
}

export interface DemoStep {
  title: string;
  /** The environment the step works on (the screen shows its instances). */
  environment: string;
  /** What to expect, shown while the step runs. */
  expect: string;
  run(ctx: DemoContext): Promise<StepOutcome>;
}

function done(rollout: Rollout): boolean {
  return rollout.state === 'Settled' && (rollout.alert === 'None' || rollout.alert === 'Sent');
}

async function rolloutIds(
  store: RolloutStore,
  by: { parameter: string } | { environment: string },
): Promise<Set<string>> {
  return new Set((await store.recentRollouts(by, 20)).map((entry) => entry.rolloutId));
}

/** Waits until the rollout is settled and its alert (if it needs one) is out. */
export async function settled(ctx: DemoContext, rolloutId: string): Promise<Rollout> {
  return ctx.cloud.waitFor(
    async () => {
      const [rollout] = await ctx.store.getRollouts([rolloutId]);
      return rollout && done(rollout) ? rollout : undefined;
    },
    { message: `rollout ${rolloutId} to settle`, timeoutMs: ctx.timeoutMs },
  );
}

/** Puts a parameter and waits for the rollout its change starts to settle. */
export async function putAndSettle(
  ctx: DemoContext,
  parameter: string,
  value: string,
): Promise<Rollout> {
  const before = await rolloutIds(ctx.store, { parameter });
  const version = ctx.cloud.putParameter(parameter, value);
  ctx.say(`put ${parameter} (version ${version})`);
  const rolloutId = await ctx.cloud.waitFor(
    async () => [...(await rolloutIds(ctx.store, { parameter }))].find((id) => !before.has(id)),
    { message: `a rollout of ${parameter} v${version}`, timeoutMs: ctx.timeoutMs },
  );
  return settled(ctx, rolloutId);
}

export const DEMO_STORY: DemoStep[] = [
  {
    title: 'A clean rollout: /dev/env.php to dev, where every instance is reachable',
    environment: 'dev',
    expect: 'expect: Success on both dev instances, no alert',
    run: async (ctx) => ({
      rollouts: [await putAndSettle(ctx, '/dev/env.php', DEMO_VALUES.devPhp)],
    }),
  },
  {
    title: 'A value that fails the format check: staging /etc/app/secrets.env (dotenv)',
    environment: 'staging',
    expect:
      'expect: v1 lands; v2 (line 2 is not KEY=value) fails on both instances, their file stays v1, one alert; the fixed v3 lands',
    run: async (ctx) => {
      const parameter = '/staging/app/secrets.env';
      const good = await putAndSettle(ctx, parameter, DEMO_VALUES.stagingDotenvV1);
      const bad = await putAndSettle(ctx, parameter, DEMO_VALUES.stagingDotenvInvalid);
      ctx.say(FIX_NOTE);
      const fixed = await putAndSettle(ctx, parameter, DEMO_VALUES.stagingDotenvFixed);
      return { rollouts: [good, bad, fixed] };
    },
  },
  {
    title:
      'A flaky fetch that a retry fixes: /staging/env.php, web-staging-b fails its first fetch',
    environment: 'staging',
    expect:
      'expect: web-staging-b fails once (exit 75), the retry succeeds: Success everywhere, no alert',
    run: async (ctx) => {
      ctx.cloud.fleet.setFaults(DEMO_INSTANCES.stagingB, { fetchFailures: 1 });
      return { rollouts: [await putAndSettle(ctx, '/staging/env.php', DEMO_VALUES.stagingPhp)] };
    },
  },
  {
    title: 'An unreachable instance: /prod/env.php, web-prod-no-agent has no SSM agent',
    environment: 'prod',
    expect: 'expect: Success on the two others, web-prod-no-agent Unreachable, one alert',
    run: async (ctx) => ({
      rollouts: [await putAndSettle(ctx, '/prod/env.php', DEMO_VALUES.prodPhp)],
    }),
  },
  {
    title: `A scale-out: ${DEMO_GROUP} launches an instance; it gets its files before it is in service`,
    environment: 'staging',
    expect:
      'expect: Pending:Wait (launch lifecycle hook), both files written, the action completed with CONTINUE, InService',
    run: async (ctx) => {
      const { cloud } = ctx;
      const before = await rolloutIds(ctx.store, { environment: 'staging' });
      let completion: ScalingActivity | undefined;
      const filesAtCompletion: string[] = [];
      const listener = (activity: ScalingActivity) => {
        if (activity.kind !== 'lifecycle-action-completed') return;
        completion = activity;
        const instance = cloud.fleet.get(activity.instanceId);
        for (const path of [ENV_PHP, SECRETS_ENV])
          if (instance.exists(path)) filesAtCompletion.push(path);
      };
      cloud.autoscaling.on('activity', listener);
      try {
        const instance = cloud.scaleOut(DEMO_GROUP, { registerAfterSeconds: 20 });
        ctx.say(
          `launched ${instance.id}: Pending:Wait until the service completes its lifecycle action`,
        );
        await cloud.waitFor(() => cloud.autoscaling.lifecycleState(instance.id) === 'InService', {
          message: `${instance.id} to be InService`,
          timeoutMs: ctx.timeoutMs,
        });
        const ids = [...(await rolloutIds(ctx.store, { environment: 'staging' }))].filter(
          (id) => !before.has(id),
        );
        const rollouts: Rollout[] = [];
        for (const id of ids.sort()) rollouts.push(await settled(ctx, id));
        return {
          rollouts,
          scaleOut: {
            instanceId: instance.id,
            ...(completion === undefined ? {} : { completion }),
            filesAtCompletion,
          },
        };
      } finally {
        cloud.autoscaling.off('activity', listener);
      }
    },
  },
  {
    title: 'A manual re-sync: POST /environments/dev/resync {"parameter":"/dev/env.php"}',
    environment: 'dev',
    expect: 'expect: a rollout triggered by the resync; both dev files are already v1: Unchanged',
    run: async (ctx) => {
      const response = await ctx.cloud.callApi('/environments/dev/resync', {
        method: 'POST',
        body: { parameter: '/dev/env.php' },
      });
      if (response.status !== 202 && response.status !== 200)
        throw new Error(`resync answered ${response.status}: ${response.text}`);
      ctx.say(`resync answered ${response.status}: rollout ${response.json.rolloutId}`);
      return { rollouts: [await settled(ctx, response.json.rolloutId)] };
    },
  },
];

export interface StoryListener {
  step(index: number, step: DemoStep): void;
  say(text: string): void;
  /** The runner waits for it before the next step (a screen can catch up first). */
  stepDone(index: number, step: DemoStep, outcome: StepOutcome): void | Promise<void>;
}

/** Plays the steps in order; resolves with each step's outcome. Throws what a step threw. */
export async function runStory(
  cloud: LocalCloud,
  store: RolloutStore,
  listener: StoryListener,
  options: { steps?: DemoStep[]; timeoutMs?: number; pauseMs?: number } = {},
): Promise<StepOutcome[]> {
  const steps = options.steps ?? DEMO_STORY;
  const ctx: DemoContext = {
    cloud,
    store,
    timeoutMs: options.timeoutMs ?? 120_000,
    say: (text) => listener.say(text),
  };
  const outcomes: StepOutcome[] = [];
  for (const [index, step] of steps.entries()) {
    listener.step(index + 1, step);
    const outcome = await step.run(ctx);
    outcomes.push(outcome);
    await listener.stepDone(index + 1, step, outcome);
    // Time to read a step's result on a live screen before the next one replaces its label.
    if (options.pauseMs && index < steps.length - 1)
      await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
  }
  return outcomes;
}
