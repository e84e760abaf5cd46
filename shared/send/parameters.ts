import { paginateDescribeParameters, type SSMClient } from '@aws-sdk/client-ssm';

/**
 * The current version of a parameter, from its metadata: DescribeParameters returns no value,
 * so the functions learn versions without ssm:GetParameter* on the secrets. undefined if the
 * parameter does not exist (deleted since the event). Throws the SDK error otherwise.
 */
export async function currentVersion(ssm: SSMClient, name: string): Promise<number | undefined> {
  // DescribeParameters filters after it pages, so a page can be empty yet carry a NextToken;
  // follow the tokens until the name turns up.
  const pages = paginateDescribeParameters(
    { client: ssm },
    { ParameterFilters: [{ Key: 'Name', Option: 'Equals', Values: [name] }] },
  );
  for await (const page of pages) {
    const found = page.Parameters?.find((parameter) => parameter.Name === name);
    if (found !== undefined) return found.Version;
  }
  return undefined;
}
