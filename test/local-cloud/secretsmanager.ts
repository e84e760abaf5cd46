/**
 * Secrets Manager over its JSON 1.1 protocol (POST /, X-Amz-Target: secretsmanager.<Op>,
 * application/x-amz-json-1.1; errors `{"__type": "<Code>", "Message": "..."}` with HTTP 400), for
 * what the service, its instances and the tests call: CreateSecret, PutSecretValue, UpdateSecret,
 * GetSecretValue, DescribeSecret, UpdateSecretVersionStage, DeleteSecret. Shapes, staging-label
 * rules and errors follow the API reference
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/). Anything else is refused as
 * an unknown operation; RotateSecret too (the local cloud cannot run a rotation function):
 * `rotate()` plays what a rotation function does instead.
 *
 * Every successful write emits the CloudTrail record EventBridge would deliver ("AWS API Call via
 * CloudTrail", source aws.secretsmanager; never the value, as CloudTrail never logs it), and a
 * finished rotation "AWS Service Event via CloudTrail" with eventName RotationSucceeded
 * (https://docs.aws.amazon.com/secretsmanager/latest/userguide/cloudtrail_log_entries.html).
 *
 * Identity (SigV4 access key id): the admin may do anything; an instance of the fleet may call
 * GetSecretValue on secrets of its own environment only (names beginning `<environment>/`, as the
 * per-environment instance policy grants the mapped ones); anything else is a function role, which
 * may do everything except read a value (GetSecretValue, BatchGetSecretValue).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Clock } from './clock.ts';
import type { Fleet, Instance } from './fleet.ts';
import {
  ACCOUNT_ID,
  ADMIN_ACCESS_KEY_ID,
  type Reply,
  type Request,
  ServiceError,
  type ServiceFaults,
  shouldThrottle,
} from './http.ts';

type Json = Record<string, any>;

const CURRENT = 'AWSCURRENT';
const PREVIOUS = 'AWSPREVIOUS';
const PENDING = 'AWSPENDING';
// CreateSecret Name: 1-512 of letters, digits and /_+=.@- (API_CreateSecret.html).
const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;

interface SecretVersion {
  versionId: string;
  value: string;
  stages: Set<string>;
  created: Date;
}

interface Secret {
  name: string;
  arn: string;
  description?: string;
  versions: SecretVersion[];
  created: Date;
  changed: Date;
  deleted?: Date;
}

export interface SecretsManagerOptions {
  region: string;
  fleet: Fleet;
  environmentOf: (instance: Instance) => string | undefined;
  /** Puts an event on the default bus. */
  emit: (detailType: string, detail: Json) => void;
  clock?: Clock;
}

export class SecretsManagerService {
  readonly secrets = new Map<string, Secret>();
  faults: ServiceFaults = {};
  private readonly options: SecretsManagerOptions;

  constructor(options: SecretsManagerOptions) {
    this.options = options;
  }

  private now(): Date {
    return this.options.clock?.now() ?? new Date();
  }

  // ---- Helpers for tests and `npm run local` (as the admin) -----------------------------------

  /** CreateSecret, or PutSecretValue when it exists; returns the new VersionId. */
  put(name: string, value: string): string {
    if (this.secrets.has(name)) {
      return String(this.call('PutSecretValue', { SecretId: name, SecretString: value }).VersionId);
    }
    return String(this.call('CreateSecret', { Name: name, SecretString: value }).VersionId);
  }

  /** The VersionId staged AWSCURRENT, or undefined. */
  currentVersionId(name: string): string | undefined {
    return this.secrets.get(name)?.versions.find((v) => v.stages.has(CURRENT))?.versionId;
  }

  /**
   * A rotation as a rotation function performs it (createSecret, setSecret, testSecret,
   * finishSecret: https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda-functions.html):
   * the new value staged AWSPENDING (PutSecretValue), then AWSCURRENT moved to it
   * (UpdateSecretVersionStage), each as the function's role, then RotationSucceeded. Returns the
   * new VersionId.
   */
  rotate(name: string, newValue: string): string {
    const secret = this.find(name);
    const rotator = `arn:aws:sts::${ACCOUNT_ID}:assumed-role/rotation-role/rotation-function`;
    const token = randomUUID();
    this.call(
      'PutSecretValue',
      {
        SecretId: secret.arn,
        ClientRequestToken: token,
        SecretString: newValue,
        VersionStages: [PENDING],
      },
      rotator,
    );
    const current = this.currentVersionId(secret.name);
    this.call(
      'UpdateSecretVersionStage',
      {
        SecretId: secret.arn,
        VersionStage: CURRENT,
        MoveToVersionId: token,
        ...(current === undefined ? {} : { RemoveFromVersionId: current }),
      },
      rotator,
    );
    // finishSecret leaves AWSPENDING on the new current version or removes it; we remove it.
    const version = secret.versions.find((v) => v.versionId === token);
    version?.stages.delete(PENDING);
    this.options.emit('AWS Service Event via CloudTrail', {
      ...this.trailBase('RotationSucceeded'),
      userIdentity: { accountId: ACCOUNT_ID, invokedBy: 'secretsmanager.amazonaws.com' },
      sourceIPAddress: 'secretsmanager.amazonaws.com',
      userAgent: 'secretsmanager.amazonaws.com',
      requestParameters: null,
      responseElements: null,
      additionalEventData: { SecretId: secret.arn },
      eventType: 'AwsServiceEvent',
    });
    return token;
  }

