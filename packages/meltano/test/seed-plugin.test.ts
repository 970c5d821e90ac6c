/**
 * pgstate beside the Python seed plugin (`meltano_state` + `meltano_state_locks`), driven step by step with the
 * plugin's SQL protocol (from reading its source): autocommit INSERT of a lock row, SELECT the state, upsert it,
 * DELETE its own lock row, DELETE rows older than 5 minutes by `locked_at`. Each interleaving is forced, not timed.
 */
import { isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, test } from 'vitest';
import type { JsonObject, MeltanoStateStore } from '../src/index.js';
import { openStore } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Client;
let store: MeltanoStateStore;
const STATE = 'mel_pgstate.meltano_state';
const LOCKS = 'mel_pgstate.meltano_state_locks';
const S = (bookmarks: JsonObject): JsonObject => ({ singer_state: { bookmarks } });

/** A Python seed-plugin session: autocommit, in the given session time zone. */
async function pythonSession(timeZone: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url, options: `-c TimeZone=${timeZone}` });
  await client.connect();
  return client;
}

/** The plugin's `update` for a partial state, split at its steps so a test can run others in between. */
function pythonUpdate(session: pg.Client, stateId: string, partial: JsonObject) {
  const lockId = `py-${Math.random()}`;
  let current: Record<string, unknown> = {};
  let completed: string | null = null;
  return {
    lock: () => session.query(`INSERT INTO ${LOCKS} (state_id, lock_id) VALUES ($1, $2)`, [stateId, lockId]),
    read: async () => {
      const { rows } = await session.query(`SELECT partial_state, completed_state FROM ${STATE} WHERE state_id = $1`, [
        stateId,
      ]);
      current = rows[0]?.partial_state ? JSON.parse(rows[0].partial_state) : {};
      completed = rows[0]?.completed_state ?? null;
    },
    write: async () => {
      const singer = { ...((current.singer_state as JsonObject) ?? {}) };
      const bookmarks = {
        ...((singer.bookmarks as JsonObject) ?? {}),
        ...(((partial.singer_state as JsonObject).bookmarks as JsonObject) ?? {}),
      };
      const merged = { ...current, singer_state: { ...singer, bookmarks } };
      await session.query(
        `INSERT INTO ${STATE} (state_id, partial_state, completed_state) VALUES ($1, $2, $3)
         ON CONFLICT (state_id) DO UPDATE SET partial_state = EXCLUDED.partial_state,
           completed_state = EXCLUDED.completed_state, updated_at = CURRENT_TIMESTAMP`,
        [stateId, JSON.stringify(merged), completed],
      );
    },
    release: async () => {
      await session.query(`DELETE FROM ${LOCKS} WHERE state_id = $1 AND lock_id = $2`, [stateId, lockId]);
      await session.query(`DELETE FROM ${LOCKS} WHERE locked_at < CURRENT_TIMESTAMP - INTERVAL '5 minutes'`);
    },
  };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isPgStateError(error), `expected PgStateError ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: string }).code).toBe(code);
}

const bookmarks = async (id: string) =>
  Object.keys(((await store.get(id))?.merged.singer_state as JsonObject | undefined)?.bookmarks ?? {}).sort();

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'meltano_seed_plugin');
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  store = await openStore(db.url, 'pgstate', { lockWaitSeconds: 0.5, lockRetrySeconds: 0.05 });
});
afterAll(async () => {
  await store?.close();
  await admin?.end();
  await db?.drop();
});
beforeEach(async () => {
  await admin.query(`TRUNCATE ${STATE}, ${LOCKS}`);
});

describe('writes exclude a Python holder', () => {
  test.each(['first merge', 'repeated merge', 'set'])(
    '%s: a holder that locks and reads while the write is under way cannot overwrite it',
    async (kind) => {
      const id = 'dev:race';
      await store.set(id, S({ base: 1 }));
      if (kind === 'repeated merge') await store.merge(id, S({ warm: 1 })); // the store now skips its read
      const python = await pythonSession('UTC');
      const blocker = await pythonSession('UTC');
      try {
        // Hold the state row so pgstate's write statement starts (takes its snapshot) and then waits.
        await blocker.query('BEGIN');
        await blocker.query(`SELECT 1 FROM ${STATE} WHERE state_id = $1 FOR UPDATE`, [id]);
        const write =
          kind === 'set' ? store.set(id, S({ pgstate: 1 })) : store.merge(id, S({ pgstate: 1 }), { validate: true });
        await waitForBlocked(blocker);
        const py = pythonUpdate(python, id, S({ python: 1 }));
        // The plugin's lock INSERT either succeeds now (pgstate has not taken the lock yet) or waits for pgstate's
        // transaction; both are fine, what matters is that its update and pgstate's both survive.
        let readDone = false;
        const pyRead = (async () => {
          await py.lock();
          await py.read();
        })().finally(() => {
          readDone = true;
        });
        await waitUntilWaiting(python, () => readDone);
        await blocker.query('COMMIT');
        await pyRead;
        await py.write();
        await py.release();
        await write;
        const keys = await bookmarks(id);
        expect(keys).toContain('python');
        if (kind !== 'set') expect(keys).toContain('pgstate');
        else {
          // A set replaces the row: either order is fine, but Python's merge must then build on pgstate's set.
          const merged = (await store.get(id))?.merged;
          expect(JSON.stringify(merged)).toMatch(/pgstate/);
        }
      } finally {
        await blocker.query('ROLLBACK').catch(() => {});
        await python.end();
        await blocker.end();
      }
    },
  );
});

/** Waits until `session`'s backend waits for a lock, or `done()`. */
async function waitUntilWaiting(session: pg.Client, done: () => boolean): Promise<void> {
  const pid = (session as unknown as { processID: number }).processID;
  while (!done()) {
    const { rowCount } = await admin.query(
      "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
      [pid],
    );
    if (rowCount) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until some other backend waits on a lock held by `blocker`. */
async function waitForBlocked(blocker: pg.Client): Promise<void> {
  const { rows } = await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  for (let i = 0; i < 500; i++) {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [
      rows[0]!.pid,
    ]);
    if (rowCount) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the pgstate write never waited on the blocker');
}

describe('stale Python lock rows, whatever the session time zones', () => {
  test.each(['America/New_York', 'UTC', 'Asia/Tokyo', 'Pacific/Kiritimati', 'Etc/GMT+12'])(
    'a live lock row written by a %s session is respected',
    async (timeZone) => {
      const python = await pythonSession(timeZone);
      try {
        await pythonUpdate(python, 'dev:tz', S({})).lock();
        await expectCode(store.merge('dev:tz', S({ pgstate: 1 })), 'LOCK_TIMEOUT');
        await expectCode(store.set('dev:tz', S({ pgstate: 1 })), 'LOCK_TIMEOUT');
        await expectCode(store.clear('dev:tz'), 'LOCK_TIMEOUT');
        expect(await store.get('dev:tz')).toBeNull();
      } finally {
        await python.end();
      }
    },
  );

  test("a dead holder's row is free 5 minutes after it was written (server clock), whatever its time zone", async () => {
    const python = await pythonSession('America/New_York');
    try {
      await pythonUpdate(python, 'dev:dead', S({})).lock();
      // Five minutes later (moved back instead of waiting): the column default recorded when the row was written.
      await admin.query(`UPDATE ${LOCKS} SET expires_at = expires_at - interval '5 minutes 1 second'`);
      await store.merge('dev:dead', S({ pgstate: 1 }));
      expect(await bookmarks('dev:dead')).toEqual(['pgstate']);
      expect((await admin.query(`SELECT * FROM ${LOCKS}`)).rowCount).toBe(0);
    } finally {
      await python.end();
    }
  });

  test('a row without expires_at is judged by locked_at only when it is stale in every time zone', async () => {
    // 6 days old as UTC, but a session in zone 'UTC-167' (PostgreSQL accepts it) writes such a time now: live.
    await admin.query(
      `INSERT INTO ${LOCKS} (state_id, lock_id, locked_at, expires_at)
       VALUES ('dev:old', 'py', (now() AT TIME ZONE 'UTC') - interval '6 days', NULL)`,
    );
    await expectCode(store.merge('dev:old', S({ pgstate: 1 })), 'LOCK_TIMEOUT');
    // Older than 5 minutes even for a writer 168 hours behind UTC: stale for any writer.
    await admin.query(`UPDATE ${LOCKS} SET locked_at = (now() AT TIME ZONE 'UTC') - interval '168 hours 6 minutes'`);
    await store.merge('dev:old', S({ pgstate: 1 }));
    expect(await bookmarks('dev:old')).toEqual(['pgstate']);
  });
});
