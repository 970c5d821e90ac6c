/** Bucket-level operations: HeadBucket, GetBucketLocation/Versioning/Acl, ListObjects(V2), DeleteObjects, CreateBucket. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayContext } from '../context.js';
import { S3Error, s3Errors, toS3Error } from '../errors.js';
import { continueIfExpected, parseMaxKeys, quoted, readXml, send, sendAcl, sendXml } from '../responses.js';
import { type Route, refuseUnsupported } from '../routing.js';
import type { AuthResult } from '../sigv4.js';
import { s3Xml, text } from '../xml.js';
import { listUploads } from './multipart.js';

/** S3's `encoding-type=url` form: keys percent-encoded, "/" kept readable. */
function urlEncodeKey(value: string): string {
  return encodeURIComponent(value).replace(/%2F/g, '/');
}

function encodeToken(startAfter: string): string {
  return Buffer.from(`v1:${startAfter}`, 'utf8').toString('base64url');
}

function decodeToken(token: string): string {
  const decoded = Buffer.from(token, 'base64url').toString('utf8');
  if (!decoded.startsWith('v1:')) throw s3Errors.invalidArgument('The continuation token provided is incorrect.');
  return decoded.slice(3);
}

export async function bucketRequest(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  r: Route,
  auth: AuthResult,
  bucket: string,
) {
  const sub = (name: string) => r.query.has(name);
  switch (r.method) {
    case 'HEAD':
      ctx.handlerFor(bucket);
      return send(res, 200, undefined, { 'x-amz-bucket-region': 'us-east-1' });
    case 'GET':
      ctx.handlerFor(bucket);
      if (sub('location')) return send(res, 200, s3Xml('LocationConstraint', {}, true));
      if (sub('versioning')) return sendXml(res, 'VersioningConfiguration', {});
      if (sub('uploads')) return listUploads(ctx, res, r, bucket);
      if (sub('acl')) return sendAcl(res);
      refuseUnsupported(r, 'bucket');
      return listObjects(ctx, req, res, r, bucket);
    case 'PUT':
      // CreateBucket on a configured bucket is what S3 answers in us-east-1 for a bucket you own: success.
      if ([...r.query.keys()].length > 0) throw s3Errors.notImplemented('bucket configuration');
      if (!ctx.buckets.has(bucket))
        throw s3Errors.accessDenied('Buckets are configured on the gateway, not created by clients.');
      continueIfExpected(req, res);
      req.resume();
      return send(res, 200, undefined, { Location: `/${bucket}` });
    case 'POST':
      if (sub('delete')) return deleteObjects(ctx, req, res, auth, bucket);
      throw s3Errors.methodNotAllowed();
    case 'DELETE':
      ctx.handlerFor(bucket);
      throw new S3Error(
        409,
        'BucketNotEmpty',
        'Buckets are configured on the gateway and cannot be deleted by clients.',
      );
    default:
      throw s3Errors.methodNotAllowed();
  }
}

async function listObjects(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  r: Route,
  bucket: string,
): Promise<void> {
  const handler = ctx.handlerFor(bucket);
  const v2 = r.query.get('list-type') === '2';
  const prefix = r.query.get('prefix') ?? '';
  const delimiter = r.query.get('delimiter') || undefined;
  const maxKeys = parseMaxKeys(r.query.get('max-keys'), 'max-keys');
  const encodingType = r.query.get('encoding-type');
  if (encodingType !== undefined && encodingType !== 'url')
    throw s3Errors.invalidArgument('Invalid Encoding Method specified in Request');
  const enc = (value: string | undefined) =>
    value === undefined ? undefined : encodingType === 'url' ? urlEncodeKey(value) : value;
  const continuationToken = v2 ? r.query.get('continuation-token') : undefined;
  const startAfter = v2 ? r.query.get('start-after') : r.query.get('marker');
  const from = continuationToken !== undefined ? decodeToken(continuationToken) : startAfter || undefined;
  const result =
    maxKeys === 0
      ? { objects: [], commonPrefixes: [], isTruncated: false, nextStartAfter: undefined }
      : await handler.listObjects({ prefix: prefix || undefined, delimiter, startAfter: from, maxKeys });
  void req;
  const contents = result.objects.map((o) => ({
    Key: enc(o.key),
    LastModified: o.lastModified.toISOString(),
    ETag: quoted(o.etag),
    Size: o.size,
    StorageClass: 'STANDARD',
  }));
  const commonPrefixes = result.commonPrefixes.map((p) => ({ Prefix: enc(p) }));
  const next = result.isTruncated ? result.nextStartAfter : undefined;
  if (v2) {
    sendXml(res, 'ListBucketResult', {
      Name: bucket,
      Prefix: enc(prefix),
      Delimiter: enc(delimiter),
      MaxKeys: maxKeys,
      EncodingType: encodingType,
      KeyCount: contents.length + commonPrefixes.length,
      IsTruncated: result.isTruncated,
      ContinuationToken: continuationToken,
      NextContinuationToken: next !== undefined ? encodeToken(next) : undefined,
      StartAfter: enc(r.query.get('start-after')),
      Contents: contents,
      CommonPrefixes: commonPrefixes,
    });
  } else {
    sendXml(res, 'ListBucketResult', {
      Name: bucket,
      Prefix: enc(prefix),
      Marker: enc(r.query.get('marker') ?? ''),
      NextMarker: enc(next),
      Delimiter: enc(delimiter),
      MaxKeys: maxKeys,
      EncodingType: encodingType,
      IsTruncated: result.isTruncated,
      Contents: contents,
      CommonPrefixes: commonPrefixes,
    });
  }
}

async function deleteObjects(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  auth: AuthResult,
  bucket: string,
): Promise<void> {
  const handler = ctx.handlerFor(bucket);
  const doc = await readXml(ctx, req, auth, res, 'Delete');
  const objects = (doc.Object as Array<Record<string, unknown>> | undefined) ?? [];
  if (objects.length === 0 || objects.length > 1000) throw s3Errors.malformedXml();
  const keys = objects.map((o) => text(o.Key));
  if (keys.some((k) => k === undefined || k === '')) throw s3Errors.malformedXml();
  const quiet = text(doc.Quiet)?.trim() === 'true';
  const deleted: Array<{ Key: string }> = [];
  const errors: Array<{ Key: string; Code: string; Message: string }> = [];
  for (const key of keys as string[]) {
    try {
      ctx.validateKey(key);
      await handler.deleteObject(key);
      if (!quiet) deleted.push({ Key: key });
    } catch (error) {
      const e = toS3Error(error, key);
      if (e.status >= 500) throw e;
      errors.push({ Key: key, Code: e.code, Message: e.message });
    }
  }
  sendXml(res, 'DeleteResult', { Deleted: deleted, Error: errors });
}
