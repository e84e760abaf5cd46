/**
 * SSM Command documents as SSM and SSM Agent handle them, for the local cloud and the tests:
 * parse a schema 2.2 document, validate a SendCommand `Parameters` map against it the way the
 * service does, and render an `aws:runShellScript` step into the script text and environment
 * the agent would run.
 *
 * Sources (one per behaviour; cited again where it is implemented):
 * - Document syntax, parameter properties, ENV_VAR interpolation:
 *   https://docs.aws.amazon.com/systems-manager/latest/userguide/documents-syntax-data-elements-parameters.html
 *   (also published as .../userguide/sysman-doc-syntax.html)
 * - ENV_VAR needs SSM Agent 3.3.2746.0+, and the fallback for older agents:
 *   https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-troubleshooting.html
 *   https://aws.amazon.com/blogs/mt/aws-systems-manager-run-command-now-supports-interpolating-parameters-into-environment-variables/
 * - The InvalidParameters error of SendCommand:
 *   https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html
 * - How the agent substitutes {{ Name }} (Go regexp, `$` expanded in the replacement) and
 *   writes/runs the script: amazon-ssm-agent agent/framework/docparser/parameters/parameters.go,
 *   agent/plugins/pluginutil/pluginutil.go (CreateScriptFile), agent/plugins/runscript/
 *   runshellscript.go (`sh -c _script.sh`); Go's replacement template:
 *   https://pkg.go.dev/regexp#Regexp.Expand
 */
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';

/** One entry of a document's `parameters` map. */
export interface DocumentParameter {
  type: 'String' | 'StringList' | 'Boolean' | 'Integer' | 'MapList' | 'StringMap';
  description?: string;
  default?: unknown;
  allowedValues?: string[];
  allowedPattern?: string;
  minChars?: number;
  maxChars?: number;
  minItems?: number;
  maxItems?: number;
  interpolationType?: 'ENV_VAR';
}

export interface DocumentStep {
  action: string;
  name: string;
  precondition?: Record<string, unknown[]>;
  inputs: Record<string, unknown>;
}

export interface CommandDocument {
  schemaVersion: string;
  description?: string;
  parameters: Record<string, DocumentParameter>;
  mainSteps: DocumentStep[];
}

/** An error shaped like the SSM API's: `name` and `code` carry the error code SSM returns. */
export class SsmServiceError extends Error {
  readonly code: string;
  readonly statusCode = 400;
  readonly $fault = 'client';

  constructor(code: string, message: string) {
    super(message);
    this.name = code;
    this.code = code;
  }
}

