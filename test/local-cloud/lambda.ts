/**
 * Lambda for the functions of the packaged template: each function's zip is extracted, its
 * Environment resolved from the template, and its handler run in a worker thread of its own
 * (its own process.env), one invocation at a time, with a Lambda context. The environment adds
 * what the Node.js runtime sets (AWS_REGION, AWS_LAMBDA_FUNCTION_NAME, LAMBDA_TASK_ROOT, …,
 * https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime),
 * credentials naming the function (so the local SSM knows a function is calling) and the local
 * endpoints (AWS_ENDPOINT_URL_<SERVICE>). X-Ray is off (POWERTOOLS_TRACE_ENABLED=false): there is
 * no daemon to send segments to.
 *
 * Asynchronous invocation (EventBridge, SNS): on error, two retries one then two minutes apart
 * (EventInvokeConfig MaximumRetryAttempts / MaximumEventAgeInSeconds), then the OnFailure
 * destination (a record in the documented shape) or the function's dead-letter queue
 * (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html).
 *
 * SQS event source mappings: BatchSize, MaximumBatchingWindowInSeconds, ReportBatchItemFailures
 * (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html): a failed batch
 * stays on the queue (visible again after the visibility timeout, redriven by the queue); with
 * ReportBatchItemFailures only the reported items stay; an empty or unknown itemIdentifier fails
 * the whole batch.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Clock } from './clock.ts';
import { lambdaSqsRecord, type Queue, type QueueMessage } from './sqs.ts';

type Json = Record<string, any>;

export interface InvocationRecord {
  requestId: string;
  functionName: string;
  type: 'RequestResponse' | 'Event';
  event: unknown;
  startedAt: Date;
  durationMs: number;
  result?: unknown;
  error?: { errorType: string; errorMessage: string; trace: string[] };
  logs: string[];
  /** For async invocations: 1 for the first attempt, 2 and 3 for the retries. */
  attempt: number;
}

export interface FunctionOptions {
  name: string;
  logicalId: string;
  arn: string;
  region: string;
  codeDir: string;
  handler: string;
  environment: Record<string, string>;
  timeoutSeconds: number;
  memorySize: number;
  asyncConfig: {
    maximumRetryAttempts: number;
    maximumEventAgeInSeconds: number;
    onSuccess?: string;
    onFailure?: string;
  };
  deadLetterArn?: string;
}

/** Where an async invocation's records go: SQS, SNS, Lambda or EventBridge ARNs. */
export type SendToArn = (arn: string, payload: string, attributes?: Record<string, string>) => void;

export class LambdaFunction {
  readonly options: FunctionOptions;
  readonly invocations: InvocationRecord[] = [];
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private pending = new Map<string, { resolve: (message: Json) => void; logs: string[] }>();
  private readonly clock: Clock;
  private readonly sendToArn: SendToArn;
  private readonly listeners = new Set<(record: InvocationRecord) => void>();
  private stopped = false;

  constructor(options: FunctionOptions, clock: Clock, sendToArn: SendToArn) {
    this.options = options;
    this.clock = clock;
    this.sendToArn = sendToArn;
  }

  get name(): string {
    return this.options.name;
  }

