/**
 * What every S3 operation needs from the gateway it runs in: limits, the served buckets and who may use them, the
 * multipart store, and the request-body budget. Built once per gateway; operations receive it instead of closing
 * over the server, so each can be driven alone (see test/operations.test.ts).
 */
import type { IncomingMessage } from 'node:http';
import type { BucketHandler } from '@pgstate/core';
import { PgStateError } from '@pgstate/core';
import { s3Errors } from './errors.js';
import { DEFAULT_LIMITS, type GatewayLimits } from './options.js';
import { validateKey } from './routing.js';
import type { AuthResult, BucketAccess, Credential } from './sigv4.js';
import { MultipartStore, type MultipartStoreOptions } from './uploads.js';

export interface GatewayContext {
  readonly limits: GatewayLimits;
  readonly buckets: ReadonlyMap<string, BucketHandler>;
  /** Access key id -> secret, for SigV4. Empty: open mode. */
  readonly credentials: ReadonlyMap<string, string>;
  /** Reported as every bucket's creation date. */
  readonly startedAt: Date;
  /** Whether the request's key may `access` this bucket (open mode: any request may do anything). */
  may(auth: AuthResult, bucket: string, access: 'read' | 'write'): boolean;
  /** 403 AccessDenied unless `may`; unknown buckets fall through to NoSuchBucket, as on S3. */
  authorize(auth: AuthResult, bucket: string, access: 'read' | 'write'): void;
  /** The bucket's handler, or 404 NoSuchBucket. */
  handlerFor(bucket: string): BucketHandler;
  /** The multipart store, or 501 when the gateway has none. */
  requireStore(): MultipartStore;
  /** S3's key rules with this gateway's length limit. */
  validateKey(key: string): void;
  /** How a request reserves room for a body it is about to hold in memory. */
  reserveFor(req: IncomingMessage): (bytes: number) => Promise<void>;
}

export interface GatewayContextOptions {
  buckets: Record<string, BucketHandler>;
  credentials: Credential[];
  limits?: Partial<GatewayLimits>;
  uploads?: MultipartStoreOptions;
  /** The server's body budget; default: bodies are not accounted (operations driven without a server). */
  reserveFor?: (req: IncomingMessage) => (bytes: number) => Promise<void>;
}

/** Validates the access keys against the served buckets (BAD_SETTING naming the key) and builds the context. */
export function createGatewayContext(options: GatewayContextOptions): GatewayContext {
  const limits: GatewayLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const credentials = new Map<string, string>();
  const rights = new Map<string, Record<string, BucketAccess> | undefined>();
  for (const c of options.credentials) {
    if (!c.accessKeyId || !c.secretAccessKey) {
      throw new PgStateError('BAD_SETTING', 'An access key needs both an access key id and a secret access key.', {
        fix: 'Give every credential both an accessKeyId and a secretAccessKey.',
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
  const buckets = new Map(Object.entries(options.buckets));
  const store = options.uploads ? new MultipartStore(options.uploads) : undefined;
  const unaccounted = async () => {};
  const ctx: GatewayContext = {
    limits,
    buckets,
    credentials,
    startedAt: new Date(),
    may(auth, bucket, access) {
      if (credentials.size === 0) return true;
      const scoped = rights.get(auth.accessKeyId ?? '');
      if (scoped === undefined) return auth.accessKeyId !== undefined && credentials.has(auth.accessKeyId);
      const granted = scoped[bucket] ?? scoped['*'];
      return granted === 'read-write' || (granted === 'read' && access === 'read');
    },
    authorize(auth, bucket, access) {
      if (buckets.has(bucket) && !ctx.may(auth, bucket, access)) throw s3Errors.accessDenied();
    },
    handlerFor(bucket) {
      const handler = buckets.get(bucket);
      if (!handler) throw s3Errors.noSuchBucket(bucket);
      return handler;
    },
    requireStore() {
      if (!store)
        throw s3Errors.notImplemented('multipart upload (the gateway was started without an uploads database)');
      return store;
    },
    validateKey: (key) => validateKey(key, limits.maxKeyBytes),
    reserveFor: options.reserveFor ?? (() => unaccounted),
  };
  return ctx;
}
