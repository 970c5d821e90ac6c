/**
 * AWS Signature Version 4 verification for S3 requests: the Authorization-header form, the presigned-query form and
 * the per-chunk signatures of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` bodies. The canonical request is rebuilt from the
 * exact header list the client says it signed (a signer library decides that list itself, so it cannot verify).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { sha256Hex } from './checksums.js';
import { S3Error, s3Errors } from './errors.js';

/** What an access key may do in one bucket. */
export type BucketAccess = 'read' | 'read-write';

export interface Credential {
  accessKeyId: string;
  secretAccessKey: string;
  /**
   * Per-bucket rights (`"*"` for every bucket). Without it the key may read and write every bucket; with it, only
   * what it lists (a read-only auditor key; a Meltano key that cannot touch the Pulumi bucket).
   */
  buckets?: Record<string, BucketAccess>;
}

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const ALGORITHM = 'AWS4-HMAC-SHA256';
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;
/** Query parameters of presigned URLs (SigV4 and SigV2): never allowed beside an Authorization header. */
const PRESIGN_PARAMETERS = new Set([
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Signature',
  'Signature',
  'AWSAccessKeyId',
]);

/** What a verified (or, in open mode, accepted) request carries on into body decoding. */
export interface AuthResult {
  accessKeyId: string | undefined;
  /** The client's `x-amz-content-sha256` (or UNSIGNED-PAYLOAD for presigned URLs). */
  payloadHash: string;
  /** Present when signatures are verified: checks the chunk and trailer signatures of streaming bodies. */
  chunks?: ChunkSignatureChain;
}

export interface ParsedRequestTarget {
  method: string;
  /** The path exactly as sent (still percent-encoded). */
  rawPath: string;
  /** Decoded query pairs in the order sent. */
  query: Array<[string, string]>;
  headers: IncomingHttpHeaders;
}

/** S3's URI encoding: everything but unreserved characters is %XX-encoded (UTF-8). */
export function awsUriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

const signingKeyCache = new Map<string, Buffer>();
function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const cacheKey = `${date}/${region}/${service}/${sha256Hex(secret)}`;
  let key = signingKeyCache.get(cacheKey);
  if (!key) {
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
    if (signingKeyCache.size > 64) signingKeyCache.clear();
    signingKeyCache.set(cacheKey, key);
  }
  return key;
}

