/**
 * StorageDb.retryingTransaction against a real server: two REPEATABLE READ transactions that really collide
 * (serialization failure, classified by core's pgErrorKind) both end up applied after the loser's retry; a unique
 * violation is retried only when the caller asks (alsoRetry), and any other error is not retried.
 */
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { StorageDb } from '../src/db.js';
import { normalizeStorageConfig } from '../src/index.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let storage: StorageDb;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'ps_retry');
  storage = new StorageDb(normalizeStorageConfig({ type: 'pgstate', uri: db.url, sslmode: 'disable' }));
  await storage.query('CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)');
  await storage.query('INSERT INTO counter VALUES (1, 0)');
  await storage.query('CREATE TABLE once (id int PRIMARY KEY)');
});
afterAll(async () => {
  await storage?.pool.end();
  await db?.drop();
});

/** Resolves when `count` callers are waiting on it: makes two transactions read before either writes. */
function barrier(count: number): () => Promise<void> {
  let waiting = 0;
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return () => {
    if (++waiting === count) open();
    return opened;
  };
}

test('a serialization failure is retried until both increments are applied', async () => {
  const bothRead = barrier(2);
  const retried: string[] = [];
  const increment = () =>
    storage.retryingTransaction(
      async (client) => {
        const { rows } = await client.query<{ n: number }>('SELECT n FROM counter WHERE id = 1');
        await bothRead(); // open at once on a retry
        await client.query('UPDATE counter SET n = $1 WHERE id = 1', [(rows[0]?.n ?? 0) + 1]);
      },
      { onRetry: (error) => retried.push(String((error as { code?: string }).code)) },
    );
  await Promise.all([increment(), increment()]);
  expect(retried).toEqual(['40001']);
  expect((await storage.query<{ n: number }>('SELECT n FROM counter WHERE id = 1'))[0]?.n).toBe(2);
});

test('a unique violation is retried only with alsoRetry; other errors are not retried', async () => {
  let attempts = 0;
  await expect(
    storage.retryingTransaction(async (client) => {
      attempts++;
      await client.query('INSERT INTO once VALUES (1), (1)');
    }),
  ).rejects.toMatchObject({ code: '23505' });
  expect(attempts).toBe(1);

  attempts = 0;
  await storage.retryingTransaction(
    async (client) => {
      attempts++;
      await client.query(`INSERT INTO once VALUES (${attempts === 1 ? '1), (1' : '1'})`);
    },
    { alsoRetry: ['23505'] },
  );
  expect(attempts).toBe(2);

  attempts = 0;
  await expect(
    storage.retryingTransaction(async (client) => {
      attempts++;
      await client.query('SELECT 1/0');
    }),
  ).rejects.toMatchObject({ code: '22012' });
  expect(attempts).toBe(1);
});
