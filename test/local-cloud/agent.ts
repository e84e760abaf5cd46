/**
 * SSM Agent on the simulated instances: takes the invocations of an accepted SendCommand, honours
 * MaxConcurrency and MaxErrors, delivers to instances that are running, managed and online, and
 * runs the document's real `aws:runShellScript` steps under /bin/sh with the instance's identity.
 *
 * Lifecycle and statuses (research notes §2.3, "Understanding command statuses"):
 * Pending → (Delayed while the instance is stopped or its agent offline) → InProgress →
 * Success | Failed | ExecutionTimedOut; DeliveryTimedOut when the command expires (TimeoutSeconds
 * + the step's timeoutSeconds) before delivery; Undeliverable when the instance is gone
 * (terminated); Terminated for invocations not started once MaxErrors is exceeded. An invocation
 * that ended before the agent received it (CancelCommand, or the command's CloudWatch alarm —
 * see SsmService.checkAlarms) is never run.
 *
 * The script: rendered by ssm-document.ts (ENV_VAR interpolation, SSM Agent 3.3.2746.0+), written
 * to the agent's orchestration directory as `_script.sh` (mode 0700) and run as `sh -c
 * <script>` (runshellscript.go). Parameters whose name ends in `Path` are absolute paths on the
 * instance and are mapped into its directory. PATH starts with the fleet's shims (aws, chown,
 * systemctl); AWS_ACCESS_KEY_ID is the instance id, so the local SSM knows who fetches.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Clock } from './clock.ts';
import type { Fleet, Instance } from './fleet.ts';
import { type CommandState, maxConcurrencyOf, maxErrorsOf, type SsmService } from './ssm.ts';
import { renderRunShellScript } from './ssm-document.ts';

export interface AgentOptions {
  ssm: SsmService;
  fleet: Fleet;
  clock: Clock;
  region: string;
  ssmEndpoint: string;
  /** Where the instances' `aws secretsmanager` calls go. */
  secretsManagerEndpoint?: string;
  /** Simulated seconds between SendCommand and the agent picking an invocation up. Default 1. */
  deliverySeconds?: number;
  /** Real milliseconds an execution timeout can never go below (scripts run in real time). Default 10000. */
  executionTimeoutFloorMs?: number;
  /**
   * Benchmarks only: instead of running the document under /bin/sh (a node process for the
   * `aws` shim per run, too slow for 1,000 instances on 2 cores), write the current value to
   * DestinationPath and print the document's result line. Statuses and events are unchanged;
   * instance faults (fetch failures, owners, formats) are NOT simulated.
   */
  stubScript?: boolean;
}

// SSM Agent's exit code for a step it stopped (CommandStoppedPreemptivelyExitCode,
// amazon-ssm-agent agent/appconfig/constants_unix.go; also shared/document-contract.ts).
const STOPPED_EXIT_CODE = 137;

export class Agents {
  private readonly options: AgentOptions;
  private readonly children = new Set<ChildProcess>();
  private readonly unsubscribers = new Set<() => void>();
  private stopped = false;

  constructor(options: AgentOptions) {
    this.options = options;
  }

  /** Runs a command's invocations, at most MaxConcurrency at a time. */
  dispatch(command: CommandState): void {
    const waiting = [...command.instanceIds];
    const limit = maxConcurrencyOf(command);
    let active = 0;
    const next = () => {
      if (this.stopped) return;
      const { ErrorCount } = this.options.ssm.counts(command);
      if (ErrorCount > maxErrorsOf(command)) {
        // "Terminated: The parent command exceeded its max-errors limit and subsequent command
        // invocations were canceled by the system."
        for (const instanceId of waiting.splice(0)) {
          this.options.ssm.updateInvocation(command, instanceId, {
            status: 'Cancelled',
            statusDetails: 'Terminated',
          });
        }
        return;
      }
      while (active < limit && waiting.length > 0) {
        const instanceId = waiting.shift() as string;
        active += 1;
        void this.deliver(command, instanceId).finally(() => {
          active -= 1;
          next();
        });
      }
    };
    next();
  }

