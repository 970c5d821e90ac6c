/**
 * An S3-compatible HTTP endpoint whose buckets are served by `BucketHandler`s (the adapters' view of their tables).
 * The gateway owns transport concerns only: addressing, SigV4, body framing and checksums, S3 XML, limits and
 * multipart bookkeeping. It keeps no state of its own in memory, so any number of gateways may serve one database.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { BucketHandler, ByteRange, ObjectInfo, PutConditions } from '@pgstate/core';
import { isPgStateError, PgStateError } from '@pgstate/core';
import type pg from 'pg';
import { readBody } from './body.js';
import { BodyBudget } from './body-budget.js';
import { type ChecksumAlgorithm, checksum } from './checksums.js';
import { S3Error, s3Errors, toS3Error } from './errors.js';
import { jsonStderrLogger, type Logger, silentLogger } from './logger.js';
import { type AuthResult, type BucketAccess, type Credential, verifyRequest } from './sigv4.js';
import { MultipartStore } from './uploads.js';
import { parseS3Xml, s3Xml, text } from './xml.js';

export interface GatewayLimits {
  /** Largest object (single PUT or completed multipart upload). Default 256 MiB (a bytea is at most 1 GiB). */
  maxObjectBytes: number;
  /** Longest key in UTF-8 bytes (S3: 1024). */
  maxKeyBytes: number;
  /** Most parts in one multipart upload (S3: 10000). */
  maxParts: number;
  /** Smallest part other than the last (S3: 5 MiB). */
  minPartBytes: number;
  /** Largest total request header size. Default 16 KiB. */
  maxHeaderBytes: number;
  /** Largest XML request document (DeleteObjects, CompleteMultipartUpload). Default 2 MiB. */
  maxXmlBytes: number;
  /** Time to receive all headers. Default 20 s. */
  headersTimeoutMs: number;
  /** Time to receive a whole request, body included. Default 15 min. */
  requestTimeoutMs: number;
  /** A socket with no traffic for this long is closed. Default 60 s. */
  idleTimeoutMs: number;
  /** Allowed clock difference for signed requests (S3: 15 min). */
  maxClockSkewMs: number;
  /** How long `close()` waits for in-flight requests before cutting connections. Default 30 s. */
  shutdownGraceMs: number;
  /**
   * Request-body bytes all requests together may hold in memory (one body larger than this still gets through
   * alone). Default 64 MiB.
   */
  maxBodyBytesInFlight: number;
  /** How long a request waits for room in that budget before it is answered `503 SlowDown`. Default 30 s. */
  bodyWaitMs: number;
}

export const DEFAULT_LIMITS: GatewayLimits = {
  maxObjectBytes: 256 * 1024 * 1024,
  maxKeyBytes: 1024,
  maxParts: 10_000,
  minPartBytes: 5 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxXmlBytes: 2 * 1024 * 1024,
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 15 * 60_000,
  idleTimeoutMs: 60_000,
  maxClockSkewMs: 15 * 60_000,
  shutdownGraceMs: 30_000,
  maxBodyBytesInFlight: 64 * 1024 * 1024,
  bodyWaitMs: 30_000,
};

export interface S3GatewayOptions {
  /** Bucket name -> the handler that serves it. */
  buckets: Record<string, BucketHandler>;
  /**
   * Access keys whose SigV4 signatures are accepted. Empty means open mode: signatures are not checked, which is
   * only allowed when listening on a loopback address.
   */
  credentials: Credential[];
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** PEM certificate and key: serve HTTPS instead of HTTP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Where multipart uploads keep their parts until completed. Without it, multipart requests answer NotImplemented. */
  uploads?: { pool: pg.Pool; schema?: string; expireAfterMs?: number };
  limits?: Partial<GatewayLimits>;
  /** Structured log sink; default JSON lines on stderr. `false` for silence. */
  logger?: Logger | false;
  /** Clock, for tests of expired signatures. */
  now?: () => Date;
  /**
   * What `GET /ready` checks (e.g. PostgreSQL reachable, migrations current); default: always ready. `/health` and
   * `/ready` answer without authentication and reveal nothing beyond ok / not ok.
   */
  readiness?: () => Promise<boolean>;
}

