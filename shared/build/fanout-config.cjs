// Build-time helpers every generator of serverless.yml values shares: custom.fanout read and
// validated by the same zod schema the functions use at cold start (plus the SSM document's own
// parameter patterns), the document itself, and CloudFormation small change.
// CommonJS because the Serverless Framework `require`s variable files; Node 24 loads the
// TypeScript module directly (type stripping + require(esm)).
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const yaml = require('js-yaml');
const { parseConfig, expandFiles } = require('../config.ts');
const { documentParameters } = require('../send/commands.ts');

const DOCUMENT_PATH = join(__dirname, '..', '..', 'documents', 'replace-secrets-file.yml');

async function validated(resolveVariable) {
  const raw = await resolveVariable('self:custom.fanout');
  let config;
  try {
    config = parseConfig(raw, 'custom.fanout');
  } catch (error) {
    // Serverless prints the message of a plain Error after its own prefix; keep ours first.
    throw new Error(error.message);
  }
  checkAgainstDocument(config);
  return config;
}

/**
 * Every SendCommand the config can produce must pass the document's own allowedPattern and
 * allowedValues, or SSM would refuse it at run time (InvalidParameters). Checked here, with the
 * document's real patterns, so the two can never drift apart.
 */
function checkAgainstDocument(config) {
  const declared = loadDocument().parameters;
  const problems = [];
  expandFiles(config).forEach((target) => {
    const index = config.files.findIndex(
      (file) =>
        (file.parameter ?? file.secret ?? file.parametersByPath).replaceAll(
          '{env}',
          target.environment,
        ) === target.parameter,
    );
    for (const [name, [value]] of Object.entries(documentParameters(target))) {
      const spec = declared[name];
      const ok =
        spec !== undefined &&
        (spec.allowedPattern === undefined || new RegExp(spec.allowedPattern).test(value)) &&
        (spec.allowedValues === undefined || spec.allowedValues.includes(value));
      if (!ok) {
        problems.push(
          `custom.fanout.files[${index}] (${target.environment}): ${name} "${value}" is refused by documents/replace-secrets-file.yml (${spec?.allowedPattern ?? 'no such parameter'})`,
        );
      }
    }
  });
  if (problems.length > 0) throw new Error(`Invalid custom.fanout:\n  ${problems.join('\n  ')}`);
}

function escapeVariables(value) {
  if (typeof value === 'string') return value.replaceAll('${', '\\${');
  if (Array.isArray(value)) return value.map(escapeVariables);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, escapeVariables(v)]));
  }
  return value;
}

function loadDocument() {
  return yaml.load(readFileSync(DOCUMENT_PATH, 'utf8'));
}

const sub = (template) => ({ 'Fn::Sub': template });

/** A CloudFormation logical id for an environment name (letters and digits only, unique). */
function logicalIdFor(environment, index) {
  const words = environment.split(/[^A-Za-z0-9]+/).filter(Boolean);
  const id = words.map((word) => word[0].toUpperCase() + word.slice(1)).join('');
  return `${id}${index}`;
}

module.exports = { validated, escapeVariables, loadDocument, sub, logicalIdFor };
