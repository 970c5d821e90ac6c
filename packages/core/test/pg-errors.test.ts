/**
 * pgErrorKind on errors a real server produces (never hand-built objects): serialization failures and deadlocks from
 * two real sessions, lock_timeout, read-only transactions, missing tables and columns, a role without rights, and a
 * terminated backend. Also when the server error is wrapped (a PgStateError from toPgStateError keeps it as cause).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  isRetryableTransactionError,
  isTransientError,
  type PgErrorKind,
  pgErrorKind,
  sqlStateOf,
  toPgStateError,
} from '../src/index.js';
import { createTestDatabase } from '../src/testing.js';
import { rejectionOf } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'pgerr');
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  await pool.query(`CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)`);
  await pool.query(`CREATE TABLE child (id int REFERENCES t (id))`);
  await pool.query(`INSERT INTO t (id) VALUES (1), (2)`);
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

async function twoSessions<T>(fn: (a: pg.PoolClient, b: pg.PoolClient) => Promise<T>): Promise<T> {
  const a = await pool.connect();
  const b = await pool.connect();
  try {
    return await fn(a, b);
  } finally {
    await a.query('ROLLBACK').catch(() => {});
    await b.query('ROLLBACK').catch(() => {});
    a.release();
    b.release();
  }
}

const expectKind = (error: unknown, kind: PgErrorKind) => expect(pgErrorKind(error)).toBe(kind);

describe('pgErrorKind', () => {
  test('serialization failure (40001) is retryable', async () => {
    const error = await twoSessions(async (a, b) => {
      await a.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await a.query('SELECT n FROM t WHERE id = 1');
      await b.query('UPDATE t SET n = n + 1 WHERE id = 1');
      return rejectionOf(a.query('UPDATE t SET n = n + 1 WHERE id = 1'));
    });
    expect(sqlStateOf(error)).toBe('40001');
    expectKind(error, 'serialization-failure');
    expect(isRetryableTransactionError(error)).toBe(true);
    expect(isTransientError(error)).toBe(true);
  });

  test('deadlock (40P01) is retryable', async () => {
    const error = await twoSessions(async (a, b) => {
      await a.query('BEGIN');
      await b.query('BEGIN');
      await a.query('UPDATE t SET n = n + 1 WHERE id = 1');
      await b.query('UPDATE t SET n = n + 1 WHERE id = 2');
      const first = a.query('UPDATE t SET n = n + 1 WHERE id = 2');
      const second = b.query('UPDATE t SET n = n + 1 WHERE id = 1');
      const results = await Promise.allSettled([first, second]);
      return results.find((r) => r.status === 'rejected')?.reason as unknown;
    });
    expectKind(error, 'deadlock');
    expect(isRetryableTransactionError(error)).toBe(true);
  });

  test('lock_timeout (55P03) is transient, not a transaction retry', async () => {
    const error = await twoSessions(async (a, b) => {
      await a.query('BEGIN');
      await a.query('SELECT 1 FROM t WHERE id = 1 FOR UPDATE');
      await b.query('BEGIN');
      await b.query(`SET LOCAL lock_timeout = 50`);
      return rejectionOf(b.query('SELECT 1 FROM t WHERE id = 1 FOR UPDATE'));
    });
    expectKind(error, 'lock-not-available');
    expect(isRetryableTransactionError(error)).toBe(false);
    expect(isTransientError(error)).toBe(true);
  });

  test('a write in a read-only transaction (25006)', async () => {
    const error = await twoSessions(async (a) => {
      await a.query('BEGIN READ ONLY');
      return rejectionOf(a.query('UPDATE t SET n = 0'));
    });
    expectKind(error, 'read-only-transaction');
    expect(isTransientError(error)).toBe(true);
  });

  test('statement_timeout (57014)', async () => {
    const error = await twoSessions(async (a) => {
      await a.query('BEGIN');
      await a.query(`SET LOCAL statement_timeout = 20`);
      return rejectionOf(a.query('SELECT pg_sleep(5)'));
    });
    expectKind(error, 'query-canceled');
    expect(isTransientError(error)).toBe(false);
  });

  test('constraint violations, missing objects: permanent', async () => {
    const cases: Array<[string, PgErrorKind]> = [
      ['INSERT INTO t (id) VALUES (1)', 'unique-violation'],
      ['INSERT INTO child VALUES (99)', 'foreign-key-violation'],
      ['SELECT * FROM no_such_table', 'undefined-table'],
      ['SELECT no_such_column FROM t', 'undefined-column'],
      ['SELECT 1/0', 'other'],
    ];
    for (const [sql, kind] of cases) {
      const error = await rejectionOf(pool.query(sql));
      expect(error, sql).toBeInstanceOf(pg.DatabaseError);
      expectKind(error, kind);
      expect(isTransientError(error), sql).toBe(false);
      expect(isRetryableTransactionError(error), sql).toBe(false);
    }
  });

  test('insufficient privilege (42501), also inside the PgStateError toPgStateError makes of it', async () => {
    const role = `pgerr_${process.pid}`;
    await pool.query(`CREATE ROLE ${role}`);
    try {
      const error = await twoSessions(async (a) => {
        await a.query('BEGIN');
        await a.query(`SET LOCAL ROLE ${role}`);
        return rejectionOf(a.query('SELECT * FROM t'));
      });
      expectKind(error, 'insufficient-privilege');
      const wrapped = toPgStateError(error);
      expect(wrapped.code).toBe('PERMISSION_DENIED');
      expect(sqlStateOf(wrapped)).toBe('42501');
      expectKind(wrapped, 'insufficient-privilege');
    } finally {
      await pool.query(`DROP ROLE ${role}`);
    }
  });

  test('a terminated backend is connection-lost (and transient); Node socket codes are no SQLSTATE', async () => {
    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => {});
    await client.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    const error = await rejectionOf(client.query('SELECT 1'));
    await client.end().catch(() => {});
    expectKind(error, 'connection-lost');
    expect(isTransientError(error)).toBe(true);
    expect(isRetryableTransactionError(error)).toBe(false);
    const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    expect(sqlStateOf(epipe)).toBeUndefined();
    expect(pgErrorKind(new Error('plain'))).toBe('other');
    expect(pgErrorKind(undefined)).toBe('other');
  });
});
