/**
 * API Gateway HTTP APIs (v2) of the packaged template: AWS::ApiGatewayV2::Api, its Routes
 * ("POST /resync", "GET /rollouts/{id}", "$default"), their AWS_PROXY Integrations to Lambda
 * (payload format 2.0, TimeoutInMillis) and the AWS::Lambda::Permission that lets
 * apigateway.amazonaws.com invoke the function.
 *
 * Authorization AWS_IAM: the request must carry a SigV4 signature (signing name execute-api)
 * that verifies with the caller's secret. The answers are API Gateway's
 * (https://repost.aws/knowledge-center/api-gateway-troubleshoot-403-forbidden): no signature →
 * 403 {"message":"Forbidden"} (an HTTP API answers an unsigned call to an IAM route with the
 * generic body, unlike a REST API's "Missing Authentication Token"); an unknown access key →
 * 403 "The security token included in the request is invalid."; a bad signature → 403 "The
 * request signature we calculated does not match…"; a principal without execute-api:Invoke →
 * 403 "User: <arn> is not authorized to perform: execute-api:Invoke on resource: <arn>".
 * Access keys map to principals (`registerPrincipal`); the admin key of the local cloud is an
 * IAM user. A principal's identity policy for execute-api:Invoke is evaluated (`mayInvoke`).
 *
 * The event and the response mapping follow "Create AWS Lambda proxy integrations for HTTP
 * APIs" (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html):
 * format 2.0 joins duplicate headers and query parameters with commas, moves cookies to
 * `cookies`, base64-encodes bodies that are not text; a response without `statusCode` that is
 * valid JSON becomes 200 application/json with the JSON as body. A function error is
 * 500 {"message":"Internal Server Error"}; no answer within the integration timeout (30 s at
 * most) is 503 {"message":"Service Unavailable"}; no route is 404 {"message":"Not Found"}.
 */

import type { Reply, Request } from './http.ts';
import type { LambdaFunction } from './lambda.ts';
import {
  parseAuthorization,
  SIGNATURE_MISMATCH as verifyMismatch,
  verifySignature,
} from './sigv4.ts';
import type { Stack } from './template.ts';

type Json = Record<string, any>;

/** Who an access key stands for, as the IAM authorizer passes it on. */
export interface Principal {
  secretAccessKey: string;
  /** arn:aws:iam::123456789012:user/alice or arn:aws:sts::123456789012:assumed-role/Role/session */
  userArn: string;
  /** AIDA… for a user, AROA…:session for a role session. Derived from the ARN if omitted. */
  userId?: string;
  /**
   * The session token of temporary credentials (an assumed role's); requests with this key must
   * carry it in x-amz-security-token, and requests with a long-term key must not carry one.
   */
  sessionToken?: string;
  /** Whether an IAM policy lets it call execute-api:Invoke on this API. Default true. */
  allowed?: boolean;
  /**
   * Its identity-based policy, as far as execute-api goes: evaluated as IAM does (an explicit
   * Deny wins, else an Allow is needed). Without one, `allowed` decides.
   */
  policy?: PolicyStatement[];
  principalOrgId?: string;
}

/** One statement of an IAM policy, with the elements execute-api:Invoke needs. */
export interface PolicyStatement {
  Effect: 'Allow' | 'Deny';
  Action: string | string[];
  Resource: string | string[];
}

/**
 * Whether a principal may call execute-api:Invoke on `resourceArn`
 * (arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/<METHOD>/<path>), as IAM evaluates an
 * identity policy: an explicit Deny that matches wins, else a matching Allow is needed; `*` and
 * `?` are wildcards in actions and resources
 * (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-control-access-using-iam-policies-to-invoke-api.html,
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).
 */
export function mayInvoke(principal: Principal, resourceArn: string): boolean {
  if (principal.policy === undefined) return principal.allowed !== false;
  const matching = principal.policy.filter(
    (statement) =>
      list(statement.Action).some((action) => iamWildcard(action, 'execute-api:Invoke', true)) &&
      list(statement.Resource).some((resource) => iamWildcard(resource, resourceArn, false)),
  );
  if (matching.some((statement) => statement.Effect === 'Deny')) return false;
  return matching.some((statement) => statement.Effect === 'Allow');
}

