import * as z from '../zod.ts';

/** A rollout id as newRolloutId makes them. */
export const rolloutIdSchema = z
  .string()
  .check(
    z.regex(
      /^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}$/,
      'must be a rollout id like 20261123T161300123Z-3f9a1c2b',
    ),
  );
