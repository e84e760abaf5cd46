import { DescribeSecretCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/**
 * The name of a secret from what a caller passed as SecretId: the name itself, or its ARN, whose
 * last part is the name, a hyphen and six random characters Secrets Manager adds
 * (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_iam-permissions.html#iam-resources).
 * A partial ARN (without the suffix) keeps its last part whole. Never throws.
 */
export function secretNameOf(secretId: string): string {
  const match = /^arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:(.+)$/.exec(secretId);
  if (match === null) return secretId;
  const last = match[1] ?? '';
  return /-[A-Za-z0-9]{6}$/.test(last) ? last.slice(0, -7) : last;
}

export interface CurrentSecretVersion {
  name: string;
  versionId: string;
}

/**
 * The version of a secret staged AWSCURRENT, from DescribeSecret (metadata only: the functions
 * may not call GetSecretValue). undefined when the secret is gone or has no AWSCURRENT version
 * yet. Throws any other SDK error (AccessDenied for a secret that is not mapped).
 */
export async function currentSecretVersion(
  client: SecretsManagerClient,
  secretId: string,
): Promise<CurrentSecretVersion | undefined> {
  try {
    const secret = await client.send(new DescribeSecretCommand({ SecretId: secretId }));
    if (secret.DeletedDate !== undefined) return undefined;
    const current = Object.entries(secret.VersionIdsToStages ?? {}).find(([, stages]) =>
      stages.includes('AWSCURRENT'),
    );
    if (current === undefined || secret.Name === undefined) return undefined;
    return { name: secret.Name, versionId: current[0] };
  } catch (error) {
    if ((error as Error).name === 'ResourceNotFoundException') return undefined;
    throw error;
  }
}
