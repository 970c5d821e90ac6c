/**
 * HTTP and S3 response helpers shared by the operations: sending documents, ETags, conditional requests, checksums.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ObjectInfo, PutConditions } from '@pgstate/core';
import { PgStateError } from '@pgstate/core';
import { readBody } from './body.js';
import type { ChecksumAlgorithm } from './checksums.js';
import type { GatewayContext } from './context.js';
import { s3Errors } from './errors.js';
import type { AuthResult } from './sigv4.js';
import { parseS3Xml, s3Xml } from './xml.js';

export function headerText(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

export function quoted(etag: string): string {
  return `"${etag}"`;
}

export function unquote(etag: string): string {
  return etag
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
}

export function parseMaxKeys(value: string | undefined, name: string): number {
  if (value === undefined) return 1000;
  if (!/^\d{1,9}$/.test(value))
    throw s3Errors.invalidArgument(`Provided ${name} not an integer or within integer range`);
  return Math.min(Number(value), 1000);
}

export function send(
  res: ServerResponse,
  status: number,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): void {
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.statusCode = status;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  if (payload && typeof body === 'string') res.setHeader('Content-Type', 'application/xml');
  res.setHeader('Content-Length', String(payload?.length ?? 0));
  res.end(payload);
}

export function sendXml(res: ServerResponse, root: string, body: Record<string, unknown>, status = 200): void {
  send(res, status, s3Xml(root, body));
}

export function objectHeaders(info: ObjectInfo): Record<string, string> {
  return {
    ETag: quoted(info.etag),
    'Last-Modified': info.lastModified.toUTCString(),
    'Accept-Ranges': 'bytes',
  };
}

/** GET/HEAD conditionals; returns the status to answer instead, if any. */
export function conditionalStatus(req: IncomingMessage, info: ObjectInfo): number | undefined {
  const ifMatch = req.headers['if-match'];
  const ifNoneMatch = req.headers['if-none-match'];
  const modified = Math.floor(info.lastModified.getTime() / 1000) * 1000;
  if (ifMatch !== undefined && ifMatch.trim() !== '*' && !ifMatch.split(',').some((e) => unquote(e) === info.etag)) {
    return 412;
  }
  const ifUnmodified = req.headers['if-unmodified-since'];
  if (ifMatch === undefined && ifUnmodified && modified > Date.parse(ifUnmodified)) return 412;
  if (
    ifNoneMatch !== undefined &&
    (ifNoneMatch.trim() === '*' || ifNoneMatch.split(',').some((e) => unquote(e) === info.etag))
  ) {
    return 304;
  }
  const ifModified = req.headers['if-modified-since'];
  if (ifNoneMatch === undefined && ifModified && modified <= Date.parse(ifModified)) return 304;
  return undefined;
}

export function continueIfExpected(req: IncomingMessage, res: ServerResponse): void {
  if ((req.headers.expect ?? '').toLowerCase() === '100-continue') res.writeContinue();
}

export function checksumHeaders(checksums: Partial<Record<ChecksumAlgorithm, string>>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [alg, value] of Object.entries(checksums)) headers[`x-amz-checksum-${alg}`] = value;
  return headers;
}

export function putConditions(req: IncomingMessage): PutConditions | undefined {
  const ifNoneMatch = req.headers['if-none-match'];
  const ifMatch = req.headers['if-match'];
  if (ifNoneMatch === undefined && ifMatch === undefined) return undefined;
  const conditions: PutConditions = {};
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') throw s3Errors.notImplemented('If-None-Match other than "*" on writes');
    conditions.ifNoneMatch = '*';
  }
  if (ifMatch !== undefined) {
    if (ifMatch.trim() === '*') throw s3Errors.notImplemented('If-Match: * on writes');
    conditions.ifMatch = unquote(ifMatch);
  }
  return conditions;
}

export async function withCondition<T>(req: IncomingMessage, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof PgStateError && error.code === 'PRECONDITION_FAILED') {
      throw s3Errors.preconditionFailed(req.headers['if-none-match'] !== undefined ? 'If-None-Match' : 'If-Match');
    }
    throw error;
  }
}

/** Access is all-or-nothing per access key; clients that read ACLs (s3cmd) see the owner's full control. */
export function sendAcl(res: ServerResponse): void {
  sendXml(res, 'AccessControlPolicy', {
    Owner: { ID: 'pgstate', DisplayName: 'pgstate' },
    AccessControlList: {
      Grant: {
        Grantee: {
          '@_xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance',
          '@_xsi:type': 'CanonicalUser',
          ID: 'pgstate',
          DisplayName: 'pgstate',
        },
        Permission: 'FULL_CONTROL',
      },
    },
  });
}

export async function readXml(
  ctx: GatewayContext,
  req: IncomingMessage,
  auth: AuthResult,
  res: ServerResponse,
  root: string,
) {
  const { body } = await readBody(req, auth, {
    maxBytes: ctx.limits.maxXmlBytes,
    onStart: () => continueIfExpected(req, res),
    reserve: ctx.reserveFor(req),
  });
  return parseS3Xml(body.toString('utf8'), root);
}
