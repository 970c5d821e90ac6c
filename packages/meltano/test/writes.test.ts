/**
 * Writes without a held lock take no lock of their own when the state is free: `set` is one guarded statement and
 * `merge` a conditional write on the row version (reading first only when this store did not write that version).
 * These tests pin what that must never break: a live lock of anyone (pgstate, Python, a lock file) still stops
 * them, and a merge never loses what another writer wrote in between.
 */
import { advisoryLockKey, isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { JsonObject, MeltanoStateStore } from '../src/index.js';
import { LAYOUTS, openStore } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'meltano_writes');
  sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
});
afterAll(async () => {
  await sql?.end();
  await db?.drop();
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isPgStateError(error), `expected PgStateError ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: string }).code).toBe(code);
}

const S = (bookmarks: JsonObject): JsonObject => ({ singer_state: { bookmarks } });

describe.each(LAYOUTS)('%s layout', (layout) => {
  let a: MeltanoStateStore;
  let b: MeltanoStateStore;
  let impatient: MeltanoStateStore;
  const table = layout === 'pgstate' ? `mel_${layout}.meltano_state` : `mel_${layout}.state`;
  const row = async (id: string) =>
    (
      await sql.query<{ partial_state: string | null; completed_state: string | null }>(
        `SELECT partial_state, completed_state FROM ${table} WHERE state_id = $1`,
        [id],
      )
    ).rows[0];

  beforeAll(async () => {
    a = await openStore(db.url, layout, { lockWaitSeconds: 0.4, lockRetrySeconds: 0.05 });
    b = await openStore(db.url, layout);
    impatient = await openStore(db.url, layout, { lockWaitSeconds: 0.4, lockRetrySeconds: 0.05 });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), impatient?.close()]);
  });

  test('a merge after another writer changed the row builds on that change (no stale read, no lost key)', async () => {
    const id = 'dev:interleaved';
    await a.merge(id, S({ a: 1 })); // a now knows the row version it wrote
    await b.merge(id, S({ b: 1 })); // another store (another process) writes in between
    await a.merge(id, S({ c: 1 })); // must not write {a, c} over {a, b}
    expect((await a.get(id))?.partial).toEqual(S({ a: 1, b: 1, c: 1 }));
    // A writer that is not pgstate at all (plain SQL), then a set (partial cleared) from the other store.
    await sql.query(`UPDATE ${table} SET partial_state = $2 WHERE state_id = $1`, [
      id,
      '{"singer_state": {"bookmarks": {"sql": 1}}}',
    ]);
    await a.merge(id, S({ d: 1 }));
    expect((await a.get(id))?.partial).toEqual(S({ sql: 1, d: 1 }));
    await b.set(id, S({ done: true }));
    await a.merge(id, S({ e: 1 }));
    expect(await a.get(id)).toMatchObject({ completed: S({ done: true }), partial: S({ e: 1 }) });
    // Deleted behind its back: the next merge starts a new row.
    await sql.query(`DELETE FROM ${table} WHERE state_id = $1`, [id]);
    await a.merge(id, S({ f: 1 }));
    expect(await a.get(id)).toMatchObject({ completed: {}, partial: S({ f: 1 }) });
  });

  test('merge keeps the stored completed part as it is (even text Python wrote differently)', async () => {
    const id = 'dev:keep-completed';
    const pythonText = '{"singer_state": {"bookmarks": {"t": {"v": 1.0, "at": "2024"}}}}';
    await sql.query(`INSERT INTO ${table} (state_id, completed_state, updated_at) VALUES ($1, $2, now())`, [
      id,
      pythonText,
    ]);
    await a.merge(id, S({ u: 2 }));
    await a.merge(id, S({ w: 3 }));
    expect((await row(id))?.completed_state).toBe(pythonText);
    expect((await row(id))?.partial_state).toBe('{"singer_state": {"bookmarks": {"u": 2, "w": 3}}}');
  });

  test('a merge onto a stored part that is not JSON fails and writes nothing', async () => {
    const id = 'dev:corrupt';
    await sql.query(`INSERT INTO ${table} (state_id, completed_state, updated_at) VALUES ($1, '{oops', now())`, [id]);
    await expectCode(a.merge(id, S({ x: 1 })), 'INVALID_INPUT');
    expect(await row(id)).toEqual({ partial_state: null, completed_state: '{oops' });
  });

  test("set and merge wait for another holder's lock and give up with LOCK_TIMEOUT, writing nothing", async () => {
    const id = 'dev:held-elsewhere';
    await a.set(id, S({ before: 1 }));
    await a.merge(id, S({ p: 1 }));
    const before = await row(id);
    {
      await using _lock = await b.acquireLock(id);
      await expectCode(impatient.set(id, S({ other: 1 })), 'LOCK_TIMEOUT');
      await expectCode(impatient.merge(id, S({ other: 1 })), 'LOCK_TIMEOUT');
      await expectCode(a.merge(id, S({ other: 1 })), 'LOCK_TIMEOUT'); // a knows the row version: still refused
      expect(await row(id)).toEqual(before);
    }
    await impatient.set(id, S({ after: 1 }));
    expect((await a.get(id))?.merged).toEqual(S({ after: 1 }));
  });

  if (layout === 'pgstate') {
    test('seed: a lock row of the Python plugin or of a Meltano lock file stops set and merge; a new id too', async () => {
      for (const lockId of ['python-uuid4', 's3:1700000000.5']) {
        const id = `dev:foreign-${lockId}`;
        await a.set(id, S({ v: 0 }));
        await sql.query(
          `INSERT INTO mel_pgstate.meltano_state_locks (state_id, locked_at, lock_id) VALUES ($1, LOCALTIMESTAMP, $2)`,
          [id, lockId],
        );
        await expectCode(impatient.set(id, S({ v: 1 })), 'LOCK_TIMEOUT');
        await expectCode(a.merge(id, S({ v: 1 })), 'LOCK_TIMEOUT');
        expect((await a.get(id))?.merged).toEqual(S({ v: 0 }));
        await sql.query('DELETE FROM mel_pgstate.meltano_state_locks WHERE state_id = $1', [id]);
        await a.merge(id, S({ v: 2 }));
        expect((await a.get(id))?.merged).toEqual(S({ v: 2 }));
      }
      await sql.query(
        `INSERT INTO mel_pgstate.meltano_state_locks (state_id, locked_at, lock_id) VALUES ('dev:fresh', LOCALTIMESTAMP, 'x')`,
      );
      await expectCode(impatient.merge('dev:fresh', S({ v: 1 })), 'LOCK_TIMEOUT');
      await expectCode(impatient.set('dev:fresh', S({ v: 1 })), 'LOCK_TIMEOUT');
      expect(await a.get('dev:fresh')).toBeNull();
      await sql.query(`DELETE FROM mel_pgstate.meltano_state_locks WHERE state_id = 'dev:fresh'`);
    });
  } else {
    test(`${layout}: a Python writer's session advisory lock stops set and merge until released`, async () => {
      const id = 'dev:python-holds';
      const key = advisoryLockKey(id).toString();
      await a.set(id, S({ v: 0 }));
      await a.merge(id, S({ p: 0 }));
      await sql.query('SELECT pg_advisory_lock($1::int8)', [key]);
      try {
        await expectCode(impatient.set(id, S({ v: 1 })), 'LOCK_TIMEOUT');
        await expectCode(a.merge(id, S({ v: 1 })), 'LOCK_TIMEOUT');
        expect((await a.get(id))?.merged).toEqual(S({ v: 0, p: 0 }));
      } finally {
        await sql.query('SELECT pg_advisory_unlock($1::int8)', [key]);
      }
      await a.merge(id, S({ v: 1 }));
      expect((await a.get(id))?.merged).toEqual(S({ v: 1, p: 0 }));
    });
  }
});
