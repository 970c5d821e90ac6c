import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { acquireAdvisoryLock, advisoryLockKey, createPool, parseConnectionSettings } from '../src/index.js';
import { createTestDatabase } from '../src/testing.js';
import { rejectionOf } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'advisory');
});
afterAll(async () => {
  await db?.drop();
});

test("advisoryLockKey matches Meltano's MD5 -> signed int64 keys", () => {
  expect(advisoryLockKey('dev:tap-github-to-target-postgres')).toBe(2128584585411889108n);
  expect(advisoryLockKey('lock_test_job')).toBe(-8280139718495167346n);
});

test('a session advisory lock excludes other connections until released', async () => {
  const settings = parseConnectionSettings(db.url);
  const key = advisoryLockKey('lock_test_job');
  const pool = createPool(settings);
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  try {
    const held = await acquireAdvisoryLock(pool, key);
    // Another session (as the Python plugin would do) cannot take it...
    const tried = await other.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key.toString()]);
    expect(tried.rows[0]?.ok).toBe(false);
    // ...nor can a second pgstate lock, which times out with LOCK_TIMEOUT.
    const error = await rejectionOf(acquireAdvisoryLock(settings, key, { timeoutMs: 300, retryMs: 50 }));
    expect(error).toMatchObject({ code: 'LOCK_TIMEOUT' });
    // The lock lives on its own connection, not on a pooled one.
    const holders = await other.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
    );
    expect(holders.rows[0]?.n).toBe(1);
    await held.release();
    const after = await other.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key.toString()]);
    expect(after.rows[0]?.ok).toBe(true);
    await other.query('SELECT pg_advisory_unlock($1::bigint)', [key.toString()]);
    // `await using` style disposal releases too.
    {
      const lock = await acquireAdvisoryLock(settings, key);
      await lock[Symbol.asyncDispose]();
    }
    const again = await acquireAdvisoryLock(settings, key, { timeoutMs: 0 });
    await again.release();
  } finally {
    await other.end();
    await pool.end();
  }
});

test('a waiting lock gets it once the holder lets go', async () => {
  const settings = parseConnectionSettings(db.url);
  const key = 42n;
  const first = await acquireAdvisoryLock(settings, key);
  const second = acquireAdvisoryLock(settings, key, { timeoutMs: 30_000, retryMs: 50 });
  await new Promise((r) => setTimeout(r, 200));
  await first.release();
  const got = await second;
  expect(got.key).toBe(42n);
  await got.release();
});

test('keys outside int64 are rejected', async () => {
  const error = await rejectionOf(acquireAdvisoryLock(parseConnectionSettings(db.url), 2n ** 63n));
  expect(error).toMatchObject({ code: 'INVALID_INPUT' });
});
