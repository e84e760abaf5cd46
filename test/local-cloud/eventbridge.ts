/**
 * EventBridge on the default bus: events from the local services, matched against the
 * AWS::Events::Rule patterns of the template and delivered to their targets.
 *
 * Pattern matching per the EventBridge user guide, "Event patterns" and "Comparison operators"
 * (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html,
 * https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html):
 * fields are ANDed, the values of a field ORed; a value matches an array in the event when any
 * element matches; exact values are case-sensitive; operators: prefix, suffix,
 * equals-ignore-case, anything-but (value, list, prefix, suffix, equals-ignore-case, wildcard),
 * exists, wildcard, numeric, cidr (IPv4), and $or. Anything else is refused as PutRule would.
 *
 * Delivery: targets are invoked asynchronously; a target that cannot be reached is retried with
 * back-off within the target's RetryPolicy and then sent to its DeadLetterConfig queue with the
 * RULE_ARN/TARGET_ARN/ERROR_CODE/ERROR_MESSAGE attributes
 * (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html).
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from './clock.ts';
import { ACCOUNT_ID } from './http.ts';

type Json = Record<string, any>;

export interface AwsEvent {
  version: '0';
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: Json;
}

export interface RuleTarget {
  id: string;
  arn: string;
  input?: string;
  inputPath?: string;
  /** InputTransformer: placeholders `<key>` of the template filled from the event's paths. */
  inputTransformer?: { inputPathsMap: Record<string, string>; inputTemplate: string };
  retryPolicy?: { maximumRetryAttempts: number; maximumEventAgeInSeconds: number };
  deadLetterArn?: string;
  /**
   * A Run Command target (Arn `arn:aws:ssm:<region>:<account>:document/<name>`): the event's
   * input is the document's parameters and EventBridge calls SendCommand with these Targets
   * (RunCommandParameters.RunCommandTargets; one block, a `tag:<key>` or `InstanceIds` key —
   * https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_RunCommandParameters.html).
   */
  runCommandTargets?: Array<{ Key: string; Values: string[] }>;
}

export interface Rule {
  name: string;
  arn: string;
  pattern: Json;
  enabled: boolean;
  targets: RuleTarget[];
  /** A scheduled rule's ScheduleExpression (see schedule.ts); such a rule has no pattern. */
  schedule?: string;
}

export type TargetInvoker = (target: RuleTarget, payload: string, rule: Rule) => Promise<void>;
export type DeadLetter = (arn: string, payload: string, attributes: Record<string, string>) => void;

export interface Delivery {
  rule: string;
  target: string;
  eventId: string;
  ok: boolean;
  error?: string;
}

export class EventBus {
  readonly rules: Rule[] = [];
  /** Every event put on the bus, in order. */
  readonly events: AwsEvent[] = [];
  /** Events a `dropWhen` fault kept from every rule. */
  readonly dropped: AwsEvent[] = [];
  private readonly droppers = new Set<(event: AwsEvent) => boolean>();
  readonly deliveries: Delivery[] = [];
  private readonly region: string;
  private readonly clock: Clock;
  private readonly invoke: TargetInvoker;
  private readonly deadLetter: DeadLetter;
  private readonly listeners = new Set<(event: AwsEvent) => void>();

  constructor(options: {
    region: string;
    clock: Clock;
    invoke: TargetInvoker;
    deadLetter: DeadLetter;
  }) {
    this.region = options.region;
    this.clock = options.clock;
    this.invoke = options.invoke;
    this.deadLetter = options.deadLetter;
  }

  addRule(rule: Rule): void {
    validatePattern(rule.pattern);
    this.rules.push(rule);
  }

  /**
   * A fault: events matching `predicate` are put (they are in `events`) but never delivered to
   * a rule, as when AWS loses a best-effort event (Run Command status events are best effort).
   * Returns a function that ends the fault.
   */
  dropWhen(predicate: (event: AwsEvent) => boolean): () => void {
    this.droppers.add(predicate);
    return () => this.droppers.delete(predicate);
  }

