import * as z from '../zod.ts';

/**
 * An EventBridge event of one source and detail-type, the envelope fields as AWS documents them
 * (https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html).
 * Our own rather than Powertools' EventBridgeSchema: that module imports zod as `{ z }`, which
 * defeats tree-shaking and adds ~370 KB of zod (all its locales) to every bundle.
 */
export function eventBridgeEvent<DetailType extends string, Detail extends z.ZodMiniType>(
  source: string,
  detailType: DetailType,
  detail: Detail,
) {
  return z.object({
    version: z.string(),
    id: z.string().check(z.minLength(1)),
    source: z.literal(source),
    account: z.string(),
    time: z.iso.datetime(),
    region: z.string(),
    resources: z.array(z.string()),
    'detail-type': z.literal(detailType),
    detail,
    'replay-name': z.optional(z.string()),
  });
}
