/** Object-level operations: GetObject, HeadObject, PutObject, CopyObject, DeleteObject (multipart: ./multipart.ts). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ByteRange, ObjectInfo } from '@pgstate/core';
import { isPgStateError } from '@pgstate/core';
import { readBody } from '../body.js';
import { checksum } from '../checksums.js';
import type { GatewayContext } from '../context.js';
import { S3Error, s3Errors } from '../errors.js';
import {
  checksumHeaders,
  conditionalStatus,
  continueIfExpected,
  headerText,
  objectHeaders,
  putConditions,
  quoted,
  send,
  sendAcl,
  sendXml,
  unquote,
  withCondition,
} from '../responses.js';
import { type Route, refuseUnsupported } from '../routing.js';
import type { AuthResult } from '../sigv4.js';
import { abortUpload, completeUpload, createUpload, listParts, uploadPart } from './multipart.js';

/** Query parameters of GetObject that set a response header. */
const RESPONSE_OVERRIDES = [
  ['response-content-type', 'Content-Type'],
  ['response-content-disposition', 'Content-Disposition'],
  ['response-cache-control', 'Cache-Control'],
  ['response-content-encoding', 'Content-Encoding'],
  ['response-content-language', 'Content-Language'],
  ['response-expires', 'Expires'],
] as const;
/** What Node accepts in a header value (no CR, LF or other control characters). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * No object is larger than a bytea (under 1 GiB), so range positions past that are cut to it: what a client asks
 * (`bytes=0-2147483648`) means the same, and no handler sees a number its SQL cannot hold (int4).
 */
const MAX_POSITION = 2 ** 30;

/** Parses a single-range `Range` header. Returns undefined for headers S3 would ignore. */
function parseRange(value: string | undefined): { start?: number; end?: number; suffix?: number } | undefined {
  if (!value) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') return { suffix: Math.min(Number(m[2]), MAX_POSITION) };
  const start = Number(m[1]);
  const end = m[2] === '' ? undefined : Number(m[2]);
  if (end !== undefined && end < start) return undefined;
  return { start: Math.min(start, MAX_POSITION), end: end === undefined ? undefined : Math.min(end, MAX_POSITION) };
}

export async function objectRequest(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  r: Route,
  auth: AuthResult,
  bucket: string,
  key: string,
) {
  ctx.validateKey(key);
  const has = (name: string) => r.query.has(name);
  if (has('acl') && r.method === 'GET') {
    if (!(await ctx.handlerFor(bucket).headObject(key))) throw s3Errors.noSuchKey(key);
    return sendAcl(res);
  }
  refuseUnsupported(r, 'object');
  // Buckets here are unversioned: S3 then knows only the version id "null" and calls any other invalid.
  const versionId = r.query.get('versionId');
  if (versionId !== undefined && versionId !== 'null') {
    throw new S3Error(400, 'InvalidArgument', 'Invalid version id specified', {
      ArgumentName: 'versionId',
      ArgumentValue: versionId,
    });
  }
  switch (r.method) {
    case 'GET':
      if (has('uploadId')) return listParts(ctx, res, r, bucket, key);
      return getObject(ctx, req, res, r, bucket, key, false);
    case 'HEAD':
      return getObject(ctx, req, res, r, bucket, key, true);
    case 'PUT': {
      if (has('uploadId') || has('partNumber')) return uploadPart(ctx, req, res, r, auth, bucket, key);
      const copySource = req.headers['x-amz-copy-source'];
      if (typeof copySource === 'string') return copyObject(ctx, req, res, auth, bucket, key, copySource);
      return putObject(ctx, req, res, auth, bucket, key);
    }
    case 'DELETE':
      if (has('uploadId')) return abortUpload(ctx, res, r, bucket, key);
      await ctx.handlerFor(bucket).deleteObject(key);
      return send(res, 204);
    case 'POST':
      if (has('uploads')) return createUpload(ctx, req, res, bucket, key);
      if (has('uploadId')) return completeUpload(ctx, req, res, r, auth, bucket, key);
      throw s3Errors.methodNotAllowed();
    default:
      throw s3Errors.methodNotAllowed();
  }
}