  onInvocation(listener: (record: InvocationRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    const [file = '', exportName = 'handler'] = splitHandler(this.options.handler);
    const worker = new Worker(new URL('./lambda-runtime.ts', import.meta.url), {
      env: this.options.environment,
      workerData: {
        bundlePath: join(this.options.codeDir, `${file}.mjs`),
        exportName,
        clock: { originMs: this.clock.originMs, scale: this.clock.scale },
      },
      stdout: true,
      stderr: true,
    });
    worker.stdout.resume();
    worker.stderr.resume();
    this.worker = worker;
    this.ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (message: Json) => {
        if (message.type === 'ready') resolve();
        else if (message.type === 'log')
          this.pending.get(message.requestId)?.logs.push(message.text);
        else if (message.type === 'result') this.pending.get(message.requestId)?.resolve(message);
      });
      worker.once('error', (error) => {
        reject(error);
        for (const waiter of this.pending.values()) {
          waiter.resolve({
            ok: false,
            error: { errorType: 'Runtime.ExitError', errorMessage: String(error), trace: [] },
          });
        }
        this.ready = undefined;
        this.worker = undefined;
      });
      worker.once('exit', () => {
        this.ready = undefined;
        this.worker = undefined;
      });
    });
    return this.ready;
  }

  /** A synchronous (RequestResponse) invocation; never rejects: errors are in the record. */
  invoke(
    event: unknown,
    type: 'RequestResponse' | 'Event' = 'RequestResponse',
    attempt = 1,
  ): Promise<InvocationRecord> {
    const run = this.chain.then(() => this.runOnce(event, type, attempt));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves once every invocation started so far has ended (and is in `invocations`). */
  async idle(): Promise<void> {
    await this.chain;
  }

  private async runOnce(
    event: unknown,
    type: 'RequestResponse' | 'Event',
    attempt: number,
  ): Promise<InvocationRecord> {
    const requestId = randomUUID();
    const startedAt = new Date();
    const logs: string[] = [`START RequestId: ${requestId} Version: $LATEST\n`];
    const record: InvocationRecord = {
      requestId,
      functionName: this.name,
      type,
      event,
      startedAt,
      durationMs: 0,
      logs,
      attempt,
    };
    if (this.stopped) {
      record.error = {
        errorType: 'ServiceException',
        errorMessage: 'the local cloud is stopping',
        trace: [],
      };
      return record;
    }
    let message: Json;
    try {
      await this.start();
      const timeoutMs = this.options.timeoutSeconds * 1000;
      message = await new Promise<Json>((resolve) => {
        const timer = setTimeout(() => {
          // Lambda stops the environment at the timeout; the next invocation starts a new one.
          void this.worker?.terminate();
          resolve({
            ok: false,
            error: {
              errorType: 'Sandbox.Timedout',
              errorMessage: `Task timed out after ${this.options.timeoutSeconds.toFixed(2)} seconds`,
              trace: [],
            },
          });
        }, timeoutMs);
        this.pending.set(requestId, {
          logs,
          resolve: (reply) => {
            clearTimeout(timer);
            resolve(reply);
          },
        });
        this.worker?.postMessage({
          type: 'invoke',
          requestId,
          event,
          context: {
            functionName: this.name,
            functionVersion: '$LATEST',
            invokedFunctionArn: this.options.arn,
            memoryLimitInMB: String(this.options.memorySize),
            logGroupName: `/aws/lambda/${this.name}`,
            logStreamName: `${startedAt.toISOString().slice(0, 10).replace(/-/g, '/')}/[$LATEST]${requestId.replace(/-/g, '')}`,
            deadline: Date.now() + timeoutMs,
          },
        });
      });
    } catch (error) {
      message = {
        ok: false,
        error: { errorType: 'Runtime.ImportModuleError', errorMessage: String(error), trace: [] },
      };
    } finally {
      this.pending.delete(requestId);
    }
    record.durationMs = Date.now() - startedAt.getTime();
    if (message.ok) record.result = message.result;
    else {
      record.error = message.error;
      logs.push(
        `${JSON.stringify({ errorType: message.error.errorType, errorMessage: message.error.errorMessage })}\n`,
      );
    }
    logs.push(
      `END RequestId: ${requestId}\n`,
      `REPORT RequestId: ${requestId}\tDuration: ${record.durationMs.toFixed(2)} ms\n`,
    );
    this.invocations.push(record);
    for (const listener of [...this.listeners]) listener(record);
    return record;
  }

  /** An asynchronous (Event) invocation with Lambda's retries and destinations. */
  invokeAsync(event: unknown): void {
    const queuedAt = this.clock.nowMs();
    const { maximumRetryAttempts, maximumEventAgeInSeconds, onSuccess, onFailure } =
      this.options.asyncConfig;
    const attemptOnce = async (attempt: number): Promise<void> => {
      const record = await this.invoke(event, 'Event', attempt);
      if (this.stopped) return;
      if (!record.error) {
        if (onSuccess)
          this.sendToArn(
            onSuccess,
            JSON.stringify(this.destinationRecord(record, 'Success', attempt)),
          );
        return;
      }
      // Retries: one minute before the second attempt, two before the third (invocation-async-error-handling.html).
      const delay = attempt === 1 ? 60 : 120;
      const ageSeconds = (this.clock.nowMs() - queuedAt) / 1000 + delay;
      if (attempt <= maximumRetryAttempts && ageSeconds <= maximumEventAgeInSeconds) {
        this.clock.after(delay, () => void attemptOnce(attempt + 1));
        return;
      }
      if (onFailure) {
        this.sendToArn(
          onFailure,
          JSON.stringify(this.destinationRecord(record, 'RetriesExhausted', attempt)),
        );
      } else if (this.options.deadLetterArn) {
        this.sendToArn(this.options.deadLetterArn, JSON.stringify(event), {
          RequestID: record.requestId,
          ErrorCode: '200',
          ErrorMessage: record.error.errorMessage,
        });
      }
    };
    void attemptOnce(1);
  }

  private destinationRecord(record: InvocationRecord, condition: string, attempts: number): Json {
    return {
      version: '1.0',
      timestamp: this.clock.now().toISOString(),
      requestContext: {
        requestId: record.requestId,
        functionArn: `${this.options.arn}:$LATEST`,
        condition,
        approximateInvokeCount: attempts,
      },
      requestPayload: record.event,
      responseContext: {
        statusCode: 200,
        executedVersion: '$LATEST',
        ...(record.error ? { functionError: 'Unhandled' } : {}),
      },
      responsePayload: record.error
        ? {
            errorType: record.error.errorType,
            errorMessage: record.error.errorMessage,
            trace: record.error.trace,
          }
        : record.result,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.chain.catch(() => undefined);
    await this.worker?.terminate();
    this.worker = undefined;
  }
}

function splitHandler(handler: string): [string, string] {
  const dot = handler.lastIndexOf('.');
  return [handler.slice(0, dot), handler.slice(dot + 1)];
}

export interface SqsMappingOptions {
  queue: Queue;
  fn: Pick<LambdaFunction, 'invoke'>;
  region: string;
  batchSize: number;
  maximumBatchingWindowInSeconds: number;
  reportBatchItemFailures: boolean;
}

/**
 * An SQS event source mapping: polls one local queue and invokes the function with batches.
 * Like Lambda's pollers it never stops polling: besides the queue's wake-ups it looks again
 * when the next invisible message is due and at least once per long poll (20 simulated
 * seconds, ReceiveMessage's longest WaitTimeSeconds), so a missed or early wake-up can delay a
 * message by one long poll but never strand it.
 */
export class SqsEventSourceMapping {
  static readonly LONG_POLL_SECONDS = 20;
  readonly options: SqsMappingOptions;
  private readonly clock: Clock;
  private busy = false;
  private windowOpen = false;
  private stopped = false;
  private unsubscribe: () => void = () => undefined;
  private cancelNextPoll: () => void = () => undefined;
  private current: Promise<void> = Promise.resolve();

  constructor(options: SqsMappingOptions, clock: Clock) {
    this.options = options;
    this.clock = clock;
  }

  start(): void {
    this.unsubscribe = this.options.queue.onAvailable(() => this.poll());
    this.poll();
  }

  private poll(): void {
    if (this.stopped || this.busy || this.windowOpen) return;
    const { queue, maximumBatchingWindowInSeconds, batchSize } = this.options;
    const visible = queue.visibleCount();
    if (visible === 0) {
      this.pollAgainLater();
      return;
    }
    this.cancelNextPoll();
    if (maximumBatchingWindowInSeconds > 0 && visible < batchSize) {
      // Gather for up to the batching window, unless the batch fills first.
      this.windowOpen = true;
      this.clock.after(maximumBatchingWindowInSeconds, () => {
        this.windowOpen = false;
        this.runBatch();
      });
      return;
    }
    this.runBatch();
  }

  /** The next poll: when the next message becomes visible, or after one long poll at most. */
  private pollAgainLater(): void {
    this.cancelNextPoll();
    const longPollMs = this.clock.realMs(SqsEventSourceMapping.LONG_POLL_SECONDS);
    const next = this.options.queue.nextVisibleAt();
    const waitMs =
      next === undefined ? longPollMs : Math.min(longPollMs, next - this.clock.realNow());
    this.cancelNextPoll = this.clock.afterRealMs(Math.max(1, waitMs), () => this.poll());
  }

  private runBatch(): void {
    if (this.stopped || this.busy) return;
    const { queue, fn, region, batchSize, reportBatchItemFailures } = this.options;
    const messages: QueueMessage[] = [];
    while (messages.length < batchSize) {
      const got = queue.receive(Math.min(10, batchSize - messages.length));
      if (got.length === 0) break;
      messages.push(...got);
    }
    if (messages.length === 0) {
      this.pollAgainLater();
      return;
    }
    this.busy = true;
    const records = messages.map((message) => lambdaSqsRecord(queue, message, region));
    this.current = fn.invoke({ Records: records }).then((record) => {
      if (!record.error) {
        let failed = new Set<string>();
        if (reportBatchItemFailures) {
          const failures = (record.result as Json | null)?.batchItemFailures;
          if (Array.isArray(failures)) {
            const ids = failures.map((failure: Json) => failure?.itemIdentifier);
            const known = new Set(messages.map((message) => message.messageId));
            // An empty or unknown itemIdentifier: Lambda treats the whole batch as failed.
            failed = ids.every((id) => typeof id === 'string' && known.has(id))
              ? new Set(ids)
              : known;
          }
        }
        for (const message of messages) {
          if (!failed.has(message.messageId) && message.receiptHandle) {
            try {
              queue.delete(message.receiptHandle);
            } catch {
              // already gone (redriven or deleted by the function itself)
            }
          }
        }
      }
      this.busy = false;
      this.poll();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    this.cancelNextPoll();
    await this.current.catch(() => undefined);
  }
}
