/**
 * A delayed SQS message is never stranded, even when the timer that should announce it fires a
 * millisecond before Date.now() reaches its visibleAt — which Node does (timers run on the
 * monotonic clock, Date.now() on the wall clock; 17% of wake-ups in a measurement for issue 12).
 * The clock's host is driven by hand here, so the early timer happens every time.
 */
import { describe, expect, it } from 'vitest';
import { Clock, type ClockHost } from './clock.ts';
import type { InvocationRecord } from './lambda.ts';
import { SqsEventSourceMapping } from './lambda.ts';
import { Queue, SqsService } from './sqs.ts';

/**
 * Timers due on a monotonic clock; the wall clock (`now`) lags it by `lagMs` once a test sets
 * it — so a timer armed for wall time T fires when the wall clock reads T - lagMs.
 */
class EarlyTimers implements ClockHost {
  monotonic = 1_700_000_000_000;
  lagMs = 0;
  private timers: Array<{ due: number; fn: () => void; id: number }> = [];
  private nextId = 1;

  now(): number {
    return this.monotonic - this.lagMs;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ due: this.monotonic + ms, fn, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((timer) => timer.id !== handle);
  }

  get pending(): number {
    return this.timers.length;
  }

  /** Moves the monotonic clock forward by `ms`, firing due timers in order (and their microtasks). */
  async advance(ms: number): Promise<void> {
    const end = this.monotonic + ms;
    for (;;) {
      this.timers.sort((a, b) => a.due - b.due);
      const timer = this.timers[0];
      if (timer === undefined || timer.due > end) break;
      this.timers.shift();
      this.monotonic = Math.max(this.monotonic, timer.due);
      timer.fn();
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.monotonic = end;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function setup() {
  const host = new EarlyTimers();
  const clock = new Clock(1, host);
  const queue = new Queue(
    { name: 'retries', region: 'eu-west-1', endpoint: 'http://127.0.0.1:1' },
    clock,
    () => undefined,
  );
  const batches: string[][] = [];
  const fn = {
    invoke: async (event: unknown): Promise<InvocationRecord> => {
      const records = (event as { Records: Array<{ body: string }> }).Records;
      batches.push(records.map((record) => record.body));
      return {
        requestId: 'r',
        functionName: 'retry',
        type: 'RequestResponse',
        event,
        startedAt: new Date(0),
        durationMs: 0,
        result: null,
        logs: [],
        attempt: 1,
      };
    },
  };
  const mapping = new SqsEventSourceMapping(
    {
      queue,
      fn,
      region: 'eu-west-1',
      batchSize: 10,
      maximumBatchingWindowInSeconds: 0,
      reportBatchItemFailures: true,
    },
    clock,
  );
  return { host, clock, queue, mapping, batches };
}

describe('SQS delayed messages and a timer that fires 1 ms early', () => {
  it('the early timer really is early: the wake-up finds the message not yet visible', async () => {
    // Arrange
    const { host, clock, queue } = setup();
    const seen: number[] = [];
    queue.onAvailable(() => seen.push(queue.visibleCount()));
    queue.send('retry attempt 2', { delaySeconds: 30 });
    host.lagMs = 1;

    // Act: to the monotonic instant the timer is due (the wall clock reads 1 ms less)
    await host.advance(30_000);

    // Assert: the wall clock is short of visibleAt, the message is not receivable yet
    expect(clock.realNow()).toBe((queue.messages[0]?.visibleAt ?? 0) - 1);
    expect(queue.receive(10)).toEqual([]);
    expect(seen).toEqual([]);
    clock.stop();
  });

  it('the event source mapping still delivers the message to the function', async () => {
    // Arrange
    const { host, clock, mapping, queue, batches } = setup();
    mapping.start();
    queue.send('retry attempt 2', { delaySeconds: 30 });
    host.lagMs = 1;

    // Act
    await host.advance(30_000);
    await host.advance(5);

    // Assert: delivered within a few ms of visibleAt, and deleted after the invocation
    expect(batches).toEqual([['retry attempt 2']]);
    expect(queue.messages).toEqual([]);
    await mapping.stop();
    clock.stop();
  });

  it('keeps polling when no wake-up comes at all: delivered within one long poll', async () => {
    // Arrange: a message slipped in without the queue announcing it (a lost wake-up)
    const { host, clock, mapping, queue, batches } = setup();
    mapping.start();
    queue.messages.push({
      messageId: 'm-1',
      body: 'unannounced',
      md5OfBody: '',
      messageAttributes: {},
      sentTimestamp: clock.nowMs(),
      receiveCount: 0,
      visibleAt: clock.realNow(),
      senderId: 'test',
    });

    // Act
    await host.advance(SqsEventSourceMapping.LONG_POLL_SECONDS * 1000);

    // Assert
    expect(batches).toEqual([['unannounced']]);
    await mapping.stop();
    clock.stop();
  });

  it('a long-polling ReceiveMessage gets the message too', async () => {
    // Arrange
    const host = new EarlyTimers();
    const clock = new Clock(1, host);
    const sqs = new SqsService(clock, 'eu-west-1');
    sqs.endpoint = 'http://127.0.0.1:1';
    const queue = sqs.createQueue({ name: 'status' });
    queue.send('late', { delaySeconds: 5 });
    host.lagMs = 1;
    const reply = sqs.handle({
      method: 'POST',
      path: '/',
      query: new URLSearchParams(),
      headers: { 'x-amz-target': 'AmazonSQS.ReceiveMessage' },
      body: JSON.stringify({ QueueUrl: queue.url, WaitTimeSeconds: 20 }),
      rawBody: Buffer.alloc(0),
      rawQuery: '',
      accessKeyId: 'AKIDEXAMPLE',
      requestId: 'r-1',
    });

    // Act
    await host.advance(5_000);
    await host.advance(5);

    // Assert
    const answer = await Promise.race([
      reply,
      new Promise<undefined>((resolve) => setImmediate(() => resolve(undefined))),
    ]);
    expect(answer).toBeDefined();
    expect(JSON.parse(answer?.body ?? '{}').Messages.map((m: { Body: string }) => m.Body)).toEqual([
      'late',
    ]);
    clock.stop();
  });
});
