/**
 * AWS Signature Version 4 for the local HTTP API: signing a request (the tests, `npm run local`)
 * and verifying one (the API's AWS_IAM authorization), both with the SDK's own signer
 * (@smithy/signature-v4), so what verifies here is what a real client signs.
 * Signing process: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** SHA-256 (and HMAC-SHA-256 with a secret) for the signer, from node:crypto. */
class Sha256 {
  private readonly secret: Uint8Array | undefined;
  private hash: Hash | Hmac;

  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.secret = secret === undefined ? undefined : toBytes(secret);
    this.hash = this.fresh();
  }

  private fresh(): Hash | Hmac {
    return this.secret === undefined
      ? createHash('sha256')
      : createHmac('sha256', Buffer.from(this.secret));
  }

  update(chunk: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(toBytes(chunk));
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }

  reset(): void {
    this.hash = this.fresh();
  }
}

function toBytes(data: string | ArrayBuffer | ArrayBufferView): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data))
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

function signer(
  credentials: Credentials,
  region: string,
  service: string,
  applyChecksum = true,
): SignatureV4 {
  return new SignatureV4({ credentials, region, service, sha256: Sha256, applyChecksum });
}

export interface SignedRequestInput {
  url: string;
  method: string;
  headers?: Record<string, string>;
  body?: string;
  credentials: Credentials;
  region: string;
  /** Signing name; `execute-api` for API Gateway. */
  service?: string;
  /**
   * Sign an x-amz-content-sha256 header too (the JS SDK does); false signs only the standard
   * headers, as botocore's SigV4Auth does. Default true.
   */
  applyChecksum?: boolean;
}

/** The headers to send for a SigV4-signed request (host, x-amz-date, authorization, …). */
export async function signedHeaders(input: SignedRequestInput): Promise<Record<string, string>> {
  const url = new URL(input.url);
  const query: Record<string, string | string[]> = {};
  for (const [key, value] of url.searchParams) {
    const existing = query[key];
    query[key] =
      existing === undefined
        ? value
        : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  const signed = await signer(
    input.credentials,
    input.region,
    input.service ?? 'execute-api',
    input.applyChecksum ?? true,
  ).sign({
    method: input.method.toUpperCase(),
    protocol: url.protocol,
    hostname: url.hostname,
    ...(url.port ? { port: Number(url.port) } : {}),
    path: url.pathname,
    query,
    headers: { host: url.host, ...input.headers },
    ...(input.body === undefined ? {} : { body: input.body }),
  });
  return signed.headers as Record<string, string>;
}

/** `fetch` with a SigV4 signature (execute-api unless `service` says otherwise). */
export async function signedFetch(
  url: string,
  options: {
    method?: string;
    body?: string;
    headers?: Record<string, string>;
    credentials: Credentials;
    region: string;
    service?: string;
    applyChecksum?: boolean;
  },
): Promise<Response> {
  const method = options.method ?? 'GET';
  const headers = await signedHeaders({
    url,
    method,
    headers: {
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...options.headers,
    },
    credentials: options.credentials,
    region: options.region,
    ...(options.body === undefined ? {} : { body: options.body }),
    ...(options.service === undefined ? {} : { service: options.service }),
    ...(options.applyChecksum === undefined ? {} : { applyChecksum: options.applyChecksum }),
  });
  const { host: _host, ...sendable } = headers;
  return fetch(url, {
    method,
    headers: sendable,
    ...(options.body === undefined ? {} : { body: options.body }),
  });
}

export interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

// Authorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-west-1/execute-api/aws4_request,
//   SignedHeaders=host;x-amz-date, Signature=<64 hex>
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;

/** The parts of a SigV4 Authorization header, or undefined if it is not one. */
export function parseAuthorization(header: string | undefined): ParsedAuthorization | undefined {
  const match = AUTHORIZATION.exec((header ?? '').trim());
  if (!match) return undefined;
  const [, accessKeyId = '', date = '', region = '', service = '', headers = '', signature = ''] =
    match;
  return { accessKeyId, date, region, service, signedHeaders: headers.split(';'), signature };
}

export type Verification =
  | { ok: true; accessKeyId: string }
  | { ok: false; reason: 'malformed' | 'expired' | 'mismatch'; message: string };

/**
 * Recomputes the signature of an incoming request with the caller's secret and compares it,
 * over exactly the headers the caller signed (SignedHeaders) — as API Gateway does: the standard
 * SigV4 canonical request (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html)
 * needs `host` and `x-amz-date` signed, never `x-amz-content-sha256` (botocore's SigV4Auth does
 * not send it; the payload hash is the body's). A signed session token is part of the signature.
 */
export async function verifySignature(
  request: {
    method: string;
    path: string;
    query: URLSearchParams;
    headers: Record<string, string | string[] | undefined>;
    body: string;
  },
  auth: ParsedAuthorization,
  secretAccessKey: string,
  now: Date = new Date(),
): Promise<Verification> {
  const amzDate = String(request.headers['x-amz-date'] ?? '');
  const dateMatch = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!dateMatch || !auth.signedHeaders.includes('host') || !amzDate.startsWith(auth.date)) {
    return {
      ok: false,
      reason: 'malformed',
      message: "Authorization header requires 'host' and 'x-amz-date' to be signed.",
    };
  }
  const [, y, mo, d, h, mi, s] = dateMatch;
  const signingDate = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`);
  // Requests more than 5 minutes off are refused (https://docs.aws.amazon.com/IAM/latest/UserGuide/signing-elements.html).
  if (Math.abs(now.getTime() - signingDate.getTime()) > 5 * 60 * 1000) {
    return {
      ok: false,
      reason: 'expired',
      message: `Signature expired: ${amzDate} is now earlier or later than the allowed window`,
    };
  }
  const headers: Record<string, string> = {};
  for (const name of auth.signedHeaders) {
    const value = request.headers[name];
    if (value === undefined) {
      return { ok: false, reason: 'mismatch', message: SIGNATURE_MISMATCH };
    }
    headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const claimedHash = headers['x-amz-content-sha256'];
  if (
    claimedHash !== undefined &&
    claimedHash !== 'UNSIGNED-PAYLOAD' &&
    claimedHash !== createHash('sha256').update(request.body).digest('hex')
  ) {
    return { ok: false, reason: 'mismatch', message: SIGNATURE_MISMATCH };
  }
  const query: Record<string, string | string[]> = {};
  for (const [key, value] of request.query) {
    const existing = query[key];
    query[key] =
      existing === undefined
        ? value
        : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  const host = headers.host ?? '';
  // No checksum header and no token header of the signer's own: the headers signed are the
  // caller's SignedHeaders (x-amz-security-token among them when the caller signed it).
  const resigned = await signer(
    { accessKeyId: auth.accessKeyId, secretAccessKey },
    auth.region,
    auth.service,
    false,
  ).sign(
    {
      method: request.method,
      protocol: 'http:',
      hostname: host.split(':')[0] ?? host,
      path: request.path,
      query,
      headers,
      body: request.body,
    },
    { signingDate },
  );
  const expected = parseAuthorization(String(resigned.headers.authorization ?? ''))?.signature;
  return expected === auth.signature
    ? { ok: true, accessKeyId: auth.accessKeyId }
    : { ok: false, reason: 'mismatch', message: SIGNATURE_MISMATCH };
}

export const SIGNATURE_MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
