/**
 * Test-only bucket handler over one real PostgreSQL table, so gateway tests do not depend on an adapter. Keys sort
 * in byte order (COLLATE "C"); writes are single statements (atomic); conditions are checked in the same statement.
 */
import { createHash } from 'node:crypto';
import type { BucketHandler, ListRequest, ListResult, ObjectInfo } from '@pgstate/core';
import { PgStateError } from '@pgstate/core';
import pg from 'pg';

interface Row {
  key: string;
  size: number;
  etag: string;
  updated_at: Date;
}

const info = (r: Row): ObjectInfo => ({ key: r.key, size: Number(r.size), etag: r.etag, lastModified: r.updated_at });

export async function createTableHandler(url: string, table = 'objects'): Promise<BucketHandler & { pool: pg.Pool }> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => {});
  const t = `"${table}"`;
  await pool.query(`CREATE TABLE IF NOT EXISTS ${t} (
    key text COLLATE "C" PRIMARY KEY, data bytea NOT NULL, etag text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
  const cols = 'key, length(data) AS size, etag, updated_at';
  return {
    kind: 'test-table',
    pool,
    async getObject(key, range) {
      const r = await pool.query<Row & { data: Buffer }>(`SELECT ${cols}, data FROM ${t} WHERE key = $1`, [key]);
      const row = r.rows[0];
      if (!row) return null;
      const body = range
        ? row.data.subarray(range.start, range.end === undefined ? undefined : range.end + 1)
        : row.data;
      return { info: info(row), body };
    },
    async headObject(key) {
      const r = await pool.query<Row>(`SELECT ${cols} FROM ${t} WHERE key = $1`, [key]);
      return r.rows[0] ? info(r.rows[0]) : null;
    },
    async putObject(key, body, conditions) {
      if (key.length === 0) throw new PgStateError('INVALID_INPUT', 'empty key');
      const etag = createHash('md5').update(body).digest('hex');
      let r: pg.QueryResult<Row>;
      if (conditions?.ifNoneMatch) {
        r = await pool.query(
          `INSERT INTO ${t} (key, data, etag) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING RETURNING ${cols}`,
          [key, Buffer.from(body), etag],
        );
      } else if (conditions?.ifMatch) {
        r = await pool.query(
          `UPDATE ${t} SET data = $2, etag = $3, updated_at = now() WHERE key = $1 AND etag = $4 RETURNING ${cols}`,
          [key, Buffer.from(body), etag, conditions.ifMatch],
        );
      } else {
        r = await pool.query(
          `INSERT INTO ${t} (key, data, etag) VALUES ($1, $2, $3)
           ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, etag = EXCLUDED.etag, updated_at = now() RETURNING ${cols}`,
          [key, Buffer.from(body), etag],
        );
      }
      if (!r.rows[0]) throw new PgStateError('PRECONDITION_FAILED', 'condition failed');
      return info(r.rows[0]);
    },
    async copyObject(source, destination) {
      const r = await pool.query<Row>(
        `INSERT INTO ${t} (key, data, etag) SELECT $2, data, etag FROM ${t} WHERE key = $1
         ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, etag = EXCLUDED.etag, updated_at = now() RETURNING ${cols}`,
        [source, destination],
      );
      return r.rows[0] ? info(r.rows[0]) : null;
    },
    async deleteObject(key) {
      const r = await pool.query(`DELETE FROM ${t} WHERE key = $1`, [key]);
      return r.rowCount === 1;
    },
    async listObjects(request: ListRequest): Promise<ListResult> {
      const prefix = request.prefix ?? '';
      const objects: ObjectInfo[] = [];
      const commonPrefixes: string[] = [];
      let after = request.startAfter ?? '';
      let last: string | undefined;
      // Walk keys in byte order; a delimiter collapses a run of keys into one common prefix, skipped past at once.
      while (objects.length + commonPrefixes.length < request.maxKeys) {
        const r = await pool.query<Row>(
          `SELECT ${cols} FROM ${t} WHERE key > $1 AND left(key, length($2)) = $2 ORDER BY key LIMIT 1`,
          [after, prefix],
        );
        const row = r.rows[0];
        if (!row) return { objects, commonPrefixes, isTruncated: false };
        const rest = row.key.slice(prefix.length);
        const cut = request.delimiter ? rest.indexOf(request.delimiter) : -1;
        if (cut >= 0) {
          const common = prefix + rest.slice(0, cut + request.delimiter!.length);
          commonPrefixes.push(common);
          after = `${common}\u{10ffff}`;
          last = after;
        } else {
          objects.push(info(row));
          last = row.key;
          after = row.key;
        }
      }
      const more = await pool.query(`SELECT 1 FROM ${t} WHERE key > $1 AND left(key, length($2)) = $2 LIMIT 1`, [
        after,
        prefix,
      ]);
      return { objects, commonPrefixes, isTruncated: (more.rowCount ?? 0) > 0, nextStartAfter: last };
    },
    async close() {
      await pool.end();
    },
  };
}