const list = (value: string | string[]) => (Array.isArray(value) ? value : [value]);

// IAM matches actions case-insensitively and resources case-sensitively.
function iamWildcard(pattern: string, value: string, ignoreCase: boolean): boolean {
  const source = pattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\/]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, ignoreCase ? 'i' : '').test(value);
}

export interface Route {
  routeKey: string;
  method: string;
  /** Path segments; `{name}` matches one segment, `{name+}` the rest. */
  segments: string[];
  authorizationType: string;
  fn: LambdaFunction;
  payloadFormatVersion: string;
  timeoutMs: number;
}

/** One request the API answered: what the tests and the canary scan read. */
export interface ApiRequestRecord {
  requestId: string;
  method: string;
  path: string;
  routeKey?: string;
  callerArn?: string;
  status: number;
  requestBody: string;
  responseBody: string;
  at: Date;
}

const TEXT_TYPES = [
  /^text\//,
  /^application\/(.+\+)?json/,
  /^application\/(.+\+)?xml/,
  /^application\/javascript/,
  /^application\/x-www-form-urlencoded/,
];

const message = (status: number, text: string, headers: Record<string, string> = {}): Reply => ({
  status,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify({ message: text }),
});

export class HttpApi {
  readonly apiId: string;
  readonly name: string;
  readonly region: string;
  readonly accountId: string;
  readonly routes: Route[];
  /** '$default' serves at the root; any other stage under /<stage>. */
  readonly stages: string[];
  readonly requests: ApiRequestRecord[] = [];
  endpoint = '';
  /** Simulated time for the event's requestTime (the local cloud's clock); real by default. */
  now: () => Date = () => new Date();
  private readonly principals = new Map<string, Principal>();
  private readonly permitted: (fn: LambdaFunction, sourceArn: string) => boolean;

  constructor(options: {
    apiId: string;
    name: string;
    region: string;
    accountId: string;
    routes: Route[];
    stages: string[];
    permitted: (fn: LambdaFunction, sourceArn: string) => boolean;
  }) {
    this.apiId = options.apiId;
    this.name = options.name;
    this.region = options.region;
    this.accountId = options.accountId;
    this.routes = options.routes;
    this.stages = options.stages.length > 0 ? options.stages : ['$default'];
    this.permitted = options.permitted;
  }

  /** Lets `accessKeyId` sign requests as `principal`. */
  registerPrincipal(accessKeyId: string, principal: Principal): void {
    this.principals.set(accessKeyId, principal);
  }

  async handle(request: Request): Promise<Reply> {
    const reply = await this.answer(request);
    reply.headers = { ...reply.headers, 'apigw-requestid': request.requestId };
    return reply;
  }

