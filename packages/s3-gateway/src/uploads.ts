/**
 * In-flight multipart uploads live in two gateway-owned tables, not in gateway memory: a gateway stays stateless,
 * so parts uploaded through one gateway can be completed through another, and a restart loses nothing. Bucket
 * handlers only ever see the finished object through one atomic `putObject`, so an upload that dies half-way leaves
 * no trace in the state tables (abandoned uploads expire).
 */
import { isPgStateError, pgErrorKind, qualifiedName } from '@pgstate/core';
import { GATEWAY_DEFAULT_SCHEMA, GATEWAY_UPLOAD_PARTS_TABLE, GATEWAY_UPLOADS_TABLE, migrate } from '@pgstate/schema';
import type pg from 'pg';
import { md5Hex } from './checksums.js';
import { S3Error, s3Errors } from './errors.js';

export interface PartInfo {
  partNumber: number;
  etag: string;
  size: number;
  lastModified: Date;
}

export interface UploadInfo {
  uploadId: string;
  key: string;
  initiated: Date;
}

export interface MultipartStoreOptions {
  pool: pg.Pool;
  /** Schema of the two tables (migration set `gateway` of `@pgstate/schema`). Default `public`. */
  schema?: string;
  /** Uploads older than this are deleted when new ones start (default 7 days). */
  expireAfterMs?: number;
  /**
   * Apply the `gateway` migration set on first use (default true), as the adapters do with theirs: up to date, that
   * only reads the journal, so a DML-only role works once an administrator ran `pgstate migrate`.
   */
  migrate?: boolean;
  /** Schema of pgstate's migration journal, when not `pgstate`. */
  internalSchema?: string;
}

export class MultipartStore {
  private readonly pool: pg.Pool;
  private readonly schema: string;
  private readonly uploads: string;
  private readonly parts: string;
  private readonly expireAfterSeconds: number;
  private readonly runMigrations: boolean;
  private readonly internalSchema: string | undefined;
  private ready: Promise<void> | undefined;

  constructor(options: MultipartStoreOptions) {
    this.pool = options.pool;
    this.schema = options.schema ?? GATEWAY_DEFAULT_SCHEMA;
    this.uploads = qualifiedName(this.schema, GATEWAY_UPLOADS_TABLE);
    this.parts = qualifiedName(this.schema, GATEWAY_UPLOAD_PARTS_TABLE);
    this.expireAfterSeconds = Math.round((options.expireAfterMs ?? 7 * 24 * 3600 * 1000) / 1000);
    this.runMigrations = options.migrate ?? true;
    this.internalSchema = options.internalSchema;
  }

