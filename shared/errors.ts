/**
 * Every error of the service's own, in one place: what a caller may catch and act on.
 * AWS SDK errors pass through untouched; the store turns ConditionalCheckFailed into answers.
 */

/** custom.fanout or a function's environment is missing or invalid (package time or cold start). */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** An event or request that does not match its schema; the message names every bad field. */
export class InvalidInputError extends Error {
  override name = 'InvalidInputError';
}

/** A transition named a rollout the table does not hold. */
export class RolloutNotFoundError extends Error {
  override name = 'RolloutNotFoundError';
  constructor(rolloutId: string, options?: ErrorOptions) {
    super(`rollout ${rolloutId} does not exist`, options);
  }
}

/** Another run of the same rollout holds the sending lease; retry later (it resumes then). */
export class RolloutBusyError extends Error {
  override name = 'RolloutBusyError';
  constructor(rolloutId: string) {
    super(`rollout ${rolloutId} is being sent by another run; retry once it is done`);
  }
}

/** Some requested instances are not running instances of the environment; nothing was sent. */
export class InstancesNotInEnvironmentError extends Error {
  override name = 'InstancesNotInEnvironmentError';
  readonly instanceIds: string[];
  constructor(environment: string, instanceIds: string[]) {
    super(
      `not running instances of ${environment} (tag and state checked): ${instanceIds.join(', ')}`,
    );
    this.instanceIds = instanceIds;
  }
}