  private async answer(request: Request): Promise<Reply> {
    const record: ApiRequestRecord = {
      requestId: request.requestId,
      method: request.method,
      path: request.path,
      status: 0,
      requestBody: request.body,
      responseBody: '',
      at: new Date(),
    };
    const done = (reply: Reply): Reply => {
      record.status = reply.status;
      record.responseBody = reply.body;
      this.requests.push(record);
      return reply;
    };

    const { stage, path } = this.stageOf(request.path);
    const match = stage === undefined ? undefined : this.match(request.method, path);
    if (stage === undefined || match === undefined) return done(message(404, 'Not Found'));
    const { route, pathParameters } = match;
    record.routeKey = route.routeKey;
    const sourceArn = `arn:aws:execute-api:${this.region}:${this.accountId}:${this.apiId}/${stage}/${request.method}${path}`;

    let iam: Json | undefined;
    if (route.authorizationType === 'AWS_IAM') {
      const authorization = String(request.headers.authorization ?? '');
      if (authorization === '') return done(message(403, 'Forbidden'));
      const parsed = parseAuthorization(authorization);
      if (parsed === undefined) return done(message(403, 'Forbidden'));
      // The credential scope names the API's region and execute-api; API Gateway refuses others
      // with these messages, trailing space included: {"message":"Credential should be scoped to
      // a valid region, not 'eu-west-1'. "} (as reported in aws/aws-sdk-js#792, joona/aws-es-curl#15).
      if (parsed.region !== this.region) {
        return done(
          message(403, `Credential should be scoped to a valid region, not '${parsed.region}'. `),
        );
      }
      if (parsed.service !== 'execute-api') {
        return done(
          message(403, "Credential should be scoped to correct service: 'execute-api'. "),
        );
      }
      const principal = this.principals.get(parsed.accessKeyId);
      const token = request.headers['x-amz-security-token'];
      if (
        principal === undefined ||
        (token === undefined ? undefined : String(token)) !== principal.sessionToken
      ) {
        return done(message(403, 'The security token included in the request is invalid.'));
      }
      if (
        principal.sessionToken !== undefined &&
        !parsed.signedHeaders.includes('x-amz-security-token')
      ) {
        return done(message(403, verifyMismatch));
      }
      const verified = await verifySignature(
        {
          method: request.method,
          path: request.path,
          query: request.query,
          headers: request.headers,
          body: request.body,
        },
        parsed,
        principal.secretAccessKey,
      );
      if (!verified.ok) return done(message(403, verified.message));
      if (!mayInvoke(principal, sourceArn)) {
        return done(
          message(
            403,
            `User: ${principal.userArn} is not authorized to perform: execute-api:Invoke on resource: ${sourceArn}`,
          ),
        );
      }
      record.callerArn = principal.userArn;
      iam = iamContext(parsed.accessKeyId, principal);
    }

    if (!this.permitted(route.fn, sourceArn)) {
      // Without a resource-based policy for apigateway.amazonaws.com the invoke is refused.
      return done(message(500, 'Internal Server Error'));
    }
    const event = this.event(request, route, stage, pathParameters, iam);
    const outcome = await Promise.race([
      route.fn.invoke(event),
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), route.timeoutMs)),
    ]);
    if (outcome === 'timeout') return done(message(503, 'Service Unavailable'));
    if (outcome.error !== undefined) return done(message(500, 'Internal Server Error'));
    return done(responseOf(outcome.result) ?? message(500, 'Internal Server Error'));
  }

  private stageOf(path: string): { stage?: string; path: string } {
    if (this.stages.includes('$default')) return { stage: '$default', path };
    const [, first = '', ...rest] = path.split('/');
    return this.stages.includes(first) ? { stage: first, path: `/${rest.join('/')}` } : { path };
  }

  /** The most specific route: exact method over ANY, literal segments over variables, greedy last. */
  private match(
    method: string,
    path: string,
  ): { route: Route; pathParameters: Record<string, string> } | undefined {
    const parts = path.split('/').slice(1);
    let best: { route: Route; pathParameters: Record<string, string>; score: number } | undefined;
    for (const route of this.routes) {
      if (route.routeKey === '$default') continue;
      if (route.method !== 'ANY' && route.method !== method) continue;
      const pathParameters: Record<string, string> = {};
      let score = route.method === 'ANY' ? 0 : 1000;
      let ok = true;
      for (const [index, segment] of route.segments.entries()) {
        const greedy = /^\{(.+)\+\}$/.exec(segment);
        if (greedy) {
          const restOfPath = parts.slice(index).join('/');
          if (restOfPath === '') ok = false;
          else pathParameters[greedy[1] ?? ''] = decodeURIComponent(restOfPath);
          score -= 500;
          break;
        }
        const part = parts[index];
        if (part === undefined) {
          ok = false;
          break;
        }
        const variable = /^\{(.+)\}$/.exec(segment);
        if (variable) {
          if (part === '') ok = false;
          pathParameters[variable[1] ?? ''] = decodeURIComponent(part);
          score += 1;
        } else if (segment === part) {
          score += 10;
        } else {
          ok = false;
          break;
        }
      }
      const greedyRoute = route.segments.some((segment) => segment.endsWith('+}'));
      if (!greedyRoute && route.segments.length !== parts.length) ok = false;
      if (ok && (best === undefined || score > best.score)) best = { route, pathParameters, score };
    }
    if (best) return best;
    const fallback = this.routes.find((route) => route.routeKey === '$default');
    return fallback ? { route: fallback, pathParameters: {} } : undefined;
  }

  private event(
    request: Request,
    route: Route,
    stage: string,
    pathParameters: Record<string, string>,
    iam: Json | undefined,
  ): Json {
    const headers: Record<string, string> = {};
    let cookies: string[] | undefined;
    for (const [name, value] of Object.entries(request.headers)) {
      if (value === undefined) continue;
      const text = Array.isArray(value) ? value.join(',') : value;
      if (name === 'cookie') cookies = text.split(/;\s*/).filter(Boolean);
      else headers[name] = text;
    }
    const query: Record<string, string> = {};
    for (const [key, value] of request.query) {
      query[key] = query[key] === undefined ? value : `${query[key]},${value}`;
    }
    const contentType = headers['content-type'] ?? '';
    const text = request.rawBody.length === 0 || TEXT_TYPES.some((re) => re.test(contentType));
    const now = this.now();
    const domainName = headers.host ?? `${this.apiId}.execute-api.${this.region}.amazonaws.com`;
    return {
      version: '2.0',
      routeKey: route.routeKey,
      rawPath: request.path,
      rawQueryString: request.rawQuery,
      ...(cookies === undefined ? {} : { cookies }),
      headers,
      ...(Object.keys(query).length === 0 ? {} : { queryStringParameters: query }),
      requestContext: {
        accountId: this.accountId,
        apiId: this.apiId,
        ...(iam === undefined ? {} : { authorizer: { iam } }),
        domainName,
        domainPrefix: domainName.split('.')[0],
        http: {
          method: request.method,
          path: request.path,
          protocol: 'HTTP/1.1',
          sourceIp: '127.0.0.1',
          userAgent: headers['user-agent'] ?? '',
        },
        requestId: request.requestId,
        routeKey: route.routeKey,
        stage,
        time: clfTime(now),
        timeEpoch: now.getTime(),
      },
      ...(Object.keys(pathParameters).length === 0 ? {} : { pathParameters }),
      ...(request.rawBody.length === 0
        ? {}
        : { body: text ? request.body : request.rawBody.toString('base64') }),
      isBase64Encoded: !text,
    };
  }
}

