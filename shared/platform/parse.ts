import { parse } from '@aws-lambda-powertools/parser';
import type { MiddlewareObj } from '@middy/core';
import { InvalidInputError } from '../errors.ts';
import type { ZodMiniType } from '../zod.ts';

// Standard Schema issues (what Powertools Parser puts in ParseError.cause) and zod issues.
interface IssueLike {
  message: string;
  path?: ReadonlyArray<PropertyKey | { key: PropertyKey }>;
}

const isIssueList = (value: unknown): value is IssueLike[] =>
  Array.isArray(value) && value.every((item) => typeof item?.message === 'string');

const pathOf = (issue: IssueLike): string =>
  (issue.path ?? [])
    .map((segment) => String(typeof segment === 'object' ? segment.key : segment))
    .join('.') || '(root)';

/** "detail.name: expected string, received undefined; source: …" from a parse error. Never throws. */
export function describeIssues(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    const issues = isIssueList(current) ? current : (current as { issues?: unknown }).issues;
    if (isIssueList(issues)) {
      return issues.map((issue) => `${pathOf(issue)}: ${issue.message}`).join('; ');
    }
    current = (current as { cause?: unknown }).cause;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Parses `input` with the schema (Powertools Parser); throws InvalidInputError naming the fields. */
export function parseOrThrow<T>(schema: ZodMiniType<T>, input: unknown, what: string): T {
  try {
    return parse(input, undefined, schema) as T;
  } catch (error) {
    throw new InvalidInputError(`${what} refused, nothing sent: ${describeIssues(error)}`, {
      cause: error,
    });
  }
}

/**
 * Middy middleware: replaces the event with its parsed form, or fails the invocation with an
 * InvalidInputError that names the bad fields before any handler code runs.
 */
export function parseEvent<T>(schema: ZodMiniType<T>, what = 'event'): MiddlewareObj<unknown> {
  return {
    before: (request) => {
      request.event = parseOrThrow(schema, request.event, what);
    },
  };
}