/** What a gateway holds right now (for metrics). */
export interface GatewayStats {
  inFlightRequests: number;
  bodyBytesHeld: number;
  bodyBytesBudget: number;
  requestsWaitingForBudget: number;
}

export interface S3Gateway {
  /** `http://127.0.0.1:PORT` (or https). */
  readonly url: string;
  readonly port: number;
  stats(): GatewayStats;
  /** Stops accepting connections, lets in-flight requests finish (up to `shutdownGraceMs`), then resolves. */
  close(): Promise<void>;
}

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
 * S3 sub-resources of objects (and of buckets, which S3 refuses on object paths) this endpoint does not implement:
 * a PUT naming one must never store its body as the object.
 */
const UNSUPPORTED_OBJECT_SUBRESOURCES = [
  'acl',
  'tagging',
  'retention',
  'legal-hold',
  'torrent',
  'restore',
  'select',
  'select-type',
  'attributes',
  'renameObject',
  'policy',
  'policyStatus',
  'versioning',
  'versions',
  'cors',
  'lifecycle',
  'website',
  'logging',
  'notification',
  'replication',
  'encryption',
  'object-lock',
  'accelerate',
  'requestPayment',
  'ownershipControls',
  'publicAccessBlock',
  'analytics',
  'metrics',
  'inventory',
  'intelligent-tiering',
  'location',
  'session',
];

/** Unauthenticated probe endpoints for load balancers and orchestrators (bucket names they would shadow are refused). */
const PROBE_PATHS = new Set(['/health', '/ready']);

