/**
 * The inside of one local Lambda execution environment (a worker thread with the function's own
 * environment variables): imports the bundle's handler once (cold start), then runs one
 * invocation at a time, as the Node.js runtime does. Everything the function writes to stdout /
 * stderr is sent to the main thread tagged with the request id, in order with the result.
 */
import { parentPort, workerData } from 'node:worker_threads';

interface InvokeMessage {
  type: 'invoke';
  requestId: string;
  event: unknown;
  context: {
    functionName: string;
    functionVersion: string;
    invokedFunctionArn: string;
    memoryLimitInMB: string;
    logGroupName: string;
    logStreamName: string;
    deadline: number;
  };
}

const { bundlePath, exportName, clock } = workerData as {
  bundlePath: string;
  exportName: string;
  /** The local cloud's clock (clock.ts): simulated = origin + (real - origin) × scale. */
  clock: { originMs: number; scale: number };
};

/**
 * One clock: the function reads the local cloud's simulated time (`new Date()`, `Date.now()`),
 * so what it writes to DynamoDB, and the due times, budgets and leases it compares with event
 * times, move at the pace of every wait in the local cloud. A clock also running ahead
 * (LOCAL_CLOUD_CLOCK_AHEAD_SECONDS) lets a test start a function past a budget. Set before the
 * bundle loads. Timers (setTimeout) and the invocation deadline stay real.
 */
const aheadMs = Number(process.env.LOCAL_CLOUD_CLOCK_AHEAD_SECONDS ?? 0) * 1000;
const realNow = Date.now.bind(Date);
const simNow = () =>
  Math.round(clock.originMs + (realNow() - clock.originMs) * clock.scale) + aheadMs;
if (aheadMs !== 0 || clock.scale !== 1) {
  // A Proxy rather than a subclass: `Date()` called without `new` still returns a string, and
  // `instanceof Date`, Date.parse, Date.UTC and the prototype stay the real ones.
  const RealDate = Date;
  globalThis.Date = new Proxy(RealDate, {
    construct: (target, args: unknown[], newTarget) =>
      Reflect.construct(target, args.length === 0 ? [simNow()] : args, newTarget),
    apply: () => new RealDate(simNow()).toString(),
    get: (target, property, receiver) =>
      property === 'now' ? simNow : Reflect.get(target, property, receiver),
  });
}

const port = parentPort;
if (!port) throw new Error('lambda-runtime.ts must run in a worker thread');
let currentRequestId = '';

for (const stream of ['stdout', 'stderr'] as const) {
  const target = process[stream];
  target.write = ((chunk: string | Uint8Array, encoding?: unknown, callback?: unknown) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    port.postMessage({ type: 'log', requestId: currentRequestId, stream, text });
    const done = typeof encoding === 'function' ? encoding : callback;
    if (typeof done === 'function') queueMicrotask(() => (done as () => void)());
    return true;
  }) as typeof target.write;
}

function serializeError(error: unknown): {
  errorType: string;
  errorMessage: string;
  trace: string[];
} {
  const err = error instanceof Error ? error : new Error(String(error));
  return { errorType: err.name, errorMessage: err.message, trace: (err.stack ?? '').split('\n') };
}

let handler: ((event: unknown, context: unknown) => Promise<unknown>) | undefined;
let initError: unknown;
try {
  const module = (await import(new URL(`file://${bundlePath}`).href)) as Record<string, unknown>;
  const candidate = module[exportName];
  if (typeof candidate !== 'function') {
    throw Object.assign(new Error(`${bundlePath} does not export ${exportName}`), {
      name: 'Runtime.HandlerNotFound',
    });
  }
  handler = candidate as typeof handler;
} catch (error) {
  initError = error;
}

port.on('message', async (message: InvokeMessage) => {
  if (message.type !== 'invoke') return;
  currentRequestId = message.requestId;
  const { deadline, ...fields } = message.context;
  const context = {
    ...fields,
    awsRequestId: message.requestId,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - realNow()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
  try {
    if (!handler) throw initError;
    const result = await handler(message.event, context);
    port.postMessage({
      type: 'result',
      requestId: message.requestId,
      ok: true,
      result: result === undefined ? null : result,
    });
  } catch (error) {
    port.postMessage({
      type: 'result',
      requestId: message.requestId,
      ok: false,
      error: serializeError(error),
    });
  }
});
port.postMessage({ type: 'ready' });