function iamContext(accessKeyId: string, principal: Principal): Json {
  const accountId = /^arn:aws:(?:iam|sts)::(\d{12}):/.exec(principal.userArn)?.[1] ?? '';
  const session = /:assumed-role\/([^/]+)\/(.+)$/.exec(principal.userArn);
  const userId =
    principal.userId ??
    (session
      ? `AROA${pseudoId(session[1] ?? '')}:${session[2]}`
      : `AIDA${pseudoId(principal.userArn)}`);
  return {
    accessKey: accessKeyId,
    accountId,
    callerId: userId,
    cognitoIdentity: null,
    principalOrgId: principal.principalOrgId ?? null,
    userArn: principal.userArn,
    userId,
  };
}

function pseudoId(seed: string): string {
  let hash = 0n;
  for (const char of seed) hash = (hash * 131n + BigInt(char.codePointAt(0) ?? 0)) % 36n ** 17n;
  return hash.toString(36).toUpperCase().padStart(17, 'X');
}

/** 12/Mar/2020:19:03:58 +0000, as requestContext.time has it. */
function clfTime(date: Date): string {
  const months = 'Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec'.split(' ');
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(date.getUTCDate())}/${months[date.getUTCMonth()]}/${date.getUTCFullYear()}:${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}

/** The HTTP response for a function's result (format 2.0), or undefined if it is malformed. */
function responseOf(result: unknown): Reply | undefined {
  if (result !== null && typeof result === 'object' && 'statusCode' in result) {
    const r = result as Json;
    const status = Number(r.statusCode);
    if (!Number.isInteger(status) || status < 100 || status > 599) return undefined;
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries((r.headers ?? {}) as Json)) {
      headers[name.toLowerCase()] = String(value);
    }
    const raw = r.body === undefined || r.body === null ? '' : String(r.body);
    const body = r.isBase64Encoded === true ? Buffer.from(raw, 'base64').toString('utf8') : raw;
    if (Array.isArray(r.cookies) && r.cookies.length > 0) {
      headers['set-cookie'] = (r.cookies as string[]).join(', ');
    }
    return { status, headers, body };
  }
  return {
    status: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(result),
  };
}