async function getObject(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  r: Route,
  bucket: string,
  key: string,
  head: boolean,
) {
  const handler = ctx.handlerFor(bucket);
  const range = parseRange(req.headers.range);
  // Checked before any work: a CR/LF here would be header injection (Node refuses to send it).
  for (const [param] of RESPONSE_OVERRIDES) {
    const value = r.query.get(param);
    if (value !== undefined && !HEADER_VALUE.test(value)) {
      throw s3Errors.invalidArgument(`${param} contains characters not allowed in an HTTP header.`);
    }
  }
  if (head) {
    const info = await handler.headObject(key);
    if (!info) throw s3Errors.noSuchKey(key);
    const status = conditionalStatus(req, info);
    if (status) return send(res, status, undefined, objectHeaders(info));
    const headers: Record<string, string> = { ...objectHeaders(info), 'Content-Type': 'application/octet-stream' };
    if (range) {
      const start = range.suffix !== undefined ? Math.max(0, info.size - range.suffix) : range.start!;
      if (start >= info.size) throw s3Errors.invalidRange(info.size);
      const end = Math.min(range.end ?? info.size - 1, info.size - 1);
      headers['Content-Range'] = `bytes ${start}-${end}/${info.size}`;
      res.statusCode = 206;
      res.setHeader('Content-Length', String(end - start + 1));
    } else {
      res.statusCode = 200;
      res.setHeader('Content-Length', String(info.size));
    }
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.end();
    return;
  }
  // Suffix ranges need the size first; read the whole object (one snapshot) and cut it here.
  const handlerRange: ByteRange | undefined =
    range && range.suffix === undefined
      ? { start: range.start!, ...(range.end !== undefined ? { end: range.end } : {}) }
      : undefined;
  const found = await handler.getObject(key, handlerRange).catch(async (error: unknown) => {
    // Handlers refuse a range that starts past the end; S3 answers that with 416 and the object's size.
    if (handlerRange && isPgStateError(error, 'INVALID_INPUT')) {
      const info = await handler.headObject(key);
      if (info && handlerRange.start >= info.size) throw s3Errors.invalidRange(info.size);
    }
    throw error;
  });
  if (!found) throw s3Errors.noSuchKey(key);
  const { info } = found;
  const status = conditionalStatus(req, info);
  if (status) return send(res, status, undefined, objectHeaders(info));
  const headers: Record<string, string> = { ...objectHeaders(info), 'Content-Type': 'application/octet-stream' };
  for (const [param, name] of RESPONSE_OVERRIDES) {
    const value = r.query.get(param);
    if (value !== undefined) headers[name] = value;
  }
  let body = Buffer.from(found.body.buffer, found.body.byteOffset, found.body.byteLength);
  if (range) {
    let start: number;
    if (range.suffix !== undefined) {
      start = Math.max(0, info.size - range.suffix);
      if (range.suffix === 0 || info.size === 0) throw s3Errors.invalidRange(info.size);
      body = body.subarray(start);
    } else {
      start = range.start!;
      if (start >= info.size) throw s3Errors.invalidRange(info.size);
      if (handlerRange === undefined) body = body.subarray(start);
      // A handler that ignored the range returns the whole object: cut it here.
      else if (body.length === info.size && start > 0)
        body = body.subarray(start, range.end === undefined ? undefined : range.end + 1);
      else if (range.end !== undefined && body.length > range.end - start + 1)
        body = body.subarray(0, range.end - start + 1);
    }
    headers['Content-Range'] = `bytes ${start}-${start + body.length - 1}/${info.size}`;
    return send(res, 206, body, headers);
  }
  // Full-object checksum so SDKs that validate responses can (and stop warning that they could not).
  headers['x-amz-checksum-crc32'] = checksum('crc32', body);
  headers['x-amz-checksum-type'] = 'FULL_OBJECT';
  send(res, 200, body, headers);
}

async function putObject(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  auth: AuthResult,
  bucket: string,
  key: string,
) {
  const handler = ctx.handlerFor(bucket);
  const conditions = putConditions(req);
  const { body, checksums } = await readBody(req, auth, {
    maxBytes: ctx.limits.maxObjectBytes,
    onStart: () => continueIfExpected(req, res),
    reserve: ctx.reserveFor(req),
  });
  const info = await withCondition(req, () => handler.putObject(key, body, conditions));
  send(res, 200, undefined, { ETag: quoted(info.etag), ...checksumHeaders(checksums) });
}

function parseCopySource(value: string): { bucket: string; key: string } {
  let source = value;
  const q = source.indexOf('?');
  if (q !== -1) {
    const versionId = new URLSearchParams(source.slice(q + 1)).get('versionId');
    if (versionId && versionId !== 'null') throw s3Errors.notImplemented('object versions');
    source = source.slice(0, q);
  }
  // Both encodings (whole value escaped, "bucket%2Fkey", or each segment escaped) decode to "bucket/key".
  let decoded: string;
  try {
    decoded = decodeURIComponent(source);
  } catch {
    throw s3Errors.invalidArgument('Invalid copy source encoding.');
  }
  if (decoded.startsWith('/')) decoded = decoded.slice(1);
  const slash = decoded.indexOf('/');
  if (slash <= 0 || slash === decoded.length - 1) {
    throw s3Errors.invalidArgument('Copy Source must mention the source bucket and key: sourcebucket/sourcekey');
  }
  return { bucket: decoded.slice(0, slash), key: decoded.slice(slash + 1) };
}

async function copyObject(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  auth: AuthResult,
  bucket: string,
  key: string,
  sourceHeader: string,
) {
  const target = ctx.handlerFor(bucket);
  const source = parseCopySource(sourceHeader);
  ctx.validateKey(source.key);
  ctx.authorize(auth, source.bucket, 'read');
  const sourceHandler = ctx.handlerFor(source.bucket);
  req.resume();
  const ifMatch = headerText(req, 'x-amz-copy-source-if-match');
  const ifNoneMatch = headerText(req, 'x-amz-copy-source-if-none-match');
  if (ifMatch !== undefined || ifNoneMatch !== undefined) {
    const info = await sourceHandler.headObject(source.key);
    if (!info) throw s3Errors.noSuchKey(source.key);
    if (ifMatch !== undefined && unquote(ifMatch) !== info.etag)
      throw s3Errors.preconditionFailed('x-amz-copy-source-If-Match');
    if (ifNoneMatch !== undefined && unquote(ifNoneMatch) === info.etag) {
      throw s3Errors.preconditionFailed('x-amz-copy-source-If-None-Match');
    }
  }
  let info: ObjectInfo | null;
  if (sourceHandler === target) {
    info = await target.copyObject(source.key, key);
  } else {
    const found = await sourceHandler.getObject(source.key);
    info = found ? await target.putObject(key, found.body) : null;
  }
  if (!info) throw s3Errors.noSuchKey(source.key);
  sendXml(res, 'CopyObjectResult', { LastModified: info.lastModified.toISOString(), ETag: quoted(info.etag) });
}
