import { config } from 'zod/mini';
import { en } from 'zod/v4/locales';

/**
 * zod as every schema of ours uses it: the functional `zod/mini` API (the same core, checks and
 * parser as `zod`), with `zod`'s English messages. Classic `zod` builds every schema through
 * chained methods that each bind and install a member on first use, and bundles all of its
 * classic layer: ~65 KB more in every bundle and ~15 ms more at every cold start for the same
 * schemas (issue 11, item 4). Import zod from here only, so the messages are always English.
 */
config(en());

export * from 'zod/mini';
