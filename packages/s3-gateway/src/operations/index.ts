/** Which operation serves a routed, authenticated request: service, bucket or object level. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayContext } from '../context.js';
import { s3Errors } from '../errors.js';
import type { Route } from '../routing.js';
import type { AuthResult } from '../sigv4.js';
import { bucketRequest } from './bucket.js';
import { objectRequest } from './object.js';
import { listBuckets } from './service.js';

export async function dispatch(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  r: Route,
  auth: AuthResult,
): Promise<void> {
  if (!r.bucket) {
    if (r.method !== 'GET') throw s3Errors.methodNotAllowed();
    await listBuckets(ctx, res, auth);
  } else if (r.key === undefined) {
    ctx.authorize(auth, r.bucket, r.method === 'GET' || r.method === 'HEAD' ? 'read' : 'write');
    await bucketRequest(ctx, req, res, r, auth, r.bucket);
  } else {
    ctx.authorize(auth, r.bucket, r.method === 'GET' || r.method === 'HEAD' ? 'read' : 'write');
    await objectRequest(ctx, req, res, r, auth, r.bucket, r.key);
  }
}
