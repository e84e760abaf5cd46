/**
 * The Lambda API's Invoke operation (REST-JSON, `POST /2015-03-31/functions/{name}/invocations`,
 * https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html), so `aws lambda invoke`, the
 * SDK's InvokeCommand (what `serverless invoke` sends) and `npm run local -- invoke` reach the
 * local functions. RequestResponse answers the function's return value as JSON (an error as
 * `X-Amz-Function-Error: Unhandled` with the error object); Event queues it and answers 202;
 * DryRun answers 204. Only the local cloud's admin may invoke. Other Lambda operations are
 * refused in AWS's shape, never ignored.
 */
import { ADMIN_ACCESS_KEY_ID, type Reply, type Request } from './http.ts';
import type { LambdaFunction } from './lambda.ts';

const INVOKE = /^\/2015-03-31\/functions\/([^/]+)\/invocations\/?$/;

function error(status: number, type: string, message: string): Reply {
  return {
    status,
    headers: { 'content-type': 'application/json', 'x-amzn-errortype': type },
    body: JSON.stringify({ Type: 'User', message }),
  };
}

export function lambdaApi(
  findFunction: (nameOrArn: string) => LambdaFunction | undefined,
  arnPrefix: string,
): (request: Request) => Promise<Reply> {
  return async (request) => {
    const match = INVOKE.exec(request.path);
    if (request.method !== 'POST' || !match) {
      return error(
        404,
        'UnknownOperationException',
        `The local cloud implements only Invoke of the Lambda API, not ${request.method} ${request.path}.`,
      );
    }
    if (request.accessKeyId === '')
      return error(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    let name = decodeURIComponent(match[1] ?? '');
    const qualifier = request.query.get('Qualifier');
    // name, name:qualifier, a full or partial ARN (API_Invoke.html, FunctionName).
    const arnQualifier = /^(arn:aws:lambda:[^:]+:\d{12}:function:[^:]+):(.+)$/.exec(name);
    if (arnQualifier) name = arnQualifier[1] ?? name;
    else if (!name.startsWith('arn:') && name.includes(':')) name = name.split(':')[0] ?? name;
    const requested = arnQualifier?.[2] ?? qualifier ?? '$LATEST';
    const fn = findFunction(name);
    const arn = name.startsWith('arn:') ? name : `${arnPrefix}${name}`;
    if (!fn || requested !== '$LATEST')
      return error(
        404,
        'ResourceNotFoundException',
        `Function not found: ${arn}${requested === '$LATEST' ? '' : `:${requested}`}`,
      );
    if (request.accessKeyId !== ADMIN_ACCESS_KEY_ID)
      return error(
        403,
        'AccessDeniedException',
        `User: ${request.accessKeyId} is not authorized to perform: lambda:InvokeFunction on resource: ${fn.options.arn} because no identity-based policy allows the lambda:InvokeFunction action`,
      );
    let event: unknown = {};
    if (request.body !== '') {
      try {
        event = JSON.parse(request.body);
      } catch {
        return error(
          400,
          'InvalidRequestContentException',
          'Could not parse request body into json: Could not parse payload into json',
        );
      }
    }
    const type = String(request.headers['x-amz-invocation-type'] ?? 'RequestResponse');
    if (type === 'DryRun') return { status: 204, body: '' };
    if (type === 'Event') {
      fn.invokeAsync(event);
      return { status: 202, body: '' };
    }
    if (type !== 'RequestResponse')
      return error(
        400,
        'InvalidParameterValueException',
        `1 validation error detected: Value '${type}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]`,
      );
    const record = await fn.invoke(event);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-amz-executed-version': '$LATEST',
    };
    if (request.headers['x-amz-log-type'] === 'Tail')
      headers['x-amz-log-result'] = Buffer.from(record.logs.join('').slice(-4096)).toString(
        'base64',
      );
    if (record.error) {
      headers['x-amz-function-error'] = 'Unhandled';
      return { status: 200, headers, body: JSON.stringify(record.error) };
    }
    return { status: 200, headers, body: JSON.stringify(record.result ?? null) };
  };
}