  onEvent(listener: (event: AwsEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Puts an event as an AWS service would emit it, and routes it. */
  put(source: string, detailType: string, detail: Json, resources: string[] = []): AwsEvent {
    const event: AwsEvent = {
      version: '0',
      id: randomUUID(),
      'detail-type': detailType,
      source,
      account: ACCOUNT_ID,
      // Events carry second precision, e.g. "2017-05-22T16:44:48Z".
      time: this.clock
        .now()
        .toISOString()
        .replace(/\.\d{3}Z$/, 'Z'),
      region: this.region,
      resources,
      detail,
    };
    this.putEvent(event);
    return event;
  }

  /** Routes a complete event (also used to replay a captured one, e.g. a duplicate delivery). */
  putEvent(event: AwsEvent): void {
    this.events.push(event);
    for (const listener of [...this.listeners]) listener(event);
    if ([...this.droppers].some((drop) => drop(event))) {
      this.dropped.push(event);
      return;
    }
    for (const rule of this.rules) {
      if (!rule.enabled || !matchesPattern(rule.pattern, event)) continue;
      for (const target of rule.targets) void this.deliver(rule, target, event, 0);
    }
  }

  /**
   * Delivers an event to one rule's targets only, as EventBridge does with a scheduled rule's
   * "Scheduled Event" (it is not matched against the other rules).
   */
  deliverToRule(rule: Rule, event: AwsEvent): void {
    if (!rule.enabled) return;
    for (const target of rule.targets) void this.deliver(rule, target, event, 0);
  }

  private async deliver(
    rule: Rule,
    target: RuleTarget,
    event: AwsEvent,
    attempt: number,
  ): Promise<void> {
    const payload = targetInput(target, event);
    try {
      await this.invoke(target, payload, rule);
      this.deliveries.push({ rule: rule.name, target: target.arn, eventId: event.id, ok: true });
    } catch (error) {
      const message = (error as Error).message;
      this.deliveries.push({
        rule: rule.name,
        target: target.arn,
        eventId: event.id,
        ok: false,
        error: message,
      });
      const policy = target.retryPolicy ?? {
        maximumRetryAttempts: 185,
        maximumEventAgeInSeconds: 86400,
      };
      const ageSeconds = (this.clock.nowMs() - new Date(event.time).getTime()) / 1000;
      // Exponential back-off with jitter between attempts (eb-rule-retry-policy.html).
      const backoff = Math.min(300, 2 ** attempt) * (0.5 + Math.random() / 2);
      if (
        attempt < policy.maximumRetryAttempts &&
        ageSeconds * this.clock.scale + backoff < policy.maximumEventAgeInSeconds
      ) {
        this.clock.after(backoff, () => void this.deliver(rule, target, event, attempt + 1));
      } else if (target.deadLetterArn) {
        this.deadLetter(target.deadLetterArn, payload, {
          RULE_ARN: rule.arn,
          TARGET_ARN: target.arn,
          ERROR_CODE: (error as Error).name || 'Error',
          ERROR_MESSAGE: message,
        });
      }
    }
  }
}

function targetInput(target: RuleTarget, event: AwsEvent): string {
  if (target.input !== undefined) return target.input;
  if (target.inputPath !== undefined)
    return JSON.stringify(atPath(event, target.inputPath) ?? null);
  if (target.inputTransformer !== undefined) return transformInput(target.inputTransformer, event);
  return JSON.stringify(event);
}

/** A JSON dot-notation path (`$.detail.name`) into the event; undefined where it leads nowhere. */
function atPath(event: AwsEvent, path: string): unknown {
  let value: unknown = event;
  for (const key of path
    .replace(/^\$\.?/, '')
    .split('.')
    .filter(Boolean)) {
    value = (value as Json | undefined)?.[key];
  }
  return value;
}

/**
 * InputTransformer (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_InputTransformer.html):
 * each `<key>` of InputTemplate is replaced by the value at InputPathsMap[key]. Inside a JSON
 * string ("<key> is …") a string value goes in as its text; outside one (`{"a": <key>}`) the
 * value goes in as JSON. A key the map does not define is left as written. What AWS inserts
 * for a path that leads nowhere is not documented there; here it is null (outside a string) or
 * nothing (inside one). The reserved `<aws.events.*>` variables are not modelled.
 */
function transformInput(
  transformer: NonNullable<RuleTarget['inputTransformer']>,
  event: AwsEvent,
): string {
  const template = transformer.inputTemplate;
  let out = '';
  let inString = false;
  for (let i = 0; i < template.length; i++) {
    const char = template[i] as string;
    if (inString && char === '\\') {
      out += template.slice(i, i + 2);
      i += 1;
      continue;
    }
    if (char === '"') inString = !inString;
    const placeholder = char === '<' ? /^<([A-Za-z0-9_.-]+)>/.exec(template.slice(i)) : null;
    const path =
      placeholder?.[1] === undefined ? undefined : transformer.inputPathsMap[placeholder[1]];
    if (placeholder === null || path === undefined) {
      out += char;
      continue;
    }
    const value = atPath(event, path);
    if (inString) {
      const text =
        typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value);
      out += JSON.stringify(text).slice(1, -1);
    } else {
      out += JSON.stringify(value ?? null);
    }
    i += placeholder[0].length - 1;
  }
  return out;
}

// ---- Pattern matching ----------------------------------------------------------------------

const OPERATORS = new Set([
  'prefix',
  'suffix',
  'equals-ignore-case',
  'anything-but',
  'exists',
  'wildcard',
  'numeric',
  'cidr',
]);

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Throws when a pattern uses something EventBridge would refuse (InvalidEventPatternException). */
export function validatePattern(pattern: unknown, path = ''): void {
  if (!isObject(pattern))
    throw new Error(`Event pattern is not valid at ${path || 'root'}: must be an object`);
  for (const [key, value] of Object.entries(pattern)) {
    if (key === '$or') {
      if (!Array.isArray(value) || value.length < 2)
        throw new Error(`Event pattern is not valid: $or needs at least 2 patterns`);
      for (const sub of value) validatePattern(sub, `${path}.$or`);
      continue;
    }
    if (Array.isArray(value)) {
      if (value.length === 0)
        throw new Error(`Event pattern is not valid at ${path}.${key}: empty array`);
      for (const item of value) {
        if (isObject(item)) {
          const [operator] = Object.keys(item);
          if (
            Object.keys(item).length !== 1 ||
            operator === undefined ||
            !OPERATORS.has(operator)
          ) {
            throw new Error(
              `Event pattern is not valid at ${path}.${key}: unsupported operator ${JSON.stringify(item)}`,
            );
          }
          if (operator === 'wildcard' && /\*\*/.test(String(item.wildcard))) {
            throw new Error(
              `Event pattern is not valid at ${path}.${key}: consecutive wildcard characters`,
            );
          }
        }
      }
    } else if (isObject(value)) {
      validatePattern(value, `${path}.${key}`);
    } else {
      throw new Error(
        `Event pattern is not valid at ${path}.${key}: a value must be an array or an object`,
      );
    }
  }
}

/** Whether an event (or part of one) matches a pattern. */
export function matchesPattern(pattern: Json, event: unknown): boolean {
  for (const [key, expected] of Object.entries(pattern)) {
    if (key === '$or') {
      if (!(expected as Json[]).some((sub) => matchesPattern(sub, event))) return false;
      continue;
    }
    const actual = isObject(event) ? event[key] : undefined;
    if (Array.isArray(expected)) {
      if (!matchesLeaf(expected, actual)) return false;
    } else if (Array.isArray(actual)) {
      if (!actual.some((item) => matchesPattern(expected, isObject(item) ? item : {})))
        return false;
    } else if (!matchesPattern(expected, isObject(actual) ? actual : {})) {
      return false;
    }
  }
  return true;
}

function matchesLeaf(expected: unknown[], actual: unknown): boolean {
  const present = actual !== undefined;
  const values: unknown[] = Array.isArray(actual) ? actual : present ? [actual] : [];
  return expected.some((condition) => {
    if (!isObject(condition)) return values.some((value) => value === condition);
    const [operator, argument] = Object.entries(condition)[0] as [string, unknown];
    switch (operator) {
      case 'exists':
        // Leaf nodes only: an object is not a leaf.
        return argument === true ? present && !isObject(actual) : !present;
      case 'anything-but':
        return present && values.every((value) => !anythingButHits(argument, value));
      default:
        return values.some((value) => operatorMatches(operator, argument, value));
    }
  });
}

function anythingButHits(argument: unknown, value: unknown): boolean {
  if (Array.isArray(argument)) return argument.some((item) => item === value);
  if (isObject(argument)) {
    const [operator, inner] = Object.entries(argument)[0] as [string, unknown];
    if (Array.isArray(inner)) return inner.some((item) => operatorMatches(operator, item, value));
    return operatorMatches(operator, inner, value);
  }
  return argument === value;
}

function operatorMatches(operator: string, argument: unknown, value: unknown): boolean {
  switch (operator) {
    case 'prefix':
      if (isObject(argument))
        return (
          typeof value === 'string' &&
          value.toLowerCase().startsWith(String(argument['equals-ignore-case']).toLowerCase())
        );
      return typeof value === 'string' && value.startsWith(String(argument));
    case 'suffix':
      if (isObject(argument))
        return (
          typeof value === 'string' &&
          value.toLowerCase().endsWith(String(argument['equals-ignore-case']).toLowerCase())
        );
      return typeof value === 'string' && value.endsWith(String(argument));
    case 'equals-ignore-case':
      return typeof value === 'string' && value.toLowerCase() === String(argument).toLowerCase();
    case 'wildcard':
      return typeof value === 'string' && wildcardRegExp(String(argument)).test(value);
    case 'numeric':
      return typeof value === 'number' && numericMatches(argument as unknown[], value);
    case 'cidr':
      return typeof value === 'string' && cidrMatches(String(argument), value);
    default:
      return false;
  }
}

function wildcardRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i += 1) {
    const char = pattern[i] as string;
    if (char === '\\' && (pattern[i + 1] === '*' || pattern[i + 1] === '\\')) {
      source += `\\${pattern[i + 1]}`;
      i += 1;
    } else if (char === '*') {
      source += '.*';
    } else {
      source += char.replace(/[.+?^${}()|[\]\\/]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`, 's');
}

function numericMatches(conditions: unknown[], value: number): boolean {
  for (let i = 0; i < conditions.length; i += 2) {
    const operator = conditions[i];
    const bound = Number(conditions[i + 1]);
    const ok =
      operator === '='
        ? value === bound
        : operator === '<'
          ? value < bound
          : operator === '<='
            ? value <= bound
            : operator === '>'
              ? value > bound
              : operator === '>='
                ? value >= bound
                : false;
    if (!ok) return false;
  }
  return true;
}

function cidrMatches(cidr: string, ip: string): boolean {
  const [base = '', bitsText = '32'] = cidr.split('/');
  const toInt = (address: string) =>
    address.split('.').reduce((sum, part) => (sum << 8) + Number(part), 0) >>> 0;
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return false;
  const bits = Number(bitsText);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (toInt(base) & mask) === (toInt(ip) & mask);
}