  // ---- Wire ---------------------------------------------------------------------------------

  async handle(request: Request): Promise<Reply> {
    const target = String(request.headers['x-amz-target'] ?? '');
    const operation = target.startsWith('secretsmanager.')
      ? target.slice('secretsmanager.'.length)
      : '';
    try {
      if (shouldThrottle(this.faults))
        throw new ServiceError('ThrottlingException', 'Rate exceeded');
      const input = (request.body ? JSON.parse(request.body) : {}) as Json;
      const principal = this.authorize(operation, input, request.accessKeyId);
      const output = this.call(operation, input, principal);
      return {
        status: 200,
        headers: { 'content-type': 'application/x-amz-json-1.1' },
        body: JSON.stringify(output),
      };
    } catch (error) {
      if (error instanceof ServiceError) {
        return {
          status: error.status,
          headers: { 'content-type': 'application/x-amz-json-1.1' },
          body: JSON.stringify({ __type: error.code, Message: error.message }),
        };
      }
      throw error;
    }
  }

  /** The caller's principal ARN; throws AccessDeniedException like IAM would. */
  private authorize(operation: string, input: Json, accessKeyId: string): string {
    if (accessKeyId === ADMIN_ACCESS_KEY_ID) return `arn:aws:iam::${ACCOUNT_ID}:user/local-admin`;
    const readsValue = operation === 'GetSecretValue' || operation === 'BatchGetSecretValue';
    const instance = this.options.fleet.find(accessKeyId);
    const secretId = String(input.SecretId ?? '');
    if (instance) {
      const environment = this.options.environmentOf(instance);
      const principal = `arn:aws:sts::${ACCOUNT_ID}:assumed-role/${environment ?? 'untagged'}-instance-role/${instance.id}`;
      const secret = this.secrets.get(this.nameOf(secretId));
      const own =
        environment !== undefined && (secret?.name ?? secretId).startsWith(`${environment}/`);
      if (operation === 'GetSecretValue' && own) return principal;
      throw accessDenied(principal, operation, secret?.arn ?? secretId);
    }
    const session = accessKeyId.replace(/^ASIA-LOCAL-/, '') || 'anonymous';
    const principal = `arn:aws:sts::${ACCOUNT_ID}:assumed-role/${session}-role/${session}`;
    if (readsValue) throw accessDenied(principal, operation, secretId || '*');
    return principal;
  }

  private call(
    operation: string,
    input: Json,
    principal = `arn:aws:iam::${ACCOUNT_ID}:user/local-admin`,
  ): Json {
    switch (operation) {
      case 'CreateSecret':
        return this.createSecret(input, principal);
      case 'PutSecretValue':
        return this.putSecretValue(input, principal);
      case 'UpdateSecret':
        return this.updateSecret(input, principal);
      case 'GetSecretValue':
        return this.getSecretValue(input);
      case 'DescribeSecret':
        return this.describeSecret(input);
      case 'UpdateSecretVersionStage':
        return this.updateSecretVersionStage(input, principal);
      case 'DeleteSecret':
        return this.deleteSecret(input, principal);
      default:
        throw new ServiceError(
          'UnknownOperationException',
          operation === '' ? 'Missing X-Amz-Target' : `Unknown operation ${operation}`,
        );
    }
  }

  private createSecret(input: Json, principal: string): Json {
    const name = String(input.Name ?? '');
    if (!SECRET_NAME.test(name)) {
      throw new ServiceError(
        'ValidationException',
        `1 validation error detected: Value '${name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9/_+=.@-]+$`,
      );
    }
    if (this.secrets.has(name)) {
      throw new ServiceError(
        'ResourceExistsException',
        `The operation failed because the secret ${name} already exists.`,
      );
    }
    if (input.SecretBinary !== undefined) binaryNotSupported();
    const now = this.now();
    const secret: Secret = {
      name,
      arn: `arn:aws:secretsmanager:${this.options.region}:${ACCOUNT_ID}:secret:${name}-${suffix()}`,
      ...(input.Description === undefined ? {} : { description: String(input.Description) }),
      versions: [],
      created: now,
      changed: now,
    };
    this.secrets.set(name, secret);
    let versionId: string | undefined;
    if (input.SecretString !== undefined) {
      versionId = this.addVersion(secret, input, [CURRENT]).versionId;
    }
    this.trail('CreateSecret', principal, { name, clientRequestToken: versionId }, secret);
    return {
      ARN: secret.arn,
      Name: name,
      ...(versionId === undefined ? {} : { VersionId: versionId }),
    };
  }