  /**
   * Brings the tables up to date once, through `@pgstate/schema`'s migrator (the only place that creates tables; safe
   * when many gateways start at once). A role that may not create them gets an S3 error that says what to run.
   */
  ensureTables(): Promise<void> {
    this.ready ??= (async () => {
      if (!this.runMigrations) return;
      try {
        await migrate(this.pool, { adapter: 'gateway', schema: this.schema }, { internalSchema: this.internalSchema });
      } catch (error) {
        if (isPgStateError(error, 'PERMISSION_DENIED') || isPgStateError(error, 'MIGRATIONS_PENDING')) {
          throw new S3Error(
            403,
            'AccessDenied',
            "Multipart uploads need the gateway's tables, which are not migrated in the state database (and this " +
              "gateway's database role may not create them): run `pgstate migrate --adapter gateway` as an administrator.",
          );
        }
        throw error;
      }
    })().catch((error) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  async create(bucket: string, key: string, uploadId: string): Promise<void> {
    await this.ensureTables();
    await this.pool.query(`DELETE FROM ${this.uploads} WHERE created_at < now() - make_interval(secs => $1)`, [
      this.expireAfterSeconds,
    ]);
    await this.pool.query(`INSERT INTO ${this.uploads} (upload_id, bucket, key) VALUES ($1, $2, $3)`, [
      uploadId,
      bucket,
      key,
    ]);
  }

  async putPart(bucket: string, key: string, uploadId: string, partNumber: number, data: Buffer): Promise<string> {
    await this.ensureTables();
    const etag = md5Hex(data);
    try {
      const result = await this.pool.query(
        `INSERT INTO ${this.parts} (upload_id, part_number, etag, size, data)
         SELECT upload_id, $4, $5, $6, $7 FROM ${this.uploads} WHERE upload_id = $1 AND bucket = $2 AND key = $3
         ON CONFLICT (upload_id, part_number)
         DO UPDATE SET etag = EXCLUDED.etag, size = EXCLUDED.size, data = EXCLUDED.data, uploaded_at = now()`,
        [uploadId, bucket, key, partNumber, etag, data.length, data],
      );
      if (result.rowCount !== 1) throw s3Errors.noSuchUpload(uploadId);
    } catch (error) {
      // The upload was aborted between our SELECT and INSERT.
      if (pgErrorKind(error) === 'foreign-key-violation') throw s3Errors.noSuchUpload(uploadId);
      throw error;
    }
    return etag;
  }

  private async requireUpload(bucket: string, key: string, uploadId: string): Promise<void> {
    await this.ensureTables();
    const found = await this.pool.query(
      `SELECT 1 FROM ${this.uploads} WHERE upload_id = $1 AND bucket = $2 AND key = $3`,
      [uploadId, bucket, key],
    );
    if (found.rowCount !== 1) throw s3Errors.noSuchUpload(uploadId);
  }

  async listParts(
    bucket: string,
    key: string,
    uploadId: string,
    afterPart: number,
    maxParts: number,
  ): Promise<{ parts: PartInfo[]; truncated: boolean }> {
    await this.requireUpload(bucket, key, uploadId);
    const result = await this.pool.query<{ part_number: number; etag: string; size: string; uploaded_at: Date }>(
      `SELECT part_number, etag, size, uploaded_at FROM ${this.parts}
       WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3`,
      [uploadId, afterPart, maxParts + 1],
    );
    const parts = result.rows.slice(0, maxParts).map((r) => ({
      partNumber: r.part_number,
      etag: r.etag,
      size: Number(r.size),
      lastModified: r.uploaded_at,
    }));
    return { parts, truncated: result.rows.length > maxParts };
  }

  async listUploads(
    bucket: string,
    prefix: string,
    maxUploads: number,
  ): Promise<{ uploads: UploadInfo[]; truncated: boolean }> {
    await this.ensureTables();
    const result = await this.pool.query<{ upload_id: string; key: string; created_at: Date }>(
      `SELECT upload_id, key, created_at FROM ${this.uploads}
       WHERE bucket = $1 AND left(key, length($2)) = $2 ORDER BY key COLLATE "C", created_at LIMIT $3`,
      [bucket, prefix, maxUploads + 1],
    );
    return {
      uploads: result.rows
        .slice(0, maxUploads)
        .map((r) => ({ uploadId: r.upload_id, key: r.key, initiated: r.created_at })),
      truncated: result.rows.length > maxUploads,
    };
  }

  /**
   * Concatenates the listed parts into one buffer after checking them the way S3 does (ascending numbers, known
   * ETags, every part but the last at least `minPartBytes`). Parts are fetched one at a time, so only the result
   * is ever whole in memory.
   */
  async assemble(
    bucket: string,
    key: string,
    uploadId: string,
    requested: Array<{ partNumber: number; etag: string }>,
    limits: { maxBytes: number; minPartBytes: number; reserve?: (bytes: number) => Promise<void> },
  ): Promise<Buffer> {
    await this.requireUpload(bucket, key, uploadId);
    if (requested.length === 0) throw s3Errors.malformedXml();
    const stored = await this.pool.query<{ part_number: number; etag: string; size: string }>(
      `SELECT part_number, etag, size FROM ${this.parts} WHERE upload_id = $1`,
      [uploadId],
    );
    const byNumber = new Map(stored.rows.map((r) => [r.part_number, r]));
    let total = 0;
    let previous = 0;
    for (const want of requested) {
      if (want.partNumber <= previous) throw s3Errors.invalidPartOrder();
      previous = want.partNumber;
    }
    for (const [index, want] of requested.entries()) {
      const have = byNumber.get(want.partNumber);
      if (!have || have.etag !== want.etag) {
        throw s3Errors.invalidPart(
          `One or more of the specified parts could not be found or its entity tag did not match (part ${want.partNumber}).`,
        );
      }
      const size = Number(have.size);
      if (index < requested.length - 1 && size < limits.minPartBytes) throw s3Errors.entityTooSmall();
      total += size;
    }
    if (total > limits.maxBytes) throw s3Errors.entityTooLarge(limits.maxBytes);
    await limits.reserve?.(total);
    const out = Buffer.allocUnsafe(total);
    let offset = 0;
    for (const want of requested) {
      const part = await this.pool.query<{ data: Buffer }>(
        `SELECT data FROM ${this.parts} WHERE upload_id = $1 AND part_number = $2 AND etag = $3`,
        [uploadId, want.partNumber, want.etag],
      );
      const data = part.rows[0]?.data;
      if (!data || offset + data.length > total) {
        throw new S3Error(409, 'OperationAborted', 'A part was replaced while the upload was being completed; retry.');
      }
      data.copy(out, offset);
      offset += data.length;
    }
    if (offset !== total) throw new S3Error(409, 'OperationAborted', 'A part changed during completion; retry.');
    return out;
  }

  /** Deletes an upload and its parts; false when it did not exist. */
  async remove(bucket: string, key: string, uploadId: string): Promise<boolean> {
    await this.ensureTables();
    const result = await this.pool.query(
      `DELETE FROM ${this.uploads} WHERE upload_id = $1 AND bucket = $2 AND key = $3`,
      [uploadId, bucket, key],
    );
    return result.rowCount === 1;
  }
}
