/**
 * toS3Error on server errors a real PostgreSQL produces (core's pgErrorKind decides): what may pass on a retry is a
 * 503 ServiceUnavailable (a lost race, a busy lock, a read-only server), a missing table a 500 that says to migrate,
 * anything else a bare 500 without details.
 */
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { toS3Error } from '../src/errors.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 's3_errors');
  pool = new pg.Pool({ connectionString: db.url, max: 3 });
  await pool.query('CREATE TABLE t (id int PRIMARY KEY)');
  await pool.query('INSERT INTO t VALUES (1)');
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

async function failure(steps: (c: pg.PoolClient, other: pg.PoolClient) => Promise<unknown>): Promise<unknown> {
  const c = await pool.connect();
  const other = await pool.connect();
  try {
    await steps(c, other);
  } catch (error) {
    return error;
  } finally {
    await c.query('ROLLBACK').catch(() => {});
    await other.query('ROLLBACK').catch(() => {});
    c.release();
    other.release();
  }
  throw new Error('expected the statement to fail');
}

test('a serialization failure, a lock timeout and a read-only transaction are 503 ServiceUnavailable', async () => {
  const serialization = await failure(async (c, other) => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await c.query('SELECT * FROM t');
    await other.query('UPDATE t SET id = id WHERE id = 1');
    await c.query('UPDATE t SET id = id WHERE id = 1');
  });
  const lockTimeout = await failure(async (c, other) => {
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM t WHERE id = 1 FOR UPDATE');
    await c.query('BEGIN');
    await c.query('SET LOCAL lock_timeout = 50');
    await c.query('SELECT 1 FROM t WHERE id = 1 FOR UPDATE');
  });
  const readOnly = await failure(async (c) => {
    await c.query('BEGIN READ ONLY');
    await c.query('DELETE FROM t');
  });
  for (const error of [serialization, lockTimeout, readOnly]) {
    expect(error).toBeInstanceOf(pg.DatabaseError);
    expect(toS3Error(error)).toMatchObject({ status: 503, code: 'ServiceUnavailable' });
  }
});

test('a missing table is a 500 that says to migrate; other server errors a bare 500', async () => {
  const missing = await failure((c) => c.query('SELECT * FROM no_such_table'));
  expect(toS3Error(missing)).toMatchObject({ status: 500, code: 'InternalError' });
  expect(toS3Error(missing).message).toMatch(/pgstate migrate/);
  const duplicate = await failure((c) => c.query('INSERT INTO t VALUES (1)'));
  expect(toS3Error(duplicate)).toMatchObject({ status: 500, code: 'InternalError' });
  expect(toS3Error(duplicate).message).not.toMatch(/t_pkey|duplicate/);
});
