/**
 * The HTTP API checks SigV4 as API Gateway does (IAM authorization,
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html;
 * signing: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html): the
 * standard signed headers are enough (botocore's SigV4Auth signs host and x-amz-date, never
 * x-amz-content-sha256), the credential scope must name the API's region and execute-api, and
 * temporary credentials need their session token, signed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { signedFetch } from '../local-cloud/sigv4.ts';
import { startTestCloud } from './local-cloud.ts';

const BOB = { accessKeyId: 'AKIABOBEXAMPLE000001', secretAccessKey: 'bob-s3cr3t-for-tests' };
const ROLE = {
  accessKeyId: 'ASIAROLEEXAMPLE00001',
  secretAccessKey: 'role-s3cr3t-for-tests',
  sessionToken: 'session-token-for-tests',
};

describe('HTTP API SigV4 verification, as API Gateway does it', () => {
  let cloud: LocalCloud;
  const get = async (
    options: {
      credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
      region?: string;
      service?: string;
      applyChecksum?: boolean;
    } = {},
  ) => {
    const response = await signedFetch(
      `${cloud.endpoints.api}/environments/prod/rollouts?parameter=/prod/env.php`,
      {
        credentials: options.credentials ?? BOB,
        region: options.region ?? cloud.region,
        ...(options.service === undefined ? {} : { service: options.service }),
        applyChecksum: options.applyChecksum ?? false,
      },
    );
    return { status: response.status, json: (await response.json()) as any };
  };

  beforeAll(async () => {
    cloud = await startTestCloud([]);
    cloud.registerPrincipal(BOB.accessKeyId, {
      secretAccessKey: BOB.secretAccessKey,
      userArn: 'arn:aws:iam::123456789012:user/bob',
    });
    cloud.registerPrincipal(ROLE.accessKeyId, {
      secretAccessKey: ROLE.secretAccessKey,
      sessionToken: ROLE.sessionToken,
      userArn: 'arn:aws:sts::123456789012:assumed-role/OnCall/carol',
    });
  });

  afterAll(async () => {
    await cloud?.stop();
  });

  it('accepts a signature over the standard headers only (no x-amz-content-sha256)', async () => {
    const response = await get();
    expect(response.status).toBe(200);
    expect(response.json.rollouts).toEqual([]);
  });

  it('accepts the JS SDK signature with x-amz-content-sha256 signed as well', async () => {
    expect((await get({ applyChecksum: true })).status).toBe(200);
  });

  it('refuses a credential scoped to another region', async () => {
    const response = await get({ region: 'us-east-1' });
    expect(response.status).toBe(403);
    expect(response.json.message).toBe(
      "Credential should be scoped to a valid region, not 'us-east-1'. ",
    );
  });

  it('refuses a credential scoped to another service', async () => {
    const response = await get({ service: 'lambda' });
    expect(response.status).toBe(403);
    expect(response.json.message).toBe(
      "Credential should be scoped to correct service: 'execute-api'. ",
    );
  });

  it('accepts temporary credentials with their session token', async () => {
    expect((await get({ credentials: ROLE })).status).toBe(200);
  });

  it('refuses temporary credentials without, or with another, session token', async () => {
    const { sessionToken: _token, ...withoutToken } = ROLE;
    const missing = await get({ credentials: withoutToken });
    const wrong = await get({ credentials: { ...ROLE, sessionToken: 'another-token' } });
    const onLongTermKey = await get({ credentials: { ...BOB, sessionToken: ROLE.sessionToken } });
    for (const response of [missing, wrong, onLongTermKey]) {
      expect(response.status).toBe(403);
      expect(response.json.message).toBe('The security token included in the request is invalid.');
    }
  });
});