  private deliver(command: CommandState, instanceId: string): Promise<void> {
    const { ssm, fleet, clock } = this.options;
    return new Promise<void>((resolve) => {
      let running = false;
      let done = false;
      const cleanups: Array<() => void> = [];
      const finish = () => {
        if (done) return;
        done = true;
        for (const cleanup of cleanups) cleanup();
        resolve();
      };
      // The command expires TimeoutSeconds + execution timeout after it was sent.
      const expiresInSeconds = (command.expiresAfter.getTime() - clock.nowMs()) / 1000;
      cleanups.push(
        clock.after(Math.max(0, expiresInSeconds), () => {
          if (running) return;
          ssm.updateInvocation(command, instanceId, {
            status: 'TimedOut',
            statusDetails: 'DeliveryTimedOut',
          });
          finish();
        }),
      );
      const attempt = () => {
        if (done || running || this.stopped) return;
        const invocation = command.invocations.get(instanceId);
        if (invocation === undefined || ssm.isTerminal(invocation)) {
          finish();
          return;
        }
        const instance = fleet.find(instanceId);
        if (
          !instance ||
          instance.state === 'terminated' ||
          instance.state === 'shutting-down' ||
          !instance.managed
        ) {
          ssm.updateInvocation(command, instanceId, {
            status: 'Failed',
            statusDetails: 'Undeliverable',
          });
          finish();
          return;
        }
        if (!instance.reachable) {
          ssm.updateInvocation(command, instanceId, {
            status: 'Delayed',
            statusDetails: 'Delayed',
          });
          return;
        }
        running = true;
        const latency =
          (this.options.deliverySeconds ?? 1) + (instance.faults.agentLatencySeconds ?? 0);
        cleanups.push(
          clock.after(latency, () => {
            void this.run(command, instance).finally(finish);
          }),
        );
      };
      const onChange = (changed: Instance | { instance: Instance }) => {
        const instance = 'instance' in changed ? changed.instance : changed;
        if (instance.id === instanceId) attempt();
      };
      fleet.on('online', onChange);
      fleet.on('state', onChange);
      const unsubscribe = () => {
        fleet.off('online', onChange);
        fleet.off('state', onChange);
      };
      this.unsubscribers.add(unsubscribe);
      cleanups.push(() => {
        unsubscribe();
        this.unsubscribers.delete(unsubscribe);
      });
      attempt();
    });
  }

