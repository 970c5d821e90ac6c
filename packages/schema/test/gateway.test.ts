import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrate, migrationStatus, runtimeAccessSql } from '../src/index.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'schema_gateway');
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on('connect', (c) => c.on('error', () => {}));
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

async function foreignKeys(schema: string): Promise<string[]> {
  const { rows } = await pool.query<{ conname: string }>(
    `SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = to_regclass($1) ORDER BY conname`,
    [`"${schema}"."pgstate_s3_upload_parts"`],
  );
  return rows.map((r) => r.conname);
}

describe('the gateway migration set', () => {
  it('creates the multipart tables (parts cascade with their upload) and journals them as gateway:<schema>', async () => {
    const dry = await migrate(pool, { adapter: 'gateway', schema: 'gw_fresh' }, { dryRun: true });
    expect(dry.sql).toContain('CREATE TABLE IF NOT EXISTS "gw_fresh"."pgstate_s3_uploads"');
    expect(dry.sql).toContain('"pgstate_s3_upload_parts_upload_id_fkey"');
    const result = await migrate(pool, { adapter: 'gateway', schema: 'gw_fresh' });
    expect(result.applied.map((m) => `${m.config} ${m.migration}`)).toContain('gateway:gw_fresh 0000_init');
    expect(await foreignKeys('gw_fresh')).toEqual(['pgstate_s3_upload_parts_upload_id_fkey']);
    await pool.query(`INSERT INTO gw_fresh.pgstate_s3_uploads (upload_id, bucket, key) VALUES ('u1', 'b', 'k')`);
    await pool.query(
      `INSERT INTO gw_fresh.pgstate_s3_upload_parts (upload_id, part_number, etag, size, data) VALUES ('u1', 1, 'e', 1, '\\x00')`,
    );
    await pool.query(`DELETE FROM gw_fresh.pgstate_s3_uploads WHERE upload_id = 'u1'`);
    expect((await pool.query('SELECT count(*)::int AS n FROM gw_fresh.pgstate_s3_upload_parts')).rows[0].n).toBe(0);
    expect((await migrationStatus(pool, { adapter: 'gateway', schema: 'gw_fresh' })).upToDate).toBe(true);
  });

  it('adopts the tables a gateway created with its former inline DDL, keeping uploads in flight', async () => {
    // Exactly what @pgstate/s3-gateway 0.1.0 created on first multipart use (unqualified, in the session's schema).
    const client = await pool.connect();
    try {
      await client.query('CREATE SCHEMA gw_old');
      await client.query('SET search_path = gw_old');
      await client.query(`CREATE TABLE IF NOT EXISTS pgstate_s3_uploads (
          upload_id text PRIMARY KEY,
          bucket text NOT NULL,
          key text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        )`);
      await client.query(`CREATE TABLE IF NOT EXISTS pgstate_s3_upload_parts (
          upload_id text NOT NULL REFERENCES pgstate_s3_uploads (upload_id) ON DELETE CASCADE,
          part_number integer NOT NULL,
          etag text NOT NULL,
          size bigint NOT NULL,
          data bytea NOT NULL,
          uploaded_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (upload_id, part_number)
        )`);
      await client.query(`INSERT INTO pgstate_s3_uploads (upload_id, bucket, key) VALUES ('inflight', 'b', 'big')`);
      await client.query(
        `INSERT INTO pgstate_s3_upload_parts (upload_id, part_number, etag, size, data) VALUES ('inflight', 1, 'e', 3, '\\x616263')`,
      );
    } finally {
      await client.query('RESET search_path');
      client.release();
    }
    const before = await migrationStatus(pool, { adapter: 'gateway', schema: 'gw_old' });
    expect(before.configs.at(-1)?.pending).toEqual(['0000_init']);
    const result = await migrate(pool, { adapter: 'gateway', schema: 'gw_old' });
    expect(result.applied.map((m) => `${m.config} ${m.migration}`)).toContain('gateway:gw_old 0000_init');
    expect(await foreignKeys('gw_old')).toEqual(['pgstate_s3_upload_parts_upload_id_fkey']);
    const { rows } = await pool.query(
      `SELECT u.key, encode(p.data, 'escape') AS data FROM gw_old.pgstate_s3_uploads u
       JOIN gw_old.pgstate_s3_upload_parts p USING (upload_id)`,
    );
    expect(rows).toEqual([{ key: 'big', data: 'abc' }]);
    const after = await migrationStatus(pool, { adapter: 'gateway', schema: 'gw_old' });
    expect([after.upToDate, after.configs.at(-1)?.shape]).toEqual([true, []]);
  });

  it('the runtime role helper covers both tables', () => {
    expect(runtimeAccessSql({ adapter: 'gateway' }, 'app_rt')).toEqual([
      'GRANT USAGE ON SCHEMA "pgstate" TO "app_rt"',
      'GRANT SELECT ON TABLE "pgstate"."migrations" TO "app_rt"',
      'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "pgstate"."leases" TO "app_rt"',
      'GRANT USAGE ON SCHEMA "public" TO "app_rt"',
      'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."pgstate_s3_uploads" TO "app_rt"',
      'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."pgstate_s3_upload_parts" TO "app_rt"',
    ]);
  });
});
