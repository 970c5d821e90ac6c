/**
 * The contract between `@pgstate/s3-gateway` and the adapters that serve its buckets. It lives in core so that
 * adapters implement it without importing the gateway (imports only point one way).
 */
export interface ObjectInfo {
  key: string;
  size: number;
  /** Lower-case hex MD5 of the whole object, without quotes. */
  etag: string;
  lastModified: Date;
}

export interface ObjectBody {
  info: ObjectInfo;
  /** The requested bytes (the whole object, or the range). */
  body: Uint8Array;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive; undefined means to the end. */
  end?: number;
}

export interface PutConditions {
  /** `If-None-Match: *`: write only if the key does not exist. */
  ifNoneMatch?: '*';
  /** `If-Match: <etag>`: write only if the current ETag equals this (hex, no quotes). */
  ifMatch?: string;
}

export interface ListRequest {
  prefix?: string;
  delimiter?: string;
  /** Return keys strictly after this one (UTF-8 byte order). */
  startAfter?: string;
  maxKeys: number;
}

export interface ListResult {
  objects: ObjectInfo[];
  commonPrefixes: string[];
  isTruncated: boolean;
  /** Where the next page starts (exclusive), when truncated. */
  nextStartAfter?: string;
}

/**
 * One S3 bucket served from PostgreSQL. Missing keys return null / false; failed conditions throw a
 * `PgStateError` with code PRECONDITION_FAILED; invalid keys throw INVALID_INPUT. Every write is atomic.
 */
export interface BucketHandler {
  readonly kind: string;
  getObject(key: string, range?: ByteRange): Promise<ObjectBody | null>;
  headObject(key: string): Promise<ObjectInfo | null>;
  putObject(key: string, body: Uint8Array, conditions?: PutConditions): Promise<ObjectInfo>;
  copyObject(sourceKey: string, destinationKey: string): Promise<ObjectInfo | null>;
  deleteObject(key: string): Promise<boolean>;
  listObjects(request: ListRequest): Promise<ListResult>;
  close?(): Promise<void>;
}
