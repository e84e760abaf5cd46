import type {
  APIGatewayProxyEventV2WithIAMAuthorizer,
  APIGatewayProxyStructuredResultV2,
} from 'aws-lambda';

/** An HTTP API (payload 2.0) request authorised with AWS_IAM. */
export type HttpRequest = APIGatewayProxyEventV2WithIAMAuthorizer;

// Requests are a few hundred bytes; anything far larger is refused before parsing.
const MAX_BODY_BYTES = 16 * 1024;

/** Whether the event came through the HTTP API rather than a direct invoke. */
export function isHttpRequest(event: unknown): event is HttpRequest {
  return typeof (event as HttpRequest)?.requestContext?.http?.method === 'string';
}

/**
 * Whether the event came through the stack's own HTTP API (payload 2.0, AWS_IAM). A direct
 * invoke can carry any shape, so this is a check of intent, not proof: the real guard is that
 * only the HTTP function trusts a principal, and people are granted invoke on the other one.
 */
export function fromOwnApi(event: unknown, apiId: string): event is HttpRequest {
  return isHttpRequest(event) && event.requestContext.apiId === apiId;
}

/** The signed caller's IAM ARN, as API Gateway verified it. */
export function callerOf(request: HttpRequest): string {
  return request.requestContext.authorizer?.iam?.userArn ?? 'unknown IAM principal';
}

/** The JSON body, or an answer explaining why it cannot be read. Never throws. */
export function jsonBody(
  request: HttpRequest,
): { ok: true; value: unknown } | { ok: false; status: number; error: string } {
  const raw = request.body ?? '';
  const text = request.isBase64Encoded ? Buffer.from(raw, 'base64').toString('utf8') : raw;
  if (Buffer.byteLength(text) > MAX_BODY_BYTES) {
    return { ok: false, status: 413, error: `body is larger than ${MAX_BODY_BYTES} bytes` };
  }
  if (text.trim() === '')
    return { ok: false, status: 400, error: 'body is empty; send a JSON object' };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, status: 400, error: 'body is not JSON' };
  }
}

/** A JSON response. */
/** An answer for a person: an HTTP status and a JSON body (the CLI shows the body). */
export interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** A refusal: the status and `{ error }`, nothing done. Never throws. */
export const refuse = (status: number, error: string): Answer => ({ status, body: { error } });

export function respond(status: number, body: unknown): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode: status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
    body: JSON.stringify(body),
  };
}