/** The HTTP APIs the template declares, wired to the local functions by ARN. */
export function httpApisFromTemplate(
  stack: Stack,
  functionByArn: (arn: string) => LambdaFunction | undefined,
): HttpApi[] {
  const { region, accountId } = stack.context;
  const permissions = stack
    .resources('AWS::Lambda::Permission')
    .map(([, resource]) => stack.resolve(resource.Properties ?? {}) as Json)
    .filter((props) => props.Principal === 'apigateway.amazonaws.com');
  const permitted = (fn: LambdaFunction, sourceArn: string) =>
    permissions.some(
      (props) =>
        (props.FunctionName === fn.options.arn || props.FunctionName === fn.name) &&
        (props.SourceArn === undefined || wildcard(String(props.SourceArn)).test(sourceArn)),
    );

  const integrations = new Map<string, Json>();
  for (const [logicalId, resource] of stack.resources('AWS::ApiGatewayV2::Integration')) {
    integrations.set(stack.ref(logicalId), stack.resolve(resource.Properties ?? {}) as Json);
  }
  const apis: HttpApi[] = [];
  for (const [logicalId, resource] of stack.resources('AWS::ApiGatewayV2::Api')) {
    const props = stack.resolve(resource.Properties ?? {}) as Json;
    if (props.ProtocolType !== 'HTTP') continue;
    const apiId = stack.ref(logicalId);
    const routes: Route[] = [];
    for (const [routeId, routeResource] of stack.resources('AWS::ApiGatewayV2::Route')) {
      const route = stack.resolve(routeResource.Properties ?? {}) as Json;
      if (route.ApiId !== apiId) continue;
      const integrationId = String(route.Target ?? '').replace(/^integrations\//, '');
      const integration = integrations.get(integrationId);
      if (integration === undefined || integration.IntegrationType !== 'AWS_PROXY') {
        throw new Error(`local cloud: route ${routeId} has no AWS_PROXY integration`);
      }
      const fn = functionByArn(String(integration.IntegrationUri));
      if (fn === undefined) {
        throw new Error(`local cloud: route ${routeId} targets ${integration.IntegrationUri}`);
      }
      const routeKey = String(route.RouteKey);
      const [method = '', path = ''] = routeKey === '$default' ? ['ANY', ''] : routeKey.split(' ');
      routes.push({
        routeKey,
        method,
        segments: path.split('/').slice(1),
        authorizationType: String(route.AuthorizationType ?? 'NONE'),
        fn,
        payloadFormatVersion: String(integration.PayloadFormatVersion ?? '2.0'),
        // HTTP APIs wait at most 30 s for an integration.
        timeoutMs: Math.min(30_000, Number(integration.TimeoutInMillis ?? 30_000)),
      });
    }
    const stages = stack
      .resources('AWS::ApiGatewayV2::Stage')
      .map(([, stageResource]) => stack.resolve(stageResource.Properties ?? {}) as Json)
      .filter((stage) => stage.ApiId === apiId)
      .map((stage) => String(stage.StageName));
    apis.push(
      new HttpApi({
        apiId,
        name: String(props.Name ?? logicalId),
        region,
        accountId,
        routes,
        stages,
        permitted,
      }),
    );
  }
  return apis;
}

function wildcard(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split('*')
      .map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'))
      .join('.*')}$`,
  );
}
