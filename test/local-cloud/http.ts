/**
 * The HTTP side shared by every local service: a loopback server on a free port, the caller's
 * identity from the SigV4 Authorization header, request ids, and the per-service faults
 * (throttling, latency) that the services apply before handling a call.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const ACCOUNT_ID = '123456789012';

/** Access key id the tests, the CLI and `npm run local` use: allowed everything. */
export const ADMIN_ACCESS_KEY_ID = 'AKIALOCALCLOUDADMIN';

export interface Request {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: string;
  /** The body's bytes, for services that pass binary bodies on (the HTTP API). */
  rawBody: Buffer;
  /** The query string as sent, without the `?`. */
  rawQuery: string;
  /** The access key id of the SigV4 Authorization header; '' when unsigned. */
  accessKeyId: string;
  requestId: string;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body: string;
  /** A binary body (CBOR), sent instead of `body` when present. */
  rawBody?: Buffer;
}

export type Handler = (request: Request) => Promise<Reply> | Reply;

/** Faults of one service, changeable while the cloud runs. */
export interface ServiceFaults {
  /** Fraction (0..1) of calls answered with the service's throttling error. */
  throttleRate?: number;
  /** Throttle exactly the next N calls (deterministic, for tests). */
  throttleNext?: number;
  /** Real milliseconds added to every call. */
  latencyMs?: number;
}

/** Whether this call should be throttled; consumes one `throttleNext`. */
export function shouldThrottle(faults: ServiceFaults | undefined): boolean {
  if (!faults) return false;
  if ((faults.throttleNext ?? 0) > 0) {
    faults.throttleNext = (faults.throttleNext ?? 0) - 1;
    return true;
  }
  return (faults.throttleRate ?? 0) > 0 && Math.random() < (faults.throttleRate ?? 0);
}

// Authorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-west-1/ssm/aws4_request, ...
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html). The local cloud
// trusts the key id and does not check the signature: identity, not security, is what it models.
export function accessKeyIdOf(authorization: string | undefined): string {
  const match = /Credential=([^/,\s]+)\//.exec(authorization ?? '');
  return match?.[1] ?? '';
}

export interface LocalServer {
  endpoint: string;
  port: number;
  close(): Promise<void>;
}

/** Starts `handler` on 127.0.0.1:<free port>. A handler that throws answers 500. */
export async function startServer(
  handler: Handler,
  faults?: () => ServiceFaults | undefined,
): Promise<LocalServer> {
  const server: Server = createServer((req, res) => {
    void serve(req, res, handler, faults?.());
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function serve(
  req: IncomingMessage,
  res: ServerResponse,
  handler: Handler,
  faults: ServiceFaults | undefined,
): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const url = new URL(req.url ?? '/', 'http://localhost');
  const requestId = randomUUID();
  const rawBody = Buffer.concat(chunks);
  const request: Request = {
    method: req.method ?? 'GET',
    path: url.pathname,
    query: url.searchParams,
    headers: req.headers,
    body: rawBody.toString('utf8'),
    rawBody,
    rawQuery: url.search.replace(/^\?/, ''),
    accessKeyId: accessKeyIdOf(req.headers.authorization),
    requestId,
  };
  let reply: Reply;
  try {
    if (faults?.latencyMs) await new Promise((resolve) => setTimeout(resolve, faults.latencyMs));
    reply = await handler(request);
  } catch (error) {
    // A defect of the local cloud: AWS's shape for an internal error, the stack on stderr only.
    console.error(`local cloud: ${req.method} ${req.url}:`, error);
    reply = {
      status: 500,
      headers: { 'content-type': 'application/x-amz-json-1.1' },
      body: JSON.stringify({
        __type: 'InternalFailure',
        message:
          'The request processing has failed because of an unknown error, exception or failure.',
      }),
    };
  }
  if (res.destroyed) return;
  const body = reply.rawBody ?? reply.body;
  res.writeHead(reply.status, {
    'x-amzn-requestid': requestId,
    'content-length': Buffer.byteLength(body),
    ...reply.headers,
  });
  res.end(body);
}

/** An error a service answers with: its wire code, message and HTTP status. */
export class ServiceError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(code: string, message: string, status = 400) {
    super(message);
    this.name = code;
    this.code = code;
    this.status = status;
  }
}

/** Reads a form-encoded body (Query protocol) into a map. */
export function parseForm(body: string): Map<string, string> {
  return new Map(new URLSearchParams(body).entries());
}

/** Escapes text for XML element content. */
export function xmlEscape(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
    .replace(/\r/g, '&#13;');
}

/** Opaque pagination tokens: base64 of the next offset and a fingerprint of the query. */
export function encodeToken(offset: number, fingerprint: string): string {
  return Buffer.from(JSON.stringify({ o: offset, f: fingerprint })).toString('base64');
}

/** The offset a token stands for, or undefined when it is not one of ours for this query. */
export function decodeToken(token: string, fingerprint: string): number | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as {
      o?: unknown;
      f?: unknown;
    };
    if (typeof parsed.o === 'number' && parsed.f === fingerprint) return parsed.o;
  } catch {
    // fall through
  }
  return undefined;
}