// The agent refuses parameter names outside this set (paramNameRegex in the agent's
// docparser/parameters/parameters.go), so a document must not declare any.
const PARAMETER_NAME = /^[a-zA-Z0-9]+$/;
const PARAMETER_TYPES = new Set([
  'String',
  'StringList',
  'Boolean',
  'Integer',
  'MapList',
  'StringMap',
]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalidDocument(message: string): SsmServiceError {
  return new SsmServiceError('InvalidDocumentContent', message);
}

/**
 * Parses a Command document (YAML or JSON, schema 2.2). Throws SsmServiceError
 * `InvalidDocumentContent` when it is not one, as CreateDocument would.
 */
export function parseCommandDocument(text: string): CommandDocument {
  let raw: unknown;
  try {
    raw = load(text);
  } catch (error) {
    throw invalidDocument(`Document is not valid YAML or JSON: ${(error as Error).message}`);
  }
  if (!isRecord(raw)) throw invalidDocument('Document content must be a mapping');
  if (raw.schemaVersion !== '2.2') {
    throw invalidDocument(
      `schemaVersion must be '2.2' (a string), got ${String(raw.schemaVersion)}`,
    );
  }
  const parameters = raw.parameters ?? {};
  if (!isRecord(parameters)) throw invalidDocument('parameters must be a mapping');
  for (const [name, definition] of Object.entries(parameters)) {
    if (!PARAMETER_NAME.test(name)) {
      throw invalidDocument(`Parameter name ${name} must match ${PARAMETER_NAME.source}`);
    }
    checkParameterDefinition(name, definition);
  }
  if (!Array.isArray(raw.mainSteps) || raw.mainSteps.length === 0) {
    throw invalidDocument('mainSteps must be a non-empty list');
  }
  for (const step of raw.mainSteps) {
    if (!isRecord(step) || typeof step.action !== 'string' || typeof step.name !== 'string') {
      throw invalidDocument('every step needs an action and a name');
    }
    if (!isRecord(step.inputs)) throw invalidDocument(`step ${step.name} needs inputs`);
  }
  return raw as unknown as CommandDocument;
}

function checkParameterDefinition(name: string, definition: unknown): void {
  if (!isRecord(definition)) throw invalidDocument(`Parameter ${name} must be a mapping`);
  if (typeof definition.type !== 'string' || !PARAMETER_TYPES.has(definition.type)) {
    throw invalidDocument(`Parameter ${name} has an unsupported type ${String(definition.type)}`);
  }
  if (definition.interpolationType !== undefined && definition.interpolationType !== 'ENV_VAR') {
    throw invalidDocument(`Parameter ${name}: interpolationType can only be ENV_VAR`);
  }
  if (definition.allowedPattern !== undefined) {
    if (typeof definition.allowedPattern !== 'string') {
      throw invalidDocument(`Parameter ${name}: allowedPattern must be a string`);
    }
    try {
      new RegExp(definition.allowedPattern);
    } catch {
      throw invalidDocument(`Parameter ${name}: allowedPattern is not a valid regular expression`);
    }
  }
  if (
    definition.allowedValues !== undefined &&
    (!Array.isArray(definition.allowedValues) ||
      !definition.allowedValues.every((value) => typeof value === 'string'))
  ) {
    throw invalidDocument(`Parameter ${name}: allowedValues must be a list of strings`);
  }
}

/** Reads and parses a Command document file. Throws like parseCommandDocument, or on I/O. */
export function loadCommandDocument(path: string): CommandDocument {
  return parseCommandDocument(readFileSync(path, 'utf8'));
}

/** Whether a parameter must be supplied: in SSM, exactly the parameters without a default. */
export function isRequired(definition: DocumentParameter): boolean {
  return !Object.hasOwn(definition, 'default');
}

/** The values SendCommand receives: `Parameters` is a map of parameter name to a list of strings. */
export type SendCommandParameters = Record<string, string[] | undefined>;

/** Parameter values after validation and defaults: a string for String, a list for StringList. */
export type ResolvedParameters = Record<string, string | string[]>;

function invalidParameters(message: string): SsmServiceError {
  return new SsmServiceError('InvalidParameters', message);
}

/**
 * Validates SendCommand `Parameters` against a document as SSM does before accepting a command:
 * every supplied name must be declared, every required one supplied, a String takes exactly one
 * value, and each value must satisfy allowedValues, allowedPattern and min/maxChars. Defaults
 * fill what was not supplied. Returns the resolved values. Throws SsmServiceError
 * `InvalidParameters` (HTTP 400), the error SendCommand documents for "You must specify values for
 * all required parameters ... You can only supply values to parameters defined in the SSM
 * document" (API_SendCommand.html). The messages follow SSM's style but are not verbatim copies.
 */
export function validateSendCommandParameters(
  document: CommandDocument,
  parameters: SendCommandParameters = {},
): ResolvedParameters {
  const declared = document.parameters;
  for (const name of Object.keys(parameters)) {
    if (!Object.hasOwn(declared, name)) {
      throw invalidParameters(`Parameter "${name}" is not defined in the document.`);
    }
  }
  const resolved: ResolvedParameters = {};
  for (const [name, definition] of Object.entries(declared)) {
    const supplied = parameters[name];
    if (supplied === undefined) {
      if (isRequired(definition)) {
        throw invalidParameters(`Required parameter "${name}" was not provided.`);
      }
      resolved[name] = defaultValue(name, definition);
      continue;
    }
    if (!Array.isArray(supplied) || !supplied.every((value) => typeof value === 'string')) {
      throw invalidParameters(`Parameter "${name}" must be a list of strings.`);
    }
    if (definition.type === 'String') {
      if (supplied.length !== 1) {
        throw invalidParameters(`Parameter "${name}" of type String takes exactly one value.`);
      }
      const [value = ''] = supplied;
      checkValue(name, definition, value);
      resolved[name] = value;
    } else {
      for (const value of supplied) checkValue(name, definition, value);
      resolved[name] = [...supplied];
    }
  }
  return resolved;
}

function defaultValue(name: string, definition: DocumentParameter): string | string[] {
  const value = definition.default;
  if (definition.type === 'StringList' && Array.isArray(value)) return value.map(String);
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw invalidParameters(`Parameter "${name}" has a default this local cloud cannot represent.`);
}

function checkValue(name: string, definition: DocumentParameter, value: string): void {
  // allowedValues: https://docs.aws.amazon.com/systems-manager/latest/userguide/documents-syntax-data-elements-parameters.html
  if (definition.allowedValues && !definition.allowedValues.includes(value)) {
    throw invalidParameters(
      `Parameter "${name}" failed to satisfy constraint: Member must satisfy enum value set: [${definition.allowedValues.join(', ')}]`,
    );
  }
  // allowedPattern is a regular expression the value must match. The agent checks it again with
  // Go's regexp (MatchString: "contains a match"), which is what RegExp.test does; with an
  // anchored pattern both mean the same as a full match.
  if (
    definition.allowedPattern !== undefined &&
    !new RegExp(definition.allowedPattern).test(value)
  ) {
    throw invalidParameters(
      `Parameter "${name}" failed to satisfy constraint: Member must satisfy regular expression pattern: ${definition.allowedPattern}`,
    );
  }
  if (definition.minChars !== undefined && value.length < definition.minChars) {
    throw invalidParameters(
      `Parameter "${name}" failed to satisfy constraint: Member must have length greater than or equal to ${definition.minChars}`,
    );
  }
  if (definition.maxChars !== undefined && value.length > definition.maxChars) {
    throw invalidParameters(
      `Parameter "${name}" failed to satisfy constraint: Member must have length less than or equal to ${definition.maxChars}`,
    );
  }
}

/**
 * Checks that every default satisfies its own parameter's constraints (a document whose defaults
 * SendCommand would refuse is useless). Throws SsmServiceError `InvalidDocumentContent`.
 */
export function validateDocumentDefaults(document: CommandDocument): void {
  for (const [name, definition] of Object.entries(document.parameters)) {
    if (isRequired(definition)) continue;
    const value = defaultValue(name, definition);
    try {
      for (const item of Array.isArray(value) ? value : [value]) checkValue(name, definition, item);
    } catch (error) {
      throw invalidDocument(`Default of ${name} is invalid: ${(error as Error).message}`);
    }
  }
}

/**
 * Go's regexp replacement template (Regexp.Expand, https://pkg.go.dev/regexp#Regexp.Expand):
 * `$$` is a literal `$`; `$name` / `${name}` is a submatch (the longest run of letters, digits
 * and `_`), where `$0` is the whole match and anything else (the agent's pattern has no groups)
 * is empty; a `$` that starts no valid reference (or an unclosed `${`) stays as it is.
 */
export function expandGoReplacement(template: string, wholeMatch: string): string {
  let out = '';
  let index = 0;
  while (index < template.length) {
    const dollar = template.indexOf('$', index);
    if (dollar === -1) {
      out += template.slice(index);
      break;
    }
    out += template.slice(index, dollar);
    const rest = template.slice(dollar + 1);
    if (rest.startsWith('$')) {
      out += '$';
      index = dollar + 2;
      continue;
    }
    const braced = /^\{([\p{L}\p{Nd}_]+)\}/u.exec(rest);
    const bare = braced ? null : /^[\p{L}\p{Nd}_]+/u.exec(rest);
    const reference = braced?.[1] ?? bare?.[0];
    if (reference === undefined) {
      out += '$';
      index = dollar + 1;
      continue;
    }
    // Only "0" names the whole match; "00" is a (missing) named group, as Go disallows leading zeros.
    out += reference === '0' ? wholeMatch : '';
    index = dollar + 1 + (braced ? braced[0].length : reference.length);
  }
  return out;
}

// Go's \s is [\t\n\f\r ] (https://pkg.go.dev/regexp/syntax); JavaScript's is wider.
const GO_SPACE = '[\\t\\n\\f\\r ]*';

function parameterReference(name: string, whole: boolean): RegExp {
  return new RegExp(
    `${whole ? '^' : ''}\\{\\{${GO_SPACE}${name}${GO_SPACE}\\}\\}${whole ? '$' : ''}`,
    whole ? '' : 'g',
  );
}

/**
 * Replaces `{{ Name }}` references in one string as the agent does (ReplaceParameters in
 * agent/framework/docparser/parameters/parameters.go): a string that is exactly one reference
 * becomes the value itself; otherwise every reference of every parameter, in turn, is replaced
 * through Go's ReplaceAllString, so a `$` in a value is a template character, not a literal.
 * Never throws.
 */
export function substituteParameters(text: string, values: ResolvedParameters): string | string[] {
  for (const [name, value] of Object.entries(values)) {
    if (parameterReference(name, true).test(text)) return value;
  }
  let out = text;
  for (const [name, value] of Object.entries(values)) {
    const replacement = Array.isArray(value) ? JSON.stringify(value) : value;
    out = out.replace(parameterReference(name, false), (match) =>
      expandGoReplacement(replacement, match),
    );
  }
  return out;
}

/** Which interpolation the simulated agent performs. */
export type AgentInterpolation =
  /** SSM Agent 3.3.2746.0 or later: SSM_<Name> variables for ENV_VAR parameters, plus {{ }}. */
  | 'env-var'
  /** Older agents: only the textual {{ }} substitution. */
  | 'legacy';

export interface RenderOptions {
  agent?: AgentInterpolation;
  /** Exported by the agent to every Run Command script as AWS_SSM_INSTANCE_ID. */
  instanceId?: string;
  /** Exported by the agent to every Run Command script as AWS_SSM_REGION_NAME. */
  region?: string;
  /** Evaluated against `StringEquals: [platformType, ...]` preconditions. */
  platformType?: 'Linux' | 'Windows' | 'MacOS';
}

export interface RenderedShellStep {
  stepName: string;
  /** `_script.sh` as the agent writes it: runCommand lines joined by "\n", plus a final "\n". */
  script: string;
  /** Variables the agent adds to its own environment for this script. */
  env: Record<string, string>;
  /** The step's timeoutSeconds as the agent applies it (5..28800, default 3600). */
  timeoutSeconds: number;
}

/** How the agent starts the script: `sh -c <path of _script.sh>` (runshellscript.go). */
export const AGENT_SHELL = { command: 'sh', args: ['-c'] } as const;

function preconditionHolds(step: DocumentStep, platformType: string): boolean {
  const conditions = step.precondition;
  if (!conditions) return true;
  for (const [operator, args] of Object.entries(conditions)) {
    if (operator !== 'StringEquals' || args.length !== 2) return false;
    if (args[0] === 'platformType' && args[1] !== platformType) return false;
  }
  return true;
}

function timeoutOf(step: DocumentStep): number {
  // ValidateExecutionTimeout in pluginutil.go: outside 5..28800 (or unparsable) means 3600.
  const raw = Number(step.inputs.timeoutSeconds ?? Number.NaN);
  const seconds = Number.isFinite(raw) ? Math.trunc(raw) : 3600;
  return seconds < 5 || seconds > 28800 ? 3600 : seconds;
}

/**
 * Renders each `aws:runShellScript` step whose precondition holds into the script text and the
 * extra environment SSM Agent runs it with. With ENV_VAR (agent 3.3.2746.0+) each such parameter
 * becomes `SSM_<Name>` holding the raw value (documents-syntax-data-elements-parameters.html,
 * "When set to ENV_VAR, the system creates an environment variable named SSM_parameter-name");
 * `{{ Name }}` is still substituted in the text, which is why AWS says allowedPattern matters as
 * soon as a document uses double braces. The legacy agent only substitutes. `resolved` comes from
 * validateSendCommandParameters; a caller may map values (e.g. paths into an instance directory)
 * before rendering. Throws SsmServiceError `InvalidDocumentContent` on a malformed step.
 */
export function renderRunShellScript(
  document: CommandDocument,
  resolved: ResolvedParameters,
  options: RenderOptions = {},
): RenderedShellStep[] {
  const agent = options.agent ?? 'env-var';
  const env: Record<string, string> = {};
  if (options.instanceId !== undefined) env.AWS_SSM_INSTANCE_ID = options.instanceId;
  if (options.region !== undefined) env.AWS_SSM_REGION_NAME = options.region;
  if (agent === 'env-var') {
    for (const [name, definition] of Object.entries(document.parameters)) {
      const value = resolved[name];
      if (definition.interpolationType === 'ENV_VAR' && typeof value === 'string') {
        env[`SSM_${name}`] = value;
      }
    }
  }
  const steps: RenderedShellStep[] = [];
  for (const step of document.mainSteps) {
    if (step.action !== 'aws:runShellScript') continue;
    if (!preconditionHolds(step, options.platformType ?? 'Linux')) continue;
    const runCommand = step.inputs.runCommand;
    const lines = typeof runCommand === 'string' ? [runCommand] : runCommand;
    if (!Array.isArray(lines) || !lines.every((line) => typeof line === 'string')) {
      throw invalidDocument(`step ${step.name}: runCommand must be a string or a list of strings`);
    }
    // ParseRunCommand flattens a list a single-reference line expands to.
    const script = lines.flatMap((line) => substituteParameters(line, resolved));
    steps.push({
      stepName: step.name,
      // CreateScriptFile: strings.Join(runCommand, "\n") + "\n", written with mode 0700.
      script: `${script.join('\n')}\n`,
      env: { ...env },
      timeoutSeconds: timeoutOf(step),
    });
  }
  return steps;
}
