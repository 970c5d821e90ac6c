/**
 * A write that failed must stay unwritten even when its ROLLBACK failed too. Produced for real: the caller's pool has
 * pg's client-side `query_timeout`, the write blocks on a row another session holds, so the write and then the
 * ROLLBACK queued behind it time out on the client while the server still runs the transaction. Such a connection
 * must be destroyed: returned to the pool (as the store once did), the next write on it ran inside the abandoned
 * transaction and its COMMIT committed the write the first caller was told had failed.
 */
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { type JsonObject, MeltanoStateStore } from '../src/index.js';
import { LAYOUTS, openStore } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'meltano_rollback');
});
afterAll(async () => {
  await db?.drop();
});

const S = (bookmarks: JsonObject): JsonObject => ({ singer_state: { bookmarks } });

test.each(LAYOUTS)('%s: a failed delete whose ROLLBACK failed is never committed by a later write', async (layout) => {
  const setup = await openStore(db.url, layout);
  await setup.set('a', S({ v: 'old' }));
  await setup.close();

  const pool = new pg.Pool({ connectionString: db.url, max: 1, query_timeout: 300 });
  const store = new MeltanoStateStore({ pool, layout, schema: `mel_${layout}` });
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  try {
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM ${store.config.stateTable} WHERE state_id = 'a' FOR UPDATE`);
    // The delete (a locked write, in a transaction) blocks on the held row; it and the ROLLBACK after it time out
    // on the client.
    await expect(store.clear('a')).rejects.toThrow(/timeout/);
    await holder.query('COMMIT');
    // The next writes through the same pool (max 1 connection).
    expect(await store.clear('c')).toBe(false);
    await store.set('b', S({ v: 'later' }));
    const read = new MeltanoStateStore({ url: db.url, layout, schema: `mel_${layout}` });
    try {
      expect((await read.get('a'))?.completed).toEqual(S({ v: 'old' }));
      expect((await read.get('b'))?.completed).toEqual(S({ v: 'later' }));
    } finally {
      await read.close();
    }
  } finally {
    await holder.end();
    await store.close();
    await pool.end();
  }
});
