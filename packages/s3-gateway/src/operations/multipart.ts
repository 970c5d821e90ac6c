/**
 * Multipart operations: CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts,
 * ListMultipartUploads. Parts wait in PostgreSQL (./uploads.ts), so any gateway on the database may continue an upload.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody } from '../body.js';
import type { GatewayContext } from '../context.js';
import { s3Errors } from '../errors.js';
import {
  checksumHeaders,
  continueIfExpected,
  parseMaxKeys,
  putConditions,
  quoted,
  readXml,
  send,
  sendXml,
  unquote,
  withCondition,
} from '../responses.js';
import type { Route } from '../routing.js';
import type { AuthResult } from '../sigv4.js';
import { text } from '../xml.js';

export async function createUpload(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  bucket: string,
  key: string,
) {
  ctx.handlerFor(bucket);
  req.resume();
  const uploadId = randomBytes(24).toString('base64url');
  await ctx.requireStore().create(bucket, key, uploadId);
  sendXml(res, 'InitiateMultipartUploadResult', { Bucket: bucket, Key: key, UploadId: uploadId });
}

export async function uploadPart(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  r: Route,
  auth: AuthResult,
  bucket: string,
  key: string,
) {
  ctx.handlerFor(bucket);
  if (req.headers['x-amz-copy-source'] !== undefined) throw s3Errors.notImplemented('UploadPartCopy');
  const n = partNumber(ctx, r);
  const uploadId = r.query.get('uploadId') ?? '';
  const { body, checksums } = await readBody(req, auth, {
    maxBytes: ctx.limits.maxObjectBytes,
    onStart: () => continueIfExpected(req, res),
    reserve: ctx.reserveFor(req),
  });
  const etag = await ctx.requireStore().putPart(bucket, key, uploadId, n, body);
  send(res, 200, undefined, { ETag: quoted(etag), ...checksumHeaders(checksums) });
}

export async function completeUpload(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  r: Route,
  auth: AuthResult,
  bucket: string,
  key: string,
) {
  const handler = ctx.handlerFor(bucket);
  const uploadId = r.query.get('uploadId') ?? '';
  const conditions = putConditions(req);
  const doc = await readXml(ctx, req, auth, res, 'CompleteMultipartUpload');
  const parts = ((doc.Part as Array<Record<string, unknown>> | undefined) ?? []).map((p) => {
    const number = text(p.PartNumber)?.trim() ?? '';
    const etag = text(p.ETag);
    if (!/^\d{1,5}$/.test(number) || etag === undefined) throw s3Errors.malformedXml();
    return { partNumber: Number(number), etag: unquote(etag) };
  });
  if (parts.length > ctx.limits.maxParts)
    throw s3Errors.invalidArgument(`At most ${ctx.limits.maxParts} parts are allowed.`);
  const uploads = ctx.requireStore();
  const body = await uploads.assemble(bucket, key, uploadId, parts, {
    maxBytes: ctx.limits.maxObjectBytes,
    minPartBytes: ctx.limits.minPartBytes,
    reserve: ctx.reserveFor(req),
  });
  const info = await withCondition(req, () => handler.putObject(key, body, conditions));
  // The object is written; a failure to clean up only leaves parts that expire later.
  await uploads.remove(bucket, key, uploadId).catch(() => {});
  sendXml(res, 'CompleteMultipartUploadResult', {
    Location: `/${bucket}/${key}`,
    Bucket: bucket,
    Key: key,
    ETag: quoted(info.etag),
  });
}

export async function listParts(ctx: GatewayContext, res: ServerResponse, r: Route, bucket: string, key: string) {
  ctx.handlerFor(bucket);
  const uploadId = r.query.get('uploadId') ?? '';
  const marker = r.query.get('part-number-marker');
  const after = marker && /^\d{1,5}$/.test(marker) ? Number(marker) : 0;
  const maxParts = parseMaxKeys(r.query.get('max-parts'), 'max-parts');
  const { parts, truncated } = await ctx.requireStore().listParts(bucket, key, uploadId, after, maxParts);
  sendXml(res, 'ListPartsResult', {
    Bucket: bucket,
    Key: key,
    UploadId: uploadId,
    PartNumberMarker: after,
    NextPartNumberMarker: parts.length ? parts[parts.length - 1]!.partNumber : after,
    MaxParts: maxParts,
    IsTruncated: truncated,
    Part: parts.map((p) => ({
      PartNumber: p.partNumber,
      LastModified: p.lastModified.toISOString(),
      ETag: quoted(p.etag),
      Size: p.size,
    })),
    StorageClass: 'STANDARD',
  });
}

export async function listUploads(ctx: GatewayContext, res: ServerResponse, r: Route, bucket: string): Promise<void> {
  ctx.handlerFor(bucket);
  const prefix = r.query.get('prefix') ?? '';
  const maxUploads = parseMaxKeys(r.query.get('max-uploads'), 'max-uploads');
  const { uploads, truncated } = await ctx.requireStore().listUploads(bucket, prefix, maxUploads);
  sendXml(res, 'ListMultipartUploadsResult', {
    Bucket: bucket,
    Prefix: prefix,
    MaxUploads: maxUploads,
    IsTruncated: truncated,
    Upload: uploads.map((u) => ({
      Key: u.key,
      UploadId: u.uploadId,
      Initiated: u.initiated.toISOString(),
      StorageClass: 'STANDARD',
    })),
  });
}

function partNumber(ctx: GatewayContext, r: Route): number {
  const value = r.query.get('partNumber') ?? '';
  const n = /^\d{1,5}$/.test(value) ? Number(value) : 0;
  if (n < 1 || n > ctx.limits.maxParts) {
    throw s3Errors.invalidArgument(`Part number must be an integer between 1 and ${ctx.limits.maxParts}, inclusive`);
  }
  return n;
}

export async function abortUpload(ctx: GatewayContext, res: ServerResponse, r: Route, bucket: string, key: string) {
  ctx.handlerFor(bucket);
  const removed = await ctx.requireStore().remove(bucket, key, r.query.get('uploadId') ?? '');
  if (!removed) throw s3Errors.noSuchUpload(r.query.get('uploadId') ?? '');
  return send(res, 204);
}