  private async run(command: CommandState, instance: Instance): Promise<void> {
    const { ssm, clock, fleet, region, ssmEndpoint } = this.options;
    if (this.stopped) return;
    // Ended before the agent received it (CancelCommand, or the command's alarm): never runs.
    const invocation = command.invocations.get(instance.id);
    if (invocation === undefined || ssm.isTerminal(invocation)) return;
    const resolved = { ...command.resolved };
    for (const [name, value] of Object.entries(resolved)) {
      if (name.endsWith('Path') && typeof value === 'string' && value.startsWith('/'))
        resolved[name] = instance.path(value);
    }
    const start = clock.now();
    ssm.updateInvocation(command, instance.id, {
      status: 'InProgress',
      statusDetails: 'InProgress',
      executionStart: start,
    });
    if (this.options.stubScript) {
      await this.stubRun(command, instance, resolved, start);
      return;
    }
    const steps = renderRunShellScript(command.document, resolved, {
      instanceId: instance.id,
      region,
      platformType: 'Linux',
    });
    let stdout = '';
    let stderr = '';
    let exitCode = 0;
    let timedOut = false;
    for (const step of steps) {
      const dir = instance.path(
        `/var/lib/amazon/ssm/${instance.id}/document/orchestration/${command.commandId}/${step.stepName}`,
      );
      mkdirSync(dir, { recursive: true });
      const script = join(dir, '_script.sh');
      writeFileSync(script, step.script, { mode: 0o700 });
      const timeoutMs = Math.max(
        clock.realMs(step.timeoutSeconds),
        this.options.executionTimeoutFloorMs ?? 10_000,
      );
      const result = await this.execute(script, dir, timeoutMs, {
        PATH: `${fleet.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        HOME: instance.path('/root'),
        LANG: 'C.UTF-8',
        AWS_ACCESS_KEY_ID: instance.id,
        AWS_SECRET_ACCESS_KEY: 'local-cloud-instance-secret',
        AWS_ENDPOINT_URL_SSM: ssmEndpoint,
        ...(this.options.secretsManagerEndpoint === undefined
          ? {}
          : { AWS_ENDPOINT_URL_SECRETS_MANAGER: this.options.secretsManagerEndpoint }),
        LOCAL_CLOUD_INSTANCE_STATE: instance.stateDir,
        // The document's root-only state directory (its lock), inside the instance like the rest.
        SECRETS_FANOUT_STATE_DIR: instance.path('/var/lib/secrets-fanout'),
        ...step.env,
      });
      writeFileSync(join(dir, 'stdout'), result.stdout);
      writeFileSync(join(dir, 'stderr'), result.stderr);
      stdout += result.stdout;
      stderr += result.stderr;
      exitCode = result.code;
      timedOut = result.timedOut;
      if (exitCode !== 0 || timedOut) break;
    }
    if (this.stopped) return;
    const end = clock.now();
    if (timedOut) {
      ssm.updateInvocation(command, instance.id, {
        status: 'TimedOut',
        statusDetails: 'ExecutionTimedOut',
        responseCode: STOPPED_EXIT_CODE,
        executionEnd: end,
        stdout,
        stderr,
      });
    } else {
      ssm.updateInvocation(command, instance.id, {
        status: exitCode === 0 ? 'Success' : 'Failed',
        statusDetails: exitCode === 0 ? 'Success' : 'Failed',
        responseCode: exitCode,
        executionEnd: end,
        stdout,
        stderr,
      });
    }
  }

  /**
   * The stub's fetch against Parameter Store's throughput quota, with the document's retries on
   * the simulated clock: each CLI call makes up to 6 attempts (standard mode: random wait up to
   * min(20 s, 2^i s)), and the script tries a throttled call again up to 10 times, waiting 2 s
   * doubling to 60 s with equal jitter, within 300 s (documents/replace-secrets-file.yml).
   * False when it gives up (FetchFailed). Without a quota set, every fetch is admitted at once.
   */
  private async stubFetch(instanceId: string): Promise<boolean> {
    const { ssm, clock } = this.options;
    if (ssm.parameterThroughput === undefined) return ssm.admitParameterRead(instanceId);
    const started = clock.nowMs();
    for (let call = 1; call <= 10; call += 1) {
      for (let attempt = 0; attempt < 6; attempt += 1) {
        if (ssm.admitParameterRead(instanceId)) return true;
        if (attempt < 5) await clock.sleep(Math.random() * Math.min(20, 2 ** attempt));
        if (this.stopped) return false;
      }
      const ceiling = Math.min(60, 2 * 2 ** (call - 1));
      if ((clock.nowMs() - started) / 1000 + ceiling + 60 > 300) return false;
      await clock.sleep(ceiling / 2 + (Math.random() * ceiling) / 2);
      if (this.stopped) return false;
    }
    return false;
  }

  private async stubRun(
    command: CommandState,
    instance: Instance,
    resolved: Record<string, unknown>,
    start: Date,
  ): Promise<void> {
    const fetched = await this.stubFetch(instance.id);
    if (this.stopped) return;
    // A pinned name (`/prod/env.php:7`) selects that version, as the document's fetch does.
    let current: { Value: string; Version: number } | undefined;
    try {
      current = this.options.ssm.selectParameter(String(resolved.ParameterName ?? '')).version;
    } catch {
      current = undefined;
    }
    const destination = String(resolved.DestinationPath ?? '');
    let stdout = '';
    let exitCode = 0;
    if (!fetched) {
      exitCode = 75;
      stdout = 'secrets-fanout result=failed reason=fetch-throttled\n';
    } else if (current === undefined || destination === '') {
      exitCode = 75;
      stdout = 'secrets-fanout result=failed reason=fetch-failed\n';
    } else {
      mkdirSync(dirname(destination), { recursive: true });
      writeFileSync(destination, current.Value, { mode: 0o400 });
      stdout = `secrets-fanout result=updated version=${current.Version}\n`;
    }
    await new Promise((resolve) => setImmediate(resolve));
    if (this.stopped) return;
    this.options.ssm.updateInvocation(command, instance.id, {
      status: exitCode === 0 ? 'Success' : 'Failed',
      statusDetails: exitCode === 0 ? 'Success' : 'Failed',
      responseCode: exitCode,
      executionStart: start,
      executionEnd: this.options.clock.now(),
      stdout,
      stderr: '',
    });
  }

  private execute(
    script: string,
    cwd: string,
    timeoutMs: number,
    env: Record<string, string>,
  ): Promise<{ code: number; stdout: string; stderr: string; timedOut: boolean }> {
    return new Promise((resolve) => {
      const child = spawn('/bin/sh', ['-c', script], {
        cwd,
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.children.add(child);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup(child);
      }, timeoutMs);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        this.children.delete(child);
        resolve({
          code: code ?? (signal ? 128 + 9 : 1),
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
          timedOut,
        });
      });
    });
  }

  /** Kills running scripts and stops delivering. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const unsubscribe of this.unsubscribers) unsubscribe();
    this.unsubscribers.clear();
    const closing = [...this.children].map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('close', () => resolve());
          killGroup(child);
        }),
    );
    await Promise.all(closing);
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}
