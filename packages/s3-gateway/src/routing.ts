/**
 * Routing: what a request addresses (bucket, key, query; path-style or virtual-hosted), which S3 operation that is
 * (for logs and metrics), which sub-resources this endpoint refuses, and the key rules. Pure functions of the request
 * line and headers: nothing here touches a socket or the database.
 */
import type { IncomingMessage } from 'node:http';
import { S3Error, s3Errors } from './errors.js';

/** What routing reads of a request. */
export type RequestLine = Pick<IncomingMessage, 'method' | 'url' | 'headers'>;

export interface Route {
  method: string;
  bucket: string | undefined;
  key: string | undefined;
  query: Map<string, string>;
  queryList: Array<[string, string]>;
  rawPath: string;
}

/** Unauthenticated probe endpoints for load balancers and orchestrators (bucket names they would shadow are refused). */
export const PROBE_PATHS = new Set(['/health', '/ready']);

export const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * S3 sub-resources this endpoint does not implement, in the order they are checked. On object paths every one is
 * refused (S3 refuses bucket sub-resources there too): a PUT naming one must never store its body as the object. On
 * bucket GETs only those marked `bucket` are (the supported `location`, `versioning`, `uploads` and `acl` are answered
 * before); any other query lists the bucket.
 */
const UNSUPPORTED_SUBRESOURCES: ReadonlyArray<readonly [name: string, bucket: boolean]> = [
  ['acl', false],
  ['tagging', true],
  ['retention', false],
  ['legal-hold', false],
  ['torrent', false],
  ['restore', false],
  ['select', false],
  ['select-type', false],
  ['attributes', false],
  ['renameObject', false],
  ['policy', true],
  ['policyStatus', false],
  ['versioning', false],
  ['versions', true],
  ['cors', true],
  ['lifecycle', true],
  ['website', true],
  ['logging', true],
  ['notification', true],
  ['replication', true],
  ['encryption', true],
  ['object-lock', true],
  ['accelerate', true],
  ['requestPayment', true],
  ['ownershipControls', true],
  ['publicAccessBlock', true],
  ['analytics', true],
  ['metrics', true],
  ['inventory', true],
  ['intelligent-tiering', true],
  ['location', false],
  ['session', false],
];

/** Throws 501 NotImplemented when the request names a sub-resource this endpoint refuses on `on`. */
export function refuseUnsupported(r: Route, on: 'bucket' | 'object'): void {
  for (const [name, bucket] of UNSUPPORTED_SUBRESOURCES) {
    if ((on === 'object' || bucket) && r.query.has(name)) throw s3Errors.notImplemented(`${on} ?${name}`);
  }
}

/** S3's name for what a request does (metrics label, log field). */
export function operationOf(r: Route, copySource: boolean): string {
  const q = (name: string) => r.query.has(name);
  if (!r.bucket) return 'ListBuckets';
  if (r.key === undefined) {
    switch (r.method) {
      case 'HEAD':
        return 'HeadBucket';
      case 'GET':
        if (q('location')) return 'GetBucketLocation';
        if (q('versioning')) return 'GetBucketVersioning';
        if (q('uploads')) return 'ListMultipartUploads';
        if (q('acl')) return 'GetBucketAcl';
        return r.query.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects';
      case 'PUT':
        return 'CreateBucket';
      case 'POST':
        return q('delete') ? 'DeleteObjects' : 'Other';
      case 'DELETE':
        return 'DeleteBucket';
      default:
        return 'Other';
    }
  }
  switch (r.method) {
    case 'GET':
      return q('uploadId') ? 'ListParts' : q('acl') ? 'GetObjectAcl' : 'GetObject';
    case 'HEAD':
      return 'HeadObject';
    case 'PUT':
      return q('uploadId') || q('partNumber') ? 'UploadPart' : copySource ? 'CopyObject' : 'PutObject';
    case 'DELETE':
      return q('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
    case 'POST':
      return q('uploads') ? 'CreateMultipartUpload' : q('uploadId') ? 'CompleteMultipartUpload' : 'Other';
    default:
      return 'Other';
  }
}

export function decodeQuery(raw: string): Array<[string, string]> {
  if (!raw) return [];
  return raw
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      const value = eq === -1 ? '' : pair.slice(eq + 1);
      return [decodeURIComponent(name.replace(/\+/g, ' ')), decodeURIComponent(value.replace(/\+/g, ' '))];
    });
}

/** Splits a request into bucket, key and query. Virtual-hosted addressing only for names `isBucket` accepts. */
export function route(req: RequestLine, isBucket: (name: string) => boolean): Route {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  if (!rawPath.startsWith('/')) throw new S3Error(400, 'InvalidURI', 'Could not parse the specified URI.');
  let queryList: Array<[string, string]>;
  let segments: string[];
  try {
    queryList = decodeQuery(q === -1 ? '' : url.slice(q + 1));
    segments = rawPath.slice(1).split('/');
    segments = segments.map((s) => decodeURIComponent(s));
  } catch {
    throw new S3Error(400, 'InvalidURI', 'Could not parse the specified URI.');
  }
  const hostName = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
  const firstLabel = hostName.split('.')[0] ?? '';
  // Virtual-hosted style: `bucket.some.host`. Only for configured bucket names, never for IP literals.
  const virtual = hostName.includes('.') && !/^[\d.]+$/.test(hostName) && isBucket(firstLabel);
  let bucket: string | undefined;
  let key: string | undefined;
  if (virtual) {
    bucket = firstLabel;
    key = segments.join('/');
  } else {
    bucket = segments[0] || undefined;
    key = segments.length > 1 ? segments.slice(1).join('/') : undefined;
  }
  if (key === '') key = undefined;
  return { method: req.method ?? 'GET', bucket, key, query: new Map(queryList), queryList, rawPath };
}

export function validateKey(key: string, maxKeyBytes: number): void {
  if (Buffer.byteLength(key, 'utf8') > maxKeyBytes) throw s3Errors.keyTooLong(maxKeyBytes);
  if (/[\u0000-\u001f\u007f]/.test(key))
    throw s3Errors.invalidArgument('Object keys may not contain control characters.');
  if (key.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw s3Errors.invalidArgument('Object keys may not contain "." or ".." path segments.');
  }
}
