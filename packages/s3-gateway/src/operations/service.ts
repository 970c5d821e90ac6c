/** Service-level operations: ListBuckets. */
import type { ServerResponse } from 'node:http';
import type { GatewayContext } from '../context.js';
import { sendXml } from '../responses.js';
import type { AuthResult } from '../sigv4.js';

export async function listBuckets(ctx: GatewayContext, res: ServerResponse, auth: AuthResult): Promise<void> {
  // A scoped key sees the buckets it may read.
  const visible = [...ctx.buckets.keys()].filter((name) => ctx.may(auth, name, 'read')).sort();
  sendXml(res, 'ListAllMyBucketsResult', {
    Owner: { ID: 'pgstate', DisplayName: 'pgstate' },
    Buckets: { Bucket: visible.map((Name) => ({ Name, CreationDate: ctx.startedAt.toISOString() })) },
  });
}
