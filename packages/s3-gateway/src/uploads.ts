/**
 * In-flight multipart uploads live in two gateway-owned tables, not in gateway memory: a gateway stays stateless,
 * so parts uploaded through one gateway can be completed through another, and a restart loses nothing. Bucket
 * handlers only ever see the finished object through one atomic `putObject`, so an upload that dies half-way leaves
 * no trace in the state tables (abandoned uploads expire).
 */
import { PgStateError, quoteIdentifier, validateIdentifier } from '@pgstate/core';
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
  /** Schema of the two tables; default: the first schema on the connection's search_path. */
  schema?: string;
  /** Uploads older than this are deleted when new ones start (default 7 days). */
  expireAfterMs?: number;
}

export class MultipartStore {
  private readonly pool: pg.Pool;
  private readonly uploads: string;
  private readonly parts: string;
  private readonly lockName: string;
  private readonly expireAfterSeconds: number;
  private ready: Promise<void> | undefined;

  constructor(options: MultipartStoreOptions) {
    this.pool = options.pool;
    const prefix = options.schema ? `${quoteIdentifier(validateIdentifier(options.schema, 'schema'))}.` : '';
    this.uploads = `${prefix}pgstate_s3_uploads`;
    this.parts = `${prefix}pgstate_s3_upload_parts`;
    this.lockName = `${options.schema ?? ''}.pgstate_s3_uploads`;
    this.expireAfterSeconds = Math.round((options.expireAfterMs ?? 7 * 24 * 3600 * 1000) / 1000);
  }

  /** Creates the tables on first use; concurrent gateways serialise on an advisory lock so DDL never races. */
  private ensureTables(): Promise<void> {
    this.ready ??= (async () => {
      const client = await this.pool.connect();
      try {
        const exists = await client.query<{ ok: boolean }>(
          'SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok',
          [this.uploads, this.parts],
        );
        if (exists.rows[0]?.ok) return;
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [this.lockName]);
        await client.query(`CREATE TABLE IF NOT EXISTS ${this.uploads} (
          upload_id text PRIMARY KEY,
          bucket text NOT NULL,
          key text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        )`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${this.parts} (
          upload_id text NOT NULL REFERENCES ${this.uploads} (upload_id) ON DELETE CASCADE,
          part_number integer NOT NULL,
          etag text NOT NULL,
          size bigint NOT NULL,
          data bytea NOT NULL,
          uploaded_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (upload_id, part_number)
        )`);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw new PgStateError('QUERY_FAILED', 'Could not create the multipart upload tables.', {
          fix: 'Grant CREATE on the schema to the gateway role once, or create the tables with `pgstate migrate`.',
          cause: error,
        });
      } finally {
        client.release();
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
      if ((error as { code?: string }).code === '23503') throw s3Errors.noSuchUpload(uploadId);
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
