// `createPool`'s pool.query when the statement's connection is cut (a failover, a restart, a terminated backend): a
// typed, retryable UNREACHABLE PgStateError without the password; a server error on a healthy connection stays pg's.
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { createPool, isConnectionLoss, isPgStateError, parseConnectionSettings } from '../src/index.js';
import { createTestDatabase } from '../src/testing.js';
import { rejectionOf } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;
let admin: pg.Client;
beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'pool_loss');
  pool = createPool(parseConnectionSettings(`${db.url}&application_name=pool-loss-victim`, { env: {} }));
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
});
afterAll(async () => {
  await pool?.end();
  await admin?.end();
  await db?.drop();
});

test('a pool.query whose connection is cut rejects with UNREACHABLE; the next one works', async () => {
  const pending = rejectionOf(pool.query('SELECT pg_sleep(30)'));
  for (let i = 0; i < 200; i++) {
    const { rowCount } = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'pool-loss-victim' AND state = 'active' AND query LIKE '%pg_sleep(30)%'`,
    );
    if (rowCount) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const error = await pending;
  expect(isPgStateError(error, 'UNREACHABLE'), String(error)).toBe(true);
  expect(isConnectionLoss(error)).toBe(true);
  expect(String(error)).not.toContain(decodeURIComponent(new URL(db.url).password));
  expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
});

test('a server error on a healthy connection is left as pg reports it (its SQLSTATE readable)', async () => {
  const error = await rejectionOf(pool.query('SELECT 1/0'));
  expect(error).toBeInstanceOf(pg.DatabaseError);
  expect(error).toMatchObject({ code: '22012' });
});
