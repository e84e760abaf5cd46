import * as z from '../zod.ts';

const nonEmpty = z.string().check(z.minLength(1));
const instanceIdSchema = z.string().check(z.regex(/^(i-[0-9a-f]{8,17}|mi-[0-9a-f]{17})$/));

/**
 * The message the ledger queues (delayed until the attempt is due) to send the next attempt to
 * a chunk of targets of one file: at most 50 instances, one SendCommand.
 */
export const RetryMessageSchema = z.strictObject({
  rolloutId: nonEmpty,
  instanceIds: z.array(instanceIdSchema).check(z.minLength(1), z.maxLength(50)),
  parameter: nonEmpty,
  /** The file: a parameter may be written to several paths, each its own target. */
  path: nonEmpty,
  /** 1 only when the sweep re-sends a first attempt nobody sent. */
  attempt: z.number().check(z.int(), z.minimum(1)),
  /** How often the retrier put (part of) this chunk back because it was busy. */
  requeues: z.optional(z.number().check(z.int(), z.minimum(1), z.maximum(20))),
});

export type RetryMessage = z.infer<typeof RetryMessageSchema>;

/** Resume a rollout its creator left half-created (queued by the sweep on the retry queue). */
export const ResumeMessageSchema = z.strictObject({
  kind: z.literal('resume'),
  rolloutId: nonEmpty,
});

export type ResumeMessage = z.infer<typeof ResumeMessageSchema>;

/**
 * One planned first send of a rollout (queued by the fan-out, delayed until its turn in the
 * shared pace): ≤50 instances of one file, one SendCommand. `notBefore` is its turn; a message
 * that arrives early (its turn was more than SQS's 900 s delay away) is queued again.
 */
export const SendChunkMessageSchema = z.strictObject({
  kind: z.literal('send'),
  rolloutId: nonEmpty,
  environment: nonEmpty,
  parameter: nonEmpty,
  path: nonEmpty,
  index: z.number().check(z.int(), z.minimum(0)),
  instanceIds: z.array(instanceIdSchema).check(z.minLength(1), z.maxLength(50)),
  notBefore: z.iso.datetime(),
  /** The parameter version to write (a staged or held rollout); absent: the latest. */
  version: z.optional(z.number().check(z.int(), z.minimum(1))),
  /** A staged rollout's first alarm, carried by the command (SendCommand AlarmConfiguration). */
  alarm: z.optional(z.string().check(z.minLength(1), z.maxLength(255))),
  /** The pinned version moves forward only: never written over a later one on the instance. */
  forward: z.optional(z.literal(true)),
  /** How often this chunk was put back because SSM was throttling. */
  requeues: z.optional(z.number().check(z.int(), z.minimum(1), z.maximum(20))),
});

export type SendChunkMessage = z.infer<typeof SendChunkMessageSchema>;

/**
 * One part of a large rollout's plan to record and queue (rollout/parts.ts): its targets and
 * chunks written, its sends queued at their turns.
 */
export const PartMessageSchema = z.strictObject({
  kind: z.literal('part'),
  rolloutId: nonEmpty,
  part: z.number().check(z.int(), z.minimum(0)),
});

export type PartMessage = z.infer<typeof PartMessageSchema>;

/**
 * A whole-environment re-sync, answered at once and planned here: the fan-out of `files` of
 * `environment` under the rollout id the caller was given.
 */
export const PlanMessageSchema = z.strictObject({
  kind: z.literal('plan'),
  rolloutId: nonEmpty,
  environment: nonEmpty,
  /** The mapped files, by parameter and path (the rest comes from custom.fanout). */
  files: z.array(z.strictObject({ parameter: nonEmpty, path: nonEmpty })).check(z.minLength(1)),
  principal: nonEmpty,
  version: z.optional(z.number().check(z.int(), z.minimum(1))),
});

export type PlanMessage = z.infer<typeof PlanMessageSchema>;

/**
 * A staged rollout's stage to look at: once all its targets are over (queued by the ledger), and
 * again during its bake (delayed): halt it, bake it, or start the next one.
 */
export const StageMessageSchema = z.strictObject({
  kind: z.literal('stage'),
  rolloutId: nonEmpty,
  stage: z.number().check(z.int(), z.minimum(0)),
});

export type StageMessage = z.infer<typeof StageMessageSchema>;
