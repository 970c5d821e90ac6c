/**
 * Drives the gateway's operations without an HTTP server: a request object carrying headers and a body, a response
 * object whose status, headers and body are read back. What the server adds (SigV4, request ids, logs, the body
 * budget) is left out on purpose; tests of those go through the real server.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { GatewayContext } from '../../src/context.js';
import { toS3Error } from '../../src/errors.js';
import { dispatch } from '../../src/operations/index.js';
import { route } from '../../src/routing.js';
import { UNSIGNED_PAYLOAD } from '../../src/sigv4.js';

export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  text: string;
}

export async function drive(
  ctx: GatewayContext,
  method: string,
  url: string,
  options: { headers?: Record<string, string>; body?: string | Buffer; accessKeyId?: string } = {},
): Promise<Answer> {
  const req = new IncomingMessage(new Socket());
  req.method = method;
  req.url = url;
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  req.headers = {
    host: '127.0.0.1',
    ...(body ? { 'content-length': String(body.length) } : {}),
    ...options.headers,
  };
  if (body) req.push(body);
  req.push(null);
  const res = new ServerResponse(req);
  let sent = Buffer.alloc(0);
  const end = res.end.bind(res) as (chunk?: unknown) => ServerResponse;
  res.end = ((chunk?: unknown) => {
    if (chunk) sent = Buffer.from(chunk as Buffer);
    return end();
  }) as typeof res.end;
  try {
    const r = route(req, (name) => ctx.buckets.has(name));
    // Signed (as the server would have verified) by the given key, else by the first configured one.
    const accessKeyId = options.accessKeyId ?? [...ctx.credentials.keys()][0];
    await dispatch(ctx, req, res, r, { accessKeyId, payloadHash: UNSIGNED_PAYLOAD });
  } catch (error) {
    // As the server answers errors: the S3 status and code (the XML document is the server's business).
    const e = toS3Error(error);
    return { status: e.status, headers: {}, body: Buffer.alloc(0), text: `${e.code}: ${e.message}` };
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.getHeaders())) headers[k] = String(v);
  return { status: res.statusCode, headers, body: sent, text: sent.toString('utf8') };
}
