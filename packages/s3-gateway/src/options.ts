/** What a gateway is configured with and what it exposes: limits, options, the running gateway. */
import type { BucketHandler } from '@pgstate/core';
import type { Logger } from './logger.js';
import type { Credential } from './sigv4.js';
import type { MultipartStoreOptions } from './uploads.js';

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
  /**
   * Where multipart uploads keep their parts until completed: the tables of `@pgstate/schema`'s `gateway` migration
   * set, applied on first use unless `migrate: false`. Without it, multipart requests answer NotImplemented.
   */
  uploads?: MultipartStoreOptions;
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
