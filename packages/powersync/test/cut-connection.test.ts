// A connection cut while a statement runs (what a failover or a restart does to the storage's pool): the caller gets
// a typed, retryable UNREACHABLE PgStateError without the password, not pg's bare "Connection terminated unexpectedly".
import { isConnectionLoss, isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { normalizeStorageConfig, PgStateBucketStorageFactory } from '../src/index.js';

let url: string;
let drop: () => Promise<void>;
let admin: pg.Pool;
let factory: PgStateBucketStorageFactory;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_cut');
  url = db.url;
  drop = db.drop;
  admin = new pg.Pool({ connectionString: url, max: 1 });
  factory = new PgStateBucketStorageFactory({
    config: normalizeStorageConfig({ type: 'pgstate', uri: url, sslmode: 'disable', schema: 'ps_cut' }),
  });
});
afterAll(async () => {
  await factory?.[Symbol.asyncDispose]();
  await admin?.end();
  await drop?.();
});

/** Runs `statement` and terminates its backend once it is running; returns what the statement rejected with. */
async function cutWhileRunning(statement: () => Promise<unknown>): Promise<unknown> {
  const outcome = statement().then(
    () => new Error('the statement was not cut'),
    (error: unknown) => error,
  );
  for (let i = 0; i < 200; i++) {
    const { rows } = await admin.query<{ n: string }>(
      `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep(30)%'`,
    );
    if (Number(rows[0]?.n) > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return outcome;
}

test.each([
  ['a query', () => factory.db.query('SELECT pg_sleep(30)')],
  ['a transaction', () => factory.db.transaction((client) => client.query('SELECT pg_sleep(30)'))],
])('%s whose connection is cut rejects with a retryable UNREACHABLE PgStateError', async (_name, statement) => {
  const error = await cutWhileRunning(statement);
  expect(isPgStateError(error, 'UNREACHABLE'), String(error)).toBe(true);
  expect(isConnectionLoss(error)).toBe(true);
  expect(String(error)).not.toContain(decodeURIComponent(new URL(url).password));
  // The pool replaces the cut connection: the next statement works.
  expect(await factory.db.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
});