  private putSecretValue(input: Json, principal: string): Json {
    const secret = this.live(String(input.SecretId ?? ''));
    if (input.SecretBinary !== undefined) binaryNotSupported();
    if (typeof input.SecretString !== 'string') {
      throw new ServiceError(
        'InvalidParameterException',
        'You must provide either SecretString or SecretBinary.',
      );
    }
    const stages = (input.VersionStages as string[] | undefined) ?? [CURRENT];
    const token = input.ClientRequestToken as string | undefined;
    const existing =
      token === undefined ? undefined : secret.versions.find((v) => v.versionId === token);
    // Same token and value: idempotent, no new version. Same token, another value: refused.
    if (existing !== undefined) {
      if (existing.value !== input.SecretString) {
        throw new ServiceError(
          'ResourceExistsException',
          'You cannot modify an existing version. You can only create new versions.',
        );
      }
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: existing.versionId,
        VersionStages: [...existing.stages],
      };
    }
    const version = this.addVersion(secret, input, stages);
    this.trail(
      'PutSecretValue',
      principal,
      { secretId: input.SecretId, clientRequestToken: version.versionId, versionStages: stages },
      secret,
    );
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      VersionStages: [...version.stages],
    };
  }

  private updateSecret(input: Json, principal: string): Json {
    const secret = this.live(String(input.SecretId ?? ''));
    if (input.SecretBinary !== undefined) binaryNotSupported();
    if (input.Description !== undefined) secret.description = String(input.Description);
    let versionId: string | undefined;
    if (typeof input.SecretString === 'string') {
      versionId = this.addVersion(secret, input, [CURRENT]).versionId;
    }
    secret.changed = this.now();
    this.trail(
      'UpdateSecret',
      principal,
      {
        secretId: input.SecretId,
        ...(versionId === undefined ? {} : { clientRequestToken: versionId }),
      },
      secret,
    );
    return {
      ARN: secret.arn,
      Name: secret.name,
      ...(versionId === undefined ? {} : { VersionId: versionId }),
    };
  }

  private getSecretValue(input: Json): Json {
    const secret = this.live(String(input.SecretId ?? ''));
    const version =
      input.VersionId !== undefined
        ? secret.versions.find((v) => v.versionId === input.VersionId)
        : secret.versions.find((v) => v.stages.has(String(input.VersionStage ?? CURRENT)));
    if (version === undefined) {
      throw new ServiceError(
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret value for staging label: " +
          String(input.VersionStage ?? CURRENT),
      );
    }
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      SecretString: version.value,
      VersionStages: [...version.stages],
      CreatedDate: version.created.getTime() / 1000,
    };
  }

  private describeSecret(input: Json): Json {
    const secret = this.find(String(input.SecretId ?? ''));
    return {
      ARN: secret.arn,
      Name: secret.name,
      ...(secret.description === undefined ? {} : { Description: secret.description }),
      CreatedDate: secret.created.getTime() / 1000,
      LastChangedDate: secret.changed.getTime() / 1000,
      ...(secret.deleted === undefined ? {} : { DeletedDate: secret.deleted.getTime() / 1000 }),
      VersionIdsToStages: Object.fromEntries(
        secret.versions.filter((v) => v.stages.size > 0).map((v) => [v.versionId, [...v.stages]]),
      ),
    };
  }

  /** API_UpdateSecretVersionStage.html: moving AWSCURRENT puts AWSPREVIOUS on the old one. */
  private updateSecretVersionStage(input: Json, principal: string): Json {
    const secret = this.live(String(input.SecretId ?? ''));
    const stage = String(input.VersionStage ?? '');
    const moveTo = input.MoveToVersionId as string | undefined;
    const removeFrom = input.RemoveFromVersionId as string | undefined;
    const holder = secret.versions.find((v) => v.stages.has(stage));
    if (
      moveTo !== undefined &&
      holder !== undefined &&
      holder.versionId !== moveTo &&
      holder.versionId !== removeFrom
    ) {
      throw new ServiceError(
        'InvalidParameterException',
        `The parameter RemoveFromVersionId can't be empty. Staging label ${stage} is currently attached to version ${holder.versionId}, so you must explicitly reference that version in RemoveFromVersionId.`,
      );
    }
    const target =
      moveTo === undefined ? undefined : secret.versions.find((v) => v.versionId === moveTo);
    if (moveTo !== undefined && target === undefined) {
      throw new ServiceError(
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret version.",
      );
    }
    if (removeFrom !== undefined)
      secret.versions.find((v) => v.versionId === removeFrom)?.stages.delete(stage);
    if (target !== undefined) {
      if (stage === CURRENT && holder !== undefined && holder !== target) {
        for (const v of secret.versions) v.stages.delete(PREVIOUS);
        holder.stages.add(PREVIOUS);
      }
      target.stages.add(stage);
    }
    secret.changed = this.now();
    this.trail(
      'UpdateSecretVersionStage',
      principal,
      {
        secretId: input.SecretId,
        versionStage: stage,
        moveToVersionId: moveTo,
        removeFromVersionId: removeFrom,
      },
      secret,
    );
    return { ARN: secret.arn, Name: secret.name };
  }

  private deleteSecret(input: Json, principal: string): Json {
    const secret = this.live(String(input.SecretId ?? ''));
    secret.deleted = this.now();
    if (input.ForceDeleteWithoutRecovery === true) this.secrets.delete(secret.name);
    this.trail('DeleteSecret', principal, { secretId: input.SecretId }, secret);
    return { ARN: secret.arn, Name: secret.name, DeletionDate: secret.deleted.getTime() / 1000 };
  }

  private addVersion(secret: Secret, input: Json, stages: string[]): SecretVersion {
    const version: SecretVersion = {
      versionId: (input.ClientRequestToken as string | undefined) ?? randomUUID(),
      value: String(input.SecretString),
      stages: new Set(),
      created: this.now(),
    };
    for (const stage of stages) {
      const holder = secret.versions.find((v) => v.stages.has(stage));
      holder?.stages.delete(stage);
      if (stage === CURRENT && holder !== undefined) {
        for (const v of secret.versions) v.stages.delete(PREVIOUS);
        holder.stages.add(PREVIOUS);
      }
      version.stages.add(stage);
    }
    secret.versions.push(version);
    secret.changed = this.now();
    return version;
  }

  /** A secret's name from a name or an ARN (full or partial); the name itself otherwise. */
  private nameOf(secretId: string): string {
    const match = /^arn:aws[\w-]*:secretsmanager:[\w-]*:\d{12}:secret:(.+)$/.exec(secretId);
    if (!match) return secretId;
    const rest = match[1] ?? '';
    for (const secret of this.secrets.values()) if (secret.arn === secretId) return secret.name;
    return rest;
  }

  private find(secretId: string): Secret {
    const secret = this.secrets.get(this.nameOf(secretId));
    if (secret === undefined) {
      throw new ServiceError(
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret.",
      );
    }
    return secret;
  }

  private live(secretId: string): Secret {
    const secret = this.find(secretId);
    if (secret.deleted !== undefined) {
      throw new ServiceError(
        'InvalidRequestException',
        "You can't perform this operation on the secret because it was marked for deletion.",
      );
    }
    return secret;
  }

  private trailBase(eventName: string): Json {
    return {
      eventVersion: '1.08',
      eventTime: this.now()
        .toISOString()
        .replace(/\.\d{3}Z$/, 'Z'),
      eventSource: 'secretsmanager.amazonaws.com',
      eventName,
      awsRegion: this.options.region,
      requestID: randomUUID(),
      eventID: randomUUID(),
      readOnly: false,
      managementEvent: true,
      recipientAccountId: ACCOUNT_ID,
      eventCategory: 'Management',
    };
  }

  /** The "AWS API Call via CloudTrail" record of a write: names and ids, never the value. */
  private trail(
    eventName: string,
    principal: string,
    requestParameters: Json,
    secret: Secret,
  ): void {
    this.options.emit('AWS API Call via CloudTrail', {
      ...this.trailBase(eventName),
      userIdentity: {
        type: principal.includes(':assumed-role/') ? 'AssumedRole' : 'IAMUser',
        arn: principal,
        accountId: ACCOUNT_ID,
      },
      sourceIPAddress: '127.0.0.1',
      userAgent: 'local-cloud',
      requestParameters: Object.fromEntries(
        Object.entries(requestParameters).filter(([, value]) => value !== undefined),
      ),
      responseElements: { arn: secret.arn },
      eventType: 'AwsApiCall',
    });
  }
}

function suffix(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(6)].map((byte) => alphabet[byte % alphabet.length]).join('');
}

function binaryNotSupported(): never {
  throw new ServiceError('ValidationException', 'The local cloud does not implement SecretBinary.');
}

function accessDenied(principal: string, operation: string, resource: string): ServiceError {
  return new ServiceError(
    'AccessDeniedException',
    `User: ${principal} is not authorized to perform: secretsmanager:${operation} on resource: ${resource} because no identity-based policy allows the secretsmanager:${operation} action`,
  );
}