function sameSignature(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(given.toLowerCase(), 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : value;
}

function canonicalPath(rawPath: string): string {
  // Decode each segment and re-encode it the AWS way, so clients that escape more or fewer characters than needed
  // still canonicalise to what they signed. An encoded "/" stays inside its segment.
  return rawPath
    .split('/')
    .map((segment) => awsUriEncode(decodeURIComponent(segment)))
    .join('/');
}

function canonicalQuery(query: Array<[string, string]>, exclude?: string): string {
  return query
    .filter(([name]) => name !== exclude)
    .map(([name, value]) => [awsUriEncode(name), awsUriEncode(value)] as const)
    .sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

function canonicalHeaders(headers: IncomingHttpHeaders, signed: string[]): string {
  return signed
    .map((name) => {
      const value = headerValue(headers, name);
      if (value === undefined) throw s3Errors.signatureDoesNotMatch();
      return `${name}:${value.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
}

/** Parses `20240102T030405Z`. */
function parseAmzDate(value: string | undefined): Date {
  const m = value ? /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value) : null;
  if (!m) throw new S3Error(403, 'AccessDenied', 'AWS authentication requires a valid X-Amz-Date (YYYYMMDDTHHMMSSZ).');
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

interface Scope {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

function parseCredential(value: string | undefined): Scope {
  const parts = value?.split('/') ?? [];
  if (parts.length !== 5 || parts[4] !== 'aws4_request' || !/^\d{8}$/.test(parts[1]!)) {
    throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The authorization credential scope is malformed.');
  }
  if (parts[3] !== 's3') {
    throw new S3Error(
      400,
      'AuthorizationHeaderMalformed',
      `The credential scope names service "${parts[3]}", not "s3".`,
    );
  }
  return { accessKeyId: parts[0]!, date: parts[1]!, region: parts[2]!, service: parts[3]! };
}

/** Verifies the signature of each `aws-chunked` chunk and of the trailer, each chained to the one before. */
export class ChunkSignatureChain {
  private previous: string;
  constructor(
    private readonly key: Buffer,
    private readonly amzDate: string,
    private readonly scope: string,
    seedSignature: string,
  ) {
    this.previous = seedSignature;
  }

  verifyChunk(dataSha256Hex: string, signature: string): boolean {
    const expected = hmac(
      this.key,
      `${ALGORITHM}-PAYLOAD\n${this.amzDate}\n${this.scope}\n${this.previous}\n${EMPTY_SHA256}\n${dataSha256Hex}`,
    ).toString('hex');
    if (!sameSignature(expected, signature)) return false;
    this.previous = expected;
    return true;
  }

  verifyTrailer(canonicalTrailer: string, signature: string): boolean {
    const expected = hmac(
      this.key,
      `${ALGORITHM}-TRAILER\n${this.amzDate}\n${this.scope}\n${this.previous}\n${sha256Hex(canonicalTrailer)}`,
    ).toString('hex');
    return sameSignature(expected, signature);
  }
}

export interface VerifyOptions {
  /** Access keys by id; empty means open mode (loopback only): any or no signature is accepted. */
  credentials: ReadonlyMap<string, string>;
  now: Date;
  maxSkewMs: number;
}

/**
 * Verifies a request's SigV4 signature. Throws the S3 error a real S3 would answer (AccessDenied for unsigned
 * requests, InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed, expired presigned URLs).
 */
export function verifyRequest(target: ParsedRequestTarget, options: VerifyOptions): AuthResult {
  const open = options.credentials.size === 0;
  const authorization = headerValue(target.headers, 'authorization');
  const presignAlgorithm = target.query.find(([n]) => n === 'X-Amz-Algorithm')?.[1];
  const contentSha = headerValue(target.headers, 'x-amz-content-sha256');

  // S3 takes exactly one form of authentication per request.
  if (authorization && target.query.some(([n]) => PRESIGN_PARAMETERS.has(n))) {
    throw new S3Error(
      400,
      'InvalidArgument',
      'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified',
    );
  }

  if (!authorization && presignAlgorithm === undefined) {
    if (open) return { accessKeyId: undefined, payloadHash: contentSha ?? UNSIGNED_PAYLOAD };
    throw s3Errors.accessDenied('Anonymous requests are not allowed: sign the request with AWS Signature Version 4.');
  }

  let scope: Scope;
  let signedHeaders: string[];
  let signature: string;
  let amzDate: string;
  let payloadHash: string;
  let excludeFromQuery: string | undefined;
  let expiresSeconds: number | undefined;

  if (authorization) {
    if (!authorization.startsWith(`${ALGORITHM} `)) {
      if (open) return { accessKeyId: undefined, payloadHash: contentSha ?? UNSIGNED_PAYLOAD };
      throw new S3Error(400, 'InvalidRequest', 'Only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported.');
    }
    const fields = new Map<string, string>();
    for (const part of authorization.slice(ALGORITHM.length + 1).split(',')) {
      const eq = part.indexOf('=');
      if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
    }
    scope = parseCredential(fields.get('Credential'));
    signedHeaders = (fields.get('SignedHeaders') ?? '').split(';').filter(Boolean);
    signature = fields.get('Signature') ?? '';
    amzDate = headerValue(target.headers, 'x-amz-date') ?? '';
    if (!contentSha) {
      throw new S3Error(400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
    }
    payloadHash = contentSha;
  } else {
    if (presignAlgorithm !== ALGORITHM) {
      throw new S3Error(400, 'AuthorizationQueryParametersError', 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256".');
    }
    const q = (name: string) => target.query.find(([n]) => n === name)?.[1];
    scope = parseCredential(q('X-Amz-Credential'));
    signedHeaders = (q('X-Amz-SignedHeaders') ?? '').split(';').filter(Boolean);
    signature = q('X-Amz-Signature') ?? '';
    amzDate = q('X-Amz-Date') ?? '';
    payloadHash = q('X-Amz-Content-Sha256') ?? UNSIGNED_PAYLOAD;
    excludeFromQuery = 'X-Amz-Signature';
    expiresSeconds = Number(q('X-Amz-Expires'));
    if (!Number.isInteger(expiresSeconds) || expiresSeconds < 1 || expiresSeconds > MAX_PRESIGN_SECONDS) {
      throw new S3Error(
        400,
        'AuthorizationQueryParametersError',
        'X-Amz-Expires must be a whole number of seconds between 1 and 604800.',
      );
    }
  }

  const secret = options.credentials.get(scope.accessKeyId);
  if (open) return { accessKeyId: scope.accessKeyId, payloadHash };
  if (secret === undefined) throw s3Errors.invalidAccessKeyId();
  if (!signedHeaders.includes('host')) throw s3Errors.signatureDoesNotMatch();
  // An x-amz-* header changes what a request does (x-amz-copy-source names what to copy): S3 obeys only signed ones.
  const unsigned = Object.keys(target.headers).filter((n) => n.startsWith('x-amz-') && !signedHeaders.includes(n));
  if (unsigned.length > 0) {
    throw new S3Error(403, 'AccessDenied', 'There were headers present in the request which were not signed', {
      HeadersNotSigned: unsigned.join(', '),
    });
  }
  if (!/^[0-9a-fA-F]{64}$/.test(signature)) throw s3Errors.signatureDoesNotMatch();

  const date = parseAmzDate(amzDate);
  if (amzDate.slice(0, 8) !== scope.date) {
    throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The credential scope date does not match X-Amz-Date.');
  }
  const now = options.now.getTime();
  if (expiresSeconds === undefined) {
    if (Math.abs(now - date.getTime()) > options.maxSkewMs) throw s3Errors.requestTimeTooSkewed();
  } else {
    if (date.getTime() - now > options.maxSkewMs) throw s3Errors.requestTimeTooSkewed();
    if (now > date.getTime() + expiresSeconds * 1000) throw s3Errors.accessDenied('Request has expired');
  }

  let rest: string;
  let paths: string[];
  try {
    rest = [
      canonicalQuery(target.query, excludeFromQuery),
      canonicalHeaders(target.headers, signedHeaders),
      signedHeaders.join(';'),
      payloadHash,
    ].join('\n');
    // Clients sign the path as they sent it; the AWS-normalised encoding covers clients whose HTTP stack re-escaped it.
    const normalised = canonicalPath(target.rawPath);
    paths = normalised === target.rawPath ? [normalised] : [target.rawPath, normalised];
  } catch (error) {
    if (error instanceof S3Error) throw error;
    throw new S3Error(400, 'InvalidURI', 'Could not parse the specified URI.');
  }
  const scopeText = `${scope.date}/${scope.region}/${scope.service}/aws4_request`;
  const key = signingKey(secret, scope.date, scope.region, scope.service);
  const expected = paths
    .map((path) =>
      hmac(key, `${ALGORITHM}\n${amzDate}\n${scopeText}\n${sha256Hex(`${target.method}\n${path}\n${rest}`)}`).toString(
        'hex',
      ),
    )
    .find((candidate) => sameSignature(candidate, signature));
  if (!expected) throw s3Errors.signatureDoesNotMatch();
  return {
    accessKeyId: scope.accessKeyId,
    payloadHash,
    chunks: new ChunkSignatureChain(key, amzDate, scopeText, expected),
  };
}
