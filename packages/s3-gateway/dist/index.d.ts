import { BucketHandler } from "@pgstate/core";
import pg from "pg";

//#region src/checksums.d.ts
/** The flexible-checksum algorithms S3 clients send (`x-amz-checksum-<name>`) that the gateway verifies. */
type ChecksumAlgorithm = 'crc32' | 'crc32c' | 'sha1' | 'sha256';
//#endregion
//#region src/errors.d.ts
/** An error answered to the client in S3's XML error format. `code` is S3's error code (clients switch on it). */
declare class S3Error extends Error {
  readonly status: number;
  readonly code: string;
  /** Extra elements of the error document (e.g. Key, BucketName). */
  readonly details: Record<string, string>;
  constructor(status: number, code: string, message: string, details?: Record<string, string>);
}
//#endregion
//#region src/logger.d.ts
/** One structured log record. Never carries secrets: no Authorization header, signature or credential values. */
interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  requestId?: string;
  [field: string]: unknown;
}
type Logger = (record: LogRecord) => void;
/** JSON lines on stderr, one record per line. */
declare const jsonStderrLogger: Logger;
declare const silentLogger: Logger;
//#endregion
//#region src/sigv4.d.ts
interface Credential {
  accessKeyId: string;
  secretAccessKey: string;
}
//#endregion
//#region src/gateway.d.ts
interface GatewayLimits {
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
}
declare const DEFAULT_LIMITS: GatewayLimits;
interface S3GatewayOptions {
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
  tls?: {
    cert: string | Buffer;
    key: string | Buffer;
  };
  /** Where multipart uploads keep their parts until completed. Without it, multipart requests answer NotImplemented. */
  uploads?: {
    pool: pg.Pool;
    schema?: string;
    expireAfterMs?: number;
  };
  limits?: Partial<GatewayLimits>;
  /** Structured log sink; default JSON lines on stderr. `false` for silence. */
  logger?: Logger | false;
  /** Clock, for tests of expired signatures. */
  now?: () => Date;
}
interface S3Gateway {
  /** `http://127.0.0.1:PORT` (or https). */
  readonly url: string;
  readonly port: number;
  /** Stops accepting connections, lets in-flight requests finish (up to `shutdownGraceMs`), then resolves. */
  close(): Promise<void>;
}
declare function createS3Gateway(options: S3GatewayOptions): Promise<S3Gateway>;
//#endregion
//#region src/pulumi-backend.d.ts
interface PulumiBackendOptions {
  /** The handler, or a factory whose handler the backend owns and closes on dispose. */
  handler: BucketHandler | (() => BucketHandler | Promise<BucketHandler>);
  /** Where multipart parts of large checkpoints (> 8 MiB) wait; without it such saves fail. */
  uploads?: {
    pool: pg.Pool;
    schema?: string;
  };
  /** Bucket name in the backend URL. Default `pulumi-state`. */
  bucket?: string;
  /** Default: silent. */
  logger?: Logger | false;
}
interface PulumiBackend {
  /** `s3://BUCKET?endpoint=http://127.0.0.1:PORT&s3ForcePathStyle=true` for `pulumi login` / `PULUMI_BACKEND_URL`. */
  readonly backendUrl: string;
  /**
   * Environment for the Pulumi CLI (`LocalWorkspace` `envVars`): the backend URL, per-run random access keys that
   * only this endpoint accepts, and the region.
   */
  readonly envVars: Record<string, string>;
  readonly gateway: S3Gateway;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}
declare function startPulumiBackend(options: PulumiBackendOptions): Promise<PulumiBackend>;
//#endregion
export { type ChecksumAlgorithm, type Credential, DEFAULT_LIMITS, type GatewayLimits, type LogRecord, type Logger, type PulumiBackend, type PulumiBackendOptions, S3Error, type S3Gateway, type S3GatewayOptions, createS3Gateway, jsonStderrLogger, silentLogger, startPulumiBackend };
//# sourceMappingURL=index.d.ts.map