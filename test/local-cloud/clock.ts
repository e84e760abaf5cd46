/**
 * The local cloud's one clock. `scale` simulated seconds pass per real second, for everything
 * that waits (SQS delays and visibility timeouts, Run Command delivery/expiry, agent latency,
 * Lambda async retry back-off) and for every timestamp (`now()`: event times, command dates, SQS
 * SentTimestamp, and — through lambda-runtime.ts — the functions' own `Date.now()`, so what they
 * write to DynamoDB and compare against a due time moves at the same pace). A 10-minute delivery
 * timeout takes 0.6 s at scale 1000, and a sweep due 22 minutes after a rollout acts 1.3 s later.
 *
 * Simulated time starts at the real time the clock is made: sim = origin + (real - origin) × scale.
 * Every timer is tracked, so stop() leaves nothing pending. The timers and the real time come
 * from a `ClockHost` (Node's by default), so a test can drive them — including Node's habit of
 * firing a timer a millisecond before `Date.now()` reaches its due time (timers run on the
 * monotonic clock, Date.now() on the wall clock).
 */
export interface ClockHost {
  /** Real epoch milliseconds (the wall clock). */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const nodeHost: ClockHost = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class Clock {
  readonly scale: number;
  /** Real epoch ms at which the clock was made; simulated time equals real time there. */
  readonly originMs: number;
  private readonly host: ClockHost;
  private readonly timers = new Set<unknown>();
  private stopped = false;

  constructor(scale = 1, host: ClockHost = nodeHost) {
    if (!(scale > 0)) throw new RangeError(`clock scale must be > 0, got ${scale}`);
    this.scale = scale;
    this.host = host;
    this.originMs = host.now();
  }

  /** Real epoch milliseconds: what SQS visibility and every timer are measured in. */
  realNow(): number {
    return this.host.now();
  }

  /** Simulated epoch milliseconds. */
  nowMs(): number {
    return this.simAt(this.realNow());
  }

  /** The simulated time. */
  now(): Date {
    return new Date(this.nowMs());
  }

  /** The simulated epoch ms at real epoch ms `realMs`. */
  simAt(realMs: number): number {
    return Math.round(this.originMs + (realMs - this.originMs) * this.scale);
  }

  /** Real milliseconds that `simSeconds` simulated seconds take. */
  realMs(simSeconds: number): number {
    return Math.max(0, (simSeconds * 1000) / this.scale);
  }

  /** Runs `fn` after `simSeconds` simulated seconds; returns a cancel function. */
  after(simSeconds: number, fn: () => void): () => void {
    return this.afterRealMs(this.realMs(simSeconds), fn);
  }

  /** Runs `fn` after `ms` real milliseconds; returns a cancel function. */
  afterRealMs(ms: number, fn: () => void): () => void {
    if (this.stopped) return () => undefined;
    const timer = this.host.setTimeout(
      () => {
        this.timers.delete(timer);
        fn();
      },
      Math.max(0, ms),
    );
    this.timers.add(timer);
    return () => {
      this.host.clearTimeout(timer);
      this.timers.delete(timer);
    };
  }

  /** Resolves after `simSeconds` simulated seconds (never, once stopped). */
  sleep(simSeconds: number): Promise<void> {
    return new Promise((resolve) => {
      this.after(simSeconds, resolve);
    });
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers) this.host.clearTimeout(timer);
    this.timers.clear();
  }
}
