// esbuild plugins for every function's bundle (serverless.yml custom.esbuild.plugins), package
// time only. Each one keeps code a function never runs from being evaluated at its cold start.
const { dirname } = require('node:path');

/**
 * aws-xray-sdk-core (under Powertools Tracer) requires `semver` for one thing: its AWS SDK v2
 * patcher (captureAWS / captureAWSClient) checks the v2 SDK's version with `semver.gte`. We only
 * use SDK v3 (captureAWSv3Client), yet semver's index builds its regular expressions and range
 * classes at every cold start (~5 ms). That one import gets a stand-in whose `gte` loads the same
 * semver's `gte` (resolved from aws-xray-sdk-core, as the original import) on first call.
 */
const lazySemverForXray = {
  name: 'lazy-semver-for-xray',
  setup(build) {
    build.onResolve({ filter: /^semver$/ }, ({ importer }) =>
      /[\\/]aws-xray-sdk-core[\\/]/.test(importer)
        ? { path: 'semver', namespace: 'lazy-semver-for-xray', pluginData: dirname(importer) }
        : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-semver-for-xray' }, ({ pluginData }) => ({
      contents:
        "exports.gte = (version, range, options) => require('semver/functions/gte')(version, range, options);",
      loader: 'js',
      resolveDir: pluginData,
    }));
  },
};

module.exports = [lazySemverForXray];
