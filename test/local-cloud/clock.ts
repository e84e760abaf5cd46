/**
 * Simulated durations. `scale` simulated seconds pass per real second for everything that waits
 * (SQS delays and visibility timeouts, Run Command delivery/expiry, agent latency, Lambda async
 * retry back-off), so a 10-minute delivery timeout takes 0.6 s at scale 1000. Timestamps stay
 * wall-clock (events, DynamoDB items and logs agree with the functions' own Date.now()).
 * Every timer is tracked, so stop() leaves nothing pending.
 */
export class Clock {
  readonly scale: number;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(scale = 1) {
    if (!(scale > 0)) throw new RangeError(`clock scale must be > 0, got ${scale}`);
    this.scale = scale;
  }

  now(): Date {
    return new Date();
  }

  /** Real milliseconds that `simSeconds` simulated seconds take. */
  realMs(simSeconds: number): number {
    return Math.max(0, (simSeconds * 1000) / this.scale);
  }

  /** Runs `fn` after `simSeconds` simulated seconds; returns a cancel function. */
  after(simSeconds: number, fn: () => void): () => void {
    if (this.stopped) return () => undefined;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, this.realMs(simSeconds));
    this.timers.add(timer);
    return () => {
      clearTimeout(timer);
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
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}