/** S3's name for what a request does (metrics label, log field). */
function operationOf(r: Route, copySource: boolean): string {
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

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

interface Route {
  method: string;
  bucket: string | undefined;
  key: string | undefined;
  query: Map<string, string>;
  queryList: Array<[string, string]>;
  rawPath: string;
}

function decodeQuery(raw: string): Array<[string, string]> {
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

function headerText(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function quoted(etag: string): string {
  return `"${etag}"`;
}

function unquote(etag: string): string {
  return etag
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
}

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

function parseMaxKeys(value: string | undefined, name: string): number {
  if (value === undefined) return 1000;
  if (!/^\d{1,9}$/.test(value))
    throw s3Errors.invalidArgument(`Provided ${name} not an integer or within integer range`);
  return Math.min(Number(value), 1000);
}

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

export async function createS3Gateway(options: S3GatewayOptions): Promise<S3Gateway> {
  const limits: GatewayLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const host = options.host ?? '127.0.0.1';
  const log: Logger = options.logger === false ? silentLogger : (options.logger ?? jsonStderrLogger);
  const now = options.now ?? (() => new Date());
  const credentials = new Map<string, string>();
  const rights = new Map<string, Record<string, BucketAccess> | undefined>();
  for (const c of options.credentials) {
    if (!c.accessKeyId || !c.secretAccessKey) {
      throw new PgStateError('BAD_SETTING', 'An access key needs both an access key id and a secret access key.', {
        fix: 'Pass --access-key and --secret-key together (or PGSTATE_S3_ACCESS_KEY_ID / PGSTATE_S3_SECRET_ACCESS_KEY).',
      });
    }
    if (credentials.has(c.accessKeyId)) {
      throw new PgStateError('BAD_SETTING', `The access key id "${c.accessKeyId}" is configured twice.`, {
        fix: 'Give each access key once.',
      });
    }
    for (const [bucket, access] of Object.entries(c.buckets ?? {})) {
      if (bucket !== '*' && !(bucket in options.buckets)) {
        throw new PgStateError(
          'BAD_SETTING',
          `Access key "${c.accessKeyId}" names bucket "${bucket}", which is not served.`,
          {
            fix: `Name one of the served buckets (${Object.keys(options.buckets).join(', ')}) or "*".`,
          },
        );
      }
      if (access !== 'read' && access !== 'read-write') {
        throw new PgStateError(
          'BAD_SETTING',
          `Access key "${c.accessKeyId}": "${String(access)}" is not a bucket right.`,
          {
            fix: 'Use "read" or "read-write".',
          },
        );
      }
    }
    credentials.set(c.accessKeyId, c.secretAccessKey);
    rights.set(c.accessKeyId, c.buckets);
  }
  if (credentials.size === 0 && !LOOPBACK.test(host)) {
    throw new PgStateError('BAD_SETTING', `Refusing to listen on ${host} without access keys.`, {
      fix: 'Configure an access key and secret (--access-key/--secret-key), or listen on 127.0.0.1.',
    });
  }
  for (const name of Object.keys(options.buckets)) {
    if (PROBE_PATHS.has(`/${name}`)) {
      throw new PgStateError('BAD_SETTING', `"${name}" is reserved: /${name} is the gateway's own probe endpoint.`, {
        fix: 'Give the bucket another name.',
      });
    }
    if (!BUCKET_NAME.test(name) || name.includes('..')) {
      throw new PgStateError('BAD_SETTING', `"${name}" is not a valid S3 bucket name.`, {
        fix: 'Use 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit.',
      });
    }
  }
  const buckets = new Map(Object.entries(options.buckets));
  const store = options.uploads ? new MultipartStore(options.uploads) : undefined;
  const startedAt = new Date();
  const budget = new BodyBudget(limits.maxBodyBytesInFlight);
  /** Per request: the budget it holds (given back when it ends) and whether its client went away. */
  const held = new WeakMap<IncomingMessage, { releases: Array<() => void>; gone: AbortController }>();

  function reserveFor(req: IncomingMessage): (bytes: number) => Promise<void> {
    return async (bytes) => {
      const state = held.get(req);
      if (!state) return;
      state.releases.push(await budget.acquire(bytes, limits.bodyWaitMs, state.gone.signal));
    };
  }
  let inFlight = 0;
  /** Set by close(): new requests are refused (503) and /ready reports not ready while in-flight ones finish. */
  let closingNow = false;
  let idleWaiters: Array<() => void> = [];

  /**
   * Bytes the request's connection moved since the previous request on it ended (headers included: Node reads them,
   * often with the whole body, before the handler runs).
   */
  const accounted = new WeakMap<object, { read: number; written: number }>();
  function socketBytes(req: IncomingMessage): { bytesIn: number; bytesOut: number } {
    // Node detaches the socket from a request whose connection was destroyed.
    const socket = req.socket as IncomingMessage['socket'] | null;
    if (!socket) return { bytesIn: 0, bytesOut: 0 };
    const before = accounted.get(socket) ?? { read: 0, written: 0 };
    const now = { read: socket.bytesRead, written: socket.bytesWritten };
    accounted.set(socket, now);
    return { bytesIn: now.read - before.read, bytesOut: now.written - before.written };
  }

  function requireStore(): MultipartStore {
    if (!store) throw s3Errors.notImplemented('multipart upload (the gateway was started without an uploads database)');
    return store;
  }

  function validateKey(key: string): void {
    if (Buffer.byteLength(key, 'utf8') > limits.maxKeyBytes) throw s3Errors.keyTooLong(limits.maxKeyBytes);
    if (/[\u0000-\u001f\u007f]/.test(key))
      throw s3Errors.invalidArgument('Object keys may not contain control characters.');
    if (key.split('/').some((segment) => segment === '.' || segment === '..')) {
      throw s3Errors.invalidArgument('Object keys may not contain "." or ".." path segments.');
    }
  }

  /** Whether the request's key may `access` this bucket (open mode: any request may do anything). */
  function may(auth: AuthResult, bucket: string, access: 'read' | 'write'): boolean {
    if (credentials.size === 0) return true;
    const scoped = rights.get(auth.accessKeyId ?? '');
    if (scoped === undefined) return auth.accessKeyId !== undefined && credentials.has(auth.accessKeyId);
    const granted = scoped[bucket] ?? scoped['*'];
    return granted === 'read-write' || (granted === 'read' && access === 'read');
  }

  function authorize(auth: AuthResult, bucket: string, access: 'read' | 'write'): void {
    // Unknown buckets fall through to NoSuchBucket, as on S3.
    if (buckets.has(bucket) && !may(auth, bucket, access)) throw s3Errors.accessDenied();
  }

  function handlerFor(bucket: string): BucketHandler {
    const handler = buckets.get(bucket);
    if (!handler) throw s3Errors.noSuchBucket(bucket);
    return handler;
  }

  function route(req: IncomingMessage): Route {
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
    const virtual = hostName.includes('.') && !/^[\d.]+$/.test(hostName) && buckets.has(firstLabel);
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

  function send(
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

  function sendXml(res: ServerResponse, root: string, body: Record<string, unknown>, status = 200): void {
    send(res, status, s3Xml(root, body));
  }

  function objectHeaders(info: ObjectInfo): Record<string, string> {
    return {
      ETag: quoted(info.etag),
      'Last-Modified': info.lastModified.toUTCString(),
      'Accept-Ranges': 'bytes',
    };
  }

  /** GET/HEAD conditionals; returns the status to answer instead, if any. */
  function conditionalStatus(req: IncomingMessage, info: ObjectInfo): number | undefined {
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

  async function readXml(req: IncomingMessage, auth: AuthResult, res: ServerResponse, root: string) {
    const { body } = await readBody(req, auth, {
      maxBytes: limits.maxXmlBytes,
      onStart: () => continueIfExpected(req, res),
      reserve: reserveFor(req),
    });
    return parseS3Xml(body.toString('utf8'), root);
  }

  function continueIfExpected(req: IncomingMessage, res: ServerResponse): void {
    if ((req.headers.expect ?? '').toLowerCase() === '100-continue') res.writeContinue();
  }

  function checksumHeaders(checksums: Partial<Record<ChecksumAlgorithm, string>>): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const [alg, value] of Object.entries(checksums)) headers[`x-amz-checksum-${alg}`] = value;
    return headers;
  }

  function putConditions(req: IncomingMessage): PutConditions | undefined {
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

  async function withCondition<T>(req: IncomingMessage, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof PgStateError && error.code === 'PRECONDITION_FAILED') {
        throw s3Errors.preconditionFailed(req.headers['if-none-match'] !== undefined ? 'If-None-Match' : 'If-Match');
      }
      throw error;
    }
  }

  // ---------------------------------------------------------------- bucket-level operations

  /** Access is all-or-nothing per access key; clients that read ACLs (s3cmd) see the owner's full control. */
  function sendAcl(res: ServerResponse): void {
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

  async function listBuckets(res: ServerResponse, auth: AuthResult): Promise<void> {
    // A scoped key sees the buckets it may read.
    const visible = [...buckets.keys()].filter((name) => may(auth, name, 'read')).sort();
    sendXml(res, 'ListAllMyBucketsResult', {
      Owner: { ID: 'pgstate', DisplayName: 'pgstate' },
      Buckets: { Bucket: visible.map((Name) => ({ Name, CreationDate: startedAt.toISOString() })) },
    });
  }

  async function listObjects(req: IncomingMessage, res: ServerResponse, r: Route, bucket: string): Promise<void> {
    const handler = handlerFor(bucket);
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
    req: IncomingMessage,
    res: ServerResponse,
    auth: AuthResult,
    bucket: string,
  ): Promise<void> {
    const handler = handlerFor(bucket);
    const doc = await readXml(req, auth, res, 'Delete');
    const objects = (doc.Object as Array<Record<string, unknown>> | undefined) ?? [];
    if (objects.length === 0 || objects.length > 1000) throw s3Errors.malformedXml();
    const keys = objects.map((o) => text(o.Key));
    if (keys.some((k) => k === undefined || k === '')) throw s3Errors.malformedXml();
    const quiet = text(doc.Quiet)?.trim() === 'true';
    const deleted: Array<{ Key: string }> = [];
    const errors: Array<{ Key: string; Code: string; Message: string }> = [];
    for (const key of keys as string[]) {
      try {
        validateKey(key);
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

  async function listUploads(res: ServerResponse, r: Route, bucket: string): Promise<void> {
    handlerFor(bucket);
    const prefix = r.query.get('prefix') ?? '';
    const maxUploads = parseMaxKeys(r.query.get('max-uploads'), 'max-uploads');
    const { uploads, truncated } = await requireStore().listUploads(bucket, prefix, maxUploads);
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

  async function bucketRequest(req: IncomingMessage, res: ServerResponse, r: Route, auth: AuthResult, bucket: string) {
    const sub = (name: string) => r.query.has(name);
    switch (r.method) {
      case 'HEAD':
        handlerFor(bucket);
        return send(res, 200, undefined, { 'x-amz-bucket-region': 'us-east-1' });
      case 'GET':
        handlerFor(bucket);
        if (sub('location')) return send(res, 200, s3Xml('LocationConstraint', {}, true));
        if (sub('versioning')) return sendXml(res, 'VersioningConfiguration', {});
        if (sub('uploads')) return listUploads(res, r, bucket);
        if (sub('acl')) return sendAcl(res);
        for (const name of [
          'policy',
          'cors',
          'lifecycle',
          'tagging',
          'encryption',
          'object-lock',
          'replication',
          'website',
          'logging',
          'notification',
          'versions',
          'accelerate',
          'requestPayment',
          'ownershipControls',
          'publicAccessBlock',
          'analytics',
          'metrics',
          'inventory',
          'intelligent-tiering',
        ]) {
          if (sub(name)) throw s3Errors.notImplemented(`bucket ?${name}`);
        }
        return listObjects(req, res, r, bucket);
      case 'PUT':
        // CreateBucket on a configured bucket is what S3 answers in us-east-1 for a bucket you own: success.
        if ([...r.query.keys()].length > 0) throw s3Errors.notImplemented('bucket configuration');
        if (!buckets.has(bucket))
          throw s3Errors.accessDenied('Buckets are configured on the gateway, not created by clients.');
        continueIfExpected(req, res);
        req.resume();
        return send(res, 200, undefined, { Location: `/${bucket}` });
      case 'POST':
        if (sub('delete')) return deleteObjects(req, res, auth, bucket);
        throw s3Errors.methodNotAllowed();
      case 'DELETE':
        handlerFor(bucket);
        throw new S3Error(
          409,
          'BucketNotEmpty',
          'Buckets are configured on the gateway and cannot be deleted by clients.',
        );
      default:
        throw s3Errors.methodNotAllowed();
    }
  }

  // ---------------------------------------------------------------- object-level operations

  async function getObject(
    req: IncomingMessage,
    res: ServerResponse,
    r: Route,
    bucket: string,
    key: string,
    head: boolean,
  ) {
    const handler = handlerFor(bucket);
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

  async function putObject(req: IncomingMessage, res: ServerResponse, auth: AuthResult, bucket: string, key: string) {
    const handler = handlerFor(bucket);
    const conditions = putConditions(req);
    const { body, checksums } = await readBody(req, auth, {
      maxBytes: limits.maxObjectBytes,
      onStart: () => continueIfExpected(req, res),
      reserve: reserveFor(req),
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
    req: IncomingMessage,
    res: ServerResponse,
    auth: AuthResult,
    bucket: string,
    key: string,
    sourceHeader: string,
  ) {
    const target = handlerFor(bucket);
    const source = parseCopySource(sourceHeader);
    validateKey(source.key);
    authorize(auth, source.bucket, 'read');
    const sourceHandler = handlerFor(source.bucket);
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

  function partNumber(r: Route): number {
    const value = r.query.get('partNumber') ?? '';
    const n = /^\d{1,5}$/.test(value) ? Number(value) : 0;
    if (n < 1 || n > limits.maxParts) {
      throw s3Errors.invalidArgument(`Part number must be an integer between 1 and ${limits.maxParts}, inclusive`);
    }
    return n;
  }

  async function createUpload(req: IncomingMessage, res: ServerResponse, bucket: string, key: string) {
    handlerFor(bucket);
    req.resume();
    const uploadId = randomBytes(24).toString('base64url');
    await requireStore().create(bucket, key, uploadId);
    sendXml(res, 'InitiateMultipartUploadResult', { Bucket: bucket, Key: key, UploadId: uploadId });
  }

  async function uploadPart(
    req: IncomingMessage,
    res: ServerResponse,
    r: Route,
    auth: AuthResult,
    bucket: string,
    key: string,
  ) {
    handlerFor(bucket);
    if (req.headers['x-amz-copy-source'] !== undefined) throw s3Errors.notImplemented('UploadPartCopy');
    const n = partNumber(r);
    const uploadId = r.query.get('uploadId') ?? '';
    const { body, checksums } = await readBody(req, auth, {
      maxBytes: limits.maxObjectBytes,
      onStart: () => continueIfExpected(req, res),
      reserve: reserveFor(req),
    });
    const etag = await requireStore().putPart(bucket, key, uploadId, n, body);
    send(res, 200, undefined, { ETag: quoted(etag), ...checksumHeaders(checksums) });
  }

  async function completeUpload(
    req: IncomingMessage,
    res: ServerResponse,
    r: Route,
    auth: AuthResult,
    bucket: string,
    key: string,
  ) {
    const handler = handlerFor(bucket);
    const uploadId = r.query.get('uploadId') ?? '';
    const conditions = putConditions(req);
    const doc = await readXml(req, auth, res, 'CompleteMultipartUpload');
    const parts = ((doc.Part as Array<Record<string, unknown>> | undefined) ?? []).map((p) => {
      const number = text(p.PartNumber)?.trim() ?? '';
      const etag = text(p.ETag);
      if (!/^\d{1,5}$/.test(number) || etag === undefined) throw s3Errors.malformedXml();
      return { partNumber: Number(number), etag: unquote(etag) };
    });
    if (parts.length > limits.maxParts) throw s3Errors.invalidArgument(`At most ${limits.maxParts} parts are allowed.`);
    const uploads = requireStore();
    const body = await uploads.assemble(bucket, key, uploadId, parts, {
      maxBytes: limits.maxObjectBytes,
      minPartBytes: limits.minPartBytes,
      reserve: reserveFor(req),
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

  async function listParts(res: ServerResponse, r: Route, bucket: string, key: string) {
    handlerFor(bucket);
    const uploadId = r.query.get('uploadId') ?? '';
    const marker = r.query.get('part-number-marker');
    const after = marker && /^\d{1,5}$/.test(marker) ? Number(marker) : 0;
    const maxParts = parseMaxKeys(r.query.get('max-parts'), 'max-parts');
    const { parts, truncated } = await requireStore().listParts(bucket, key, uploadId, after, maxParts);
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

  async function objectRequest(
    req: IncomingMessage,
    res: ServerResponse,
    r: Route,
    auth: AuthResult,
    bucket: string,
    key: string,
  ) {
    validateKey(key);
    const has = (name: string) => r.query.has(name);
    if (has('acl') && r.method === 'GET') {
      if (!(await handlerFor(bucket).headObject(key))) throw s3Errors.noSuchKey(key);
      return sendAcl(res);
    }
    for (const name of UNSUPPORTED_OBJECT_SUBRESOURCES) {
      if (has(name)) throw s3Errors.notImplemented(`object ?${name}`);
    }
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
        if (has('uploadId')) return listParts(res, r, bucket, key);
        return getObject(req, res, r, bucket, key, false);
      case 'HEAD':
        return getObject(req, res, r, bucket, key, true);
      case 'PUT': {
        if (has('uploadId') || has('partNumber')) return uploadPart(req, res, r, auth, bucket, key);
        const copySource = req.headers['x-amz-copy-source'];
        if (typeof copySource === 'string') return copyObject(req, res, auth, bucket, key, copySource);
        return putObject(req, res, auth, bucket, key);
      }
      case 'DELETE':
        if (has('uploadId')) {
          handlerFor(bucket);
          const removed = await requireStore().remove(bucket, key, r.query.get('uploadId') ?? '');
          if (!removed) throw s3Errors.noSuchUpload(r.query.get('uploadId') ?? '');
          return send(res, 204);
        }
        await handlerFor(bucket).deleteObject(key);
        return send(res, 204);
      case 'POST':
        if (has('uploads')) return createUpload(req, res, bucket, key);
        if (has('uploadId')) return completeUpload(req, res, r, auth, bucket, key);
        throw s3Errors.methodNotAllowed();
      default:
        throw s3Errors.methodNotAllowed();
    }
  }

  // ---------------------------------------------------------------- the server

  /** `/health`: the process answers. `/ready`: `options.readiness` says it can serve. Bodies say nothing more. */
  async function probe(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    req.resume();
    let ok = true;
    if (path === '/ready') {
      ok = !closingNow && (await (options.readiness?.() ?? Promise.resolve(true)).catch(() => false));
    }
    res.setHeader('Cache-Control', 'no-store');
    send(res, ok ? 200 : 503, req.method === 'HEAD' ? undefined : Buffer.from(ok ? 'ok\n' : 'not ready\n'), {
      'Content-Type': 'text/plain',
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if ((req.method === 'GET' || req.method === 'HEAD') && PROBE_PATHS.has(req.url ?? '')) {
      return probe(req, res, req.url!);
    }
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    const started = process.hrtime.bigint();
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('x-amz-id-2', requestId);
    res.setHeader('Server', 'pgstate');
    if (closingNow) {
      // Shutting down: refuse new work so a load balancer moves on; in-flight requests still finish.
      res.setHeader('Connection', 'close');
      req.resume();
      send(
        res,
        503,
        s3Xml(
          'Error',
          { Code: 'ServiceUnavailable', Message: 'The server is shutting down.', RequestId: requestId },
          false,
        ),
      );
      return;
    }
    inFlight++;
    const state = { releases: [] as Array<() => void>, gone: new AbortController() };
    held.set(req, state);
    res.once('close', () => state.gone.abort());
    let r: Route | undefined;
    let accessKeyId: string | undefined;
    let payload: string | undefined;
    let errorCode: string | undefined;
    let operation = 'Other';
    try {
      r = route(req);
      operation = operationOf(r, req.headers['x-amz-copy-source'] !== undefined);
      const auth = verifyRequest(
        { method: r.method, rawPath: r.rawPath, query: r.queryList, headers: req.headers },
        { credentials, now: now(), maxSkewMs: limits.maxClockSkewMs },
      );
      accessKeyId = auth.accessKeyId;
      // Which body framing the client chose (aws-chunked variants) helps when a client misbehaves.
      if (auth.payloadHash.startsWith('STREAMING-')) payload = auth.payloadHash;
      if (!r.bucket) {
        if (r.method !== 'GET') throw s3Errors.methodNotAllowed();
        await listBuckets(res, auth);
      } else if (r.key === undefined) {
        authorize(auth, r.bucket, r.method === 'GET' || r.method === 'HEAD' ? 'read' : 'write');
        await bucketRequest(req, res, r, auth, r.bucket);
      } else {
        authorize(auth, r.bucket, r.method === 'GET' || r.method === 'HEAD' ? 'read' : 'write');
        await objectRequest(req, res, r, auth, r.bucket, r.key);
      }
    } catch (error) {
      const e = toS3Error(error, r?.key);
      if (e.status >= 500 && e.status !== 501) {
        log({
          level: 'error',
          msg: 'request failed',
          requestId,
          error: error instanceof Error ? error.message : String(error),
          code: (error as { code?: unknown })?.code,
        });
      }
      if (!res.headersSent && !res.destroyed) {
        // A body we did not read may still be on the wire: close the connection rather than drain it. SlowDown is
        // the exception: the client did nothing wrong and should read this answer, so its body is discarded unread.
        if (e.code === 'SlowDown') req.resume();
        else if (!req.complete) res.setHeader('Connection', 'close');
        const document =
          r?.method === 'HEAD'
            ? undefined
            : s3Xml(
                'Error',
                {
                  Code: e.code,
                  Message: e.message,
                  ...e.details,
                  Resource: r ? `/${r.bucket ?? ''}${r.key ? `/${r.key}` : ''}` : undefined,
                  RequestId: requestId,
                },
                false,
              );
        send(res, e.status, document);
      } else if (!res.writableEnded) {
        res.destroy();
      }
      errorCode = e.code;
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log({
        level: res.statusCode >= 500 ? 'error' : 'info',
        msg: 'request',
        requestId,
        operation,
        method: req.method,
        bucket: r?.bucket,
        key: r?.key,
        status: res.statusCode,
        code: errorCode,
        accessKeyId,
        payload,
        ms: Math.round(ms * 10) / 10,
        ...socketBytes(req),
      });
      for (const release of state.releases) release();
      inFlight--;
      if (inFlight === 0) {
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  const serverOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: 5_000,
  };
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      // A bug must cost one request, never the process (an unhandled rejection would end it).
      log({
        level: 'error',
        msg: 'request handler failed',
        error: error instanceof Error ? error.message : String(error),
      });
      if (!res.headersSent && !res.destroyed) send(res, 500, undefined);
      else res.destroy();
    });
  };
  const server = options.tls
    ? https.createServer({ ...serverOptions, cert: options.tls.cert, key: options.tls.key }, listener)
    : http.createServer(serverOptions, listener);
  // Answer `Expect: 100-continue` only once auth and size checks passed (readBody calls writeContinue).
  server.on('checkContinue', listener);
  server.setTimeout(limits.idleTimeoutMs, (socket) => socket.destroy());
  server.on('clientError', (error, socket) => {
    const code = (error as { code?: string }).code;
    if (socket.writable && !socket.destroyed) {
      const status =
        code === 'HPE_HEADER_OVERFLOW'
          ? '431 Request Header Fields Too Large'
          : code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? '408 Request Timeout'
            : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else {
      socket.destroy();
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(listenError(error, host, options.port ?? 0)));
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const url = `${options.tls ? 'https' : 'http'}://${urlHost}:${port}`;
  log({
    level: 'info',
    msg: 'listening',
    url,
    buckets: [...buckets.keys()],
    authentication: credentials.size ? 'sigv4' : 'open',
  });

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    stats: () => ({
      inFlightRequests: inFlight,
      bodyBytesHeld: budget.inUse,
      bodyBytesBudget: budget.limit,
      requestsWaitingForBudget: budget.waiting,
    }),
    close() {
      closingNow = true;
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (inFlight > 0) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            new Promise<void>((resolve) => idleWaiters.push(resolve)),
            new Promise<void>((resolve) => {
              timer = setTimeout(resolve, limits.shutdownGraceMs);
            }),
          ]);
          clearTimeout(timer);
        }
        server.closeAllConnections();
        await closed;
        log({ level: 'info', msg: 'closed', url });
      })();
      return closing;
    },
  };
}

/** A listen failure users can act on: the port is taken, or not ours to take. */
function listenError(error: NodeJS.ErrnoException, host: string, port: number): Error {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (error.code === 'EADDRINUSE') {
    return new PgStateError('BAD_SETTING', `Cannot listen on ${where}: the port is already in use.`, {
      fix: 'Stop the process using it, or choose another port (port 0 takes any free one).',
    });
  }
  if (error.code === 'EACCES') {
    return new PgStateError(
      'BAD_SETTING',
      `Cannot listen on ${where}: permission denied (ports below 1024 need privileges).`,
      {
        fix: 'Choose a port above 1023.',
      },
    );
  }
  if (error.code === 'EADDRNOTAVAIL') {
    return new PgStateError('BAD_SETTING', `Cannot listen on ${where}: no such address on this machine.`, {
      fix: 'Listen on an address of this machine, e.g. 127.0.0.1 or 0.0.0.0.',
    });
  }
  return error;
}
