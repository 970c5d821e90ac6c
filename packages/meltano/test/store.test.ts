import { advisoryLockKey, isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, test } from 'vitest';
import type { JsonObject, MeltanoStateStore } from '../src/index.js';
import { listQuery } from '../src/store.js';
import { LAYOUTS, openStore } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'meltano_store');
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

test("the plugin/systemdb lock key (core's advisoryLockKey) is exactly the upstream plugin's", () => {
  // Vectors computed with meltano-state-backend-postgresql's own key function.
  expect(advisoryLockKey('dev:tap-github-to-target-postgres')).toBe(2128584585411889108n);
  expect(advisoryLockKey('lock_test_job')).toBe(-8280139718495167346n);
});

test('under a non-C database collation (ICU en-US) list still uses the index and returns byte order', async () => {
  const admin = new pg.Client({ connectionString: inject('pgUrl') });
  await admin.connect();
  const name = `meltano_icu_${process.pid}`;
  await admin.query(`DROP DATABASE IF EXISTS ${name}`);
  await admin.query(
    `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`,
  );
  const url = new URL(db.url);
  url.pathname = `/${name}`;
  const store = await openStore(url.toString(), 'pgstate');
  try {
    await store.pool.query(
      `INSERT INTO mel_pgstate.meltano_state (state_id) SELECT 'dev:tap-' || g || '-to-t' FROM generate_series(1, 5000) g`,
    );
    await store.pool.query("INSERT INTO mel_pgstate.meltano_state (state_id) VALUES ('dev:tap-7a'), ('dev:tap-7B')");
    await store.pool.query('ANALYZE mel_pgstate.meltano_state');
    const query = listQuery(store.config.stateTable, 'dev:tap-7*');
    const plan = await store.pool.query(`EXPLAIN ${query.text}`, query.values);
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toMatch(/Index (Only )?Scan (using|on) meltano_state_state_id_c_idx/);
    expect(text).not.toMatch(/Seq Scan/);
    const ids = await store.list('dev:tap-7?');
    expect(ids).toEqual(['dev:tap-7B', 'dev:tap-7a']); // byte order; en-US would put "7a" first
  } finally {
    await store.close();
    await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
    await admin.end();
  }
});

describe.each(LAYOUTS)('%s layout', (layout) => {
  let store: MeltanoStateStore;
  const table = () => (layout === 'pgstate' ? `mel_${layout}.meltano_state` : `mel_${layout}.state`);
  const row = async (id: string) =>
    (
      await sql.query<{ partial_state: string | null; completed_state: string | null }>(
        `SELECT partial_state, completed_state FROM ${table()} WHERE state_id = $1`,
        [id],
      )
    ).rows[0];

  beforeAll(async () => {
    store = await openStore(db.url, layout, { lockWaitSeconds: 5 });
  });
  afterAll(async () => {
    await store?.close();
  });
  beforeEach(async () => {
    await sql.query(`DELETE FROM ${table()}`);
  });

  test('set writes a completed state; get returns it merged and raw', async () => {
    await store.set('dev:tap-a-to-target-b', JSON.stringify(S({ s1: { created_at: '2023-01-01' } })));
    const got = await store.get('dev:tap-a-to-target-b');
    expect(got?.merged).toEqual(S({ s1: { created_at: '2023-01-01' } }));
    expect(got?.completed).toEqual(S({ s1: { created_at: '2023-01-01' } }));
    expect(got?.partial).toEqual({});
    const r = await row('dev:tap-a-to-target-b');
    expect(JSON.parse(r?.completed_state ?? 'null')).toEqual(S({ s1: { created_at: '2023-01-01' } }));
    // Empty parts are written like the host writes them: NULL (plugins) or '{}' (Meltano's systemdb).
    expect(r?.partial_state).toBe(layout === 'systemdb' ? '{}' : null);
    expect(await store.get('missing')).toBeNull();
  });

  test("merge follows Meltano's update: partial deep-merged over completed, lists replaced", async () => {
    const id = 'dev:tap-x-to-target-y';
    await store.set(id, S({ stream_1: { created_at: '2023-01-01', ids: [1, 2] }, stream_2: { created_at: '2023' } }));
    await store.merge(id, S({ stream_1: { created_at: '2024-01-01', ids: [3] } }));
    await store.merge(id, S({ stream_3: { v: 1 } }));
    const got = await store.get(id);
    expect(got?.completed).toEqual(
      S({ stream_1: { created_at: '2023-01-01', ids: [1, 2] }, stream_2: { created_at: '2023' } }),
    );
    expect(got?.partial).toEqual(S({ stream_1: { created_at: '2024-01-01', ids: [3] }, stream_3: { v: 1 } }));
    expect(got?.merged).toEqual(
      S({ stream_1: { created_at: '2024-01-01', ids: [3] }, stream_2: { created_at: '2023' }, stream_3: { v: 1 } }),
    );
    // A later set replaces the row: the partial part is gone.
    await store.set(id, S({ only: { v: 2 } }));
    expect((await store.get(id))?.merged).toEqual(S({ only: { v: 2 } }));
    expect((await row(id))?.partial_state).toBe(layout === 'systemdb' ? '{}' : null);
  });

  test('big integers, unicode and odd keys survive unchanged', async () => {
    const id = 'dev:big';
    await store.set(
      id,
      '{"singer_state":{"bookmarks":{"t":{"id":12345678901234567890,"n":"h\\u00e9\\ud83d\\ude00","__proto__":{"x":1}}}}}',
    );
    const got = await store.get(id);
    const t =
      (got?.merged.singer_state as { bookmarks: { t: Record<string, unknown> } } | undefined)?.bookmarks.t ?? {};
    expect(t.id).toBe(12345678901234567890n);
    expect(t.n).toBe('hé😀');
    expect(Object.hasOwn(t, '__proto__')).toBe(true);
    expect((await row(id))?.completed_state).toContain('12345678901234567890');
  });

  test('NULL, {} and null in the columns all read as empty', async () => {
    await sql.query(
      `INSERT INTO ${table()} (state_id, partial_state, completed_state) VALUES
        ('e1', NULL, NULL), ('e2', '{}', 'null'), ('e3', 'null', '{"singer_state": {"a": 1}}')`,
    );
    expect((await store.get('e1'))?.merged).toEqual({});
    expect((await store.get('e2'))?.merged).toEqual({});
    expect((await store.get('e3'))?.merged).toEqual({ singer_state: { a: 1 } });
    // Merging onto a row with a 'null' partial works (upstream's file backends crashed there, meltano#8541).
    await store.merge('e3', S({ b: 2 }));
    expect((await store.get('e3'))?.merged).toEqual({ singer_state: { a: 1, bookmarks: { b: 2 } } });
  });

  test('invalid input is rejected precisely and nothing is written', async () => {
    await store.set('keep', S({ a: 1 }));
    const before = await row('keep');
    await expectCode(store.set('keep', '{"singer_state": '), 'INVALID_INPUT');
    await expectCode(store.set('keep', '[1,2]'), 'INVALID_INPUT');
    await expectCode(store.set('keep', '{"bookmarks": {}}'), 'INVALID_INPUT'); // no singer_state
    await expectCode(store.merge('keep', '{"singer_state": {"x": 1}} trailing'), 'INVALID_INPUT');
    await expectCode(store.set('', S({})), 'INVALID_INPUT');
    await expectCode(store.set('x'.repeat(901), S({})), 'INVALID_INPUT');
    await expectCode(store.set('bad\u0000id', S({})), 'INVALID_INPUT');
    expect(await row('keep')).toEqual(before);
    expect(await store.list()).toEqual(['keep']);
    // validate: false skips the singer_state check (meltano state set --no-validate).
    await store.set('keep', '{"bookmarks": {"b": 1}}', { validate: false });
    expect((await store.get('keep'))?.merged).toEqual({ bookmarks: { b: 1 } });
  });

  test('state ids up to 900 characters', async () => {
    const id = `dev:${'é'.repeat(896)}`;
    expect(id.length).toBe(900);
    await store.set(id, S({ a: 1 }));
    expect((await store.get(id))?.merged).toEqual(S({ a: 1 }));
  });

  test("list globs match as the host's LIKE does (`_` and `%` are wildcards, `\\` escapes), in byte order", async () => {
    const ids = ['dev:tap_a-to-t', 'dev:tapXa-to-t', 'dev:tap%b-to-t', 'dev:tap\\c-to-t', 'prod:tap_a-to-t', 'dev:t'];
    for (const id of ids) await store.set(id, S({}));
    const bytes = (list: string[]) => [...list].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(await store.list()).toEqual(bytes(ids));
    expect(await store.list('*')).toHaveLength(ids.length);
    // What the host runs (read from its source): the plugin replaces `*` and `?`, Meltano's systemdb only `*`.
    const hostLike = (glob: string) =>
      layout === 'systemdb' ? glob.replaceAll('*', '%') : glob.replaceAll('*', '%').replaceAll('?', '_');
    const host = async (glob: string) =>
      bytes(
        (await sql.query(`SELECT state_id FROM ${table()} WHERE state_id LIKE $1`, [hostLike(glob)])).rows.map(
          (r) => r.state_id,
        ),
      );
    const globs = [
      'dev:tap_a*',
      'dev:tap%*',
      'dev:tap\\*',
      'dev:tap\\_a*',
      'dev:tap\\\\*',
      'dev:tap?a-to-t',
      '*:tap_a-to-t',
    ];
    for (const glob of globs) expect(await store.list(glob), glob).toEqual(await host(glob));
    expect(await store.list('dev:tap_a*')).toEqual(['dev:tapXa-to-t', 'dev:tap_a-to-t']);
    expect(await store.list('dev:tap\\_a*')).toEqual(['dev:tap_a-to-t']);
    expect(await store.list('dev:tap?a-to-t')).toEqual(
      layout === 'systemdb' ? [] : ['dev:tapXa-to-t', 'dev:tap_a-to-t'],
    );
    expect(await store.list('nothing*')).toEqual([]);
    await expectCode(store.list('dev:tap\\'), 'INVALID_INPUT');
  });

  test('list(pattern) is a range scan on the byte-order index, not a sequential scan', async () => {
    await sql.query(
      `INSERT INTO ${table()} (state_id) SELECT 'dev:tap-' || g || '-to-t' FROM generate_series(1, 5000) g`,
    );
    await sql.query(`ANALYZE ${table()}`);
    const query = listQuery(store.config.stateTable, 'dev:tap-12_*', layout);
    const plan = await sql.query(`EXPLAIN ${query.text}`, query.values);
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toMatch(/Index (Only )?Scan (using|on) \w+_state_id_c_idx/);
    expect(text).not.toMatch(/Seq Scan/);
    // `_` is a wildcard, as for the host: ids with any character after "dev:tap-12".
    const listed = await store.list('dev:tap-12_*');
    expect(listed).toHaveLength(111); // dev:tap-12-to-t, dev:tap-120..129-to-t, dev:tap-1200..1299-to-t
    expect(listed.every((id) => id.startsWith('dev:tap-12'))).toBe(true);
  });

  test('copy, move, clear, clearAll', async () => {
    await store.set('src', S({ a: 1 }));
    await store.merge('src', S({ b: 2 }));
    await store.copy('src', 'dst');
    // copy sets the destination to the source's merged state, as a completed state.
    expect(await store.get('dst')).toMatchObject({ completed: S({ a: 1, b: 2 }), partial: {} });
    await store.move('dst', 'moved');
    expect(await store.get('dst')).toBeNull();
    expect((await store.get('moved'))?.merged).toEqual(S({ a: 1, b: 2 }));
    // copying a missing state fails validation like Meltano's (its merged state `{}` has no singer_state).
    await expectCode(store.copy('missing', 'dst2'), 'INVALID_INPUT');
    expect(await store.get('dst2')).toBeNull();
    expect(await store.clear('moved')).toBe(true);
    expect(await store.clear('moved')).toBe(false);
    await store.mergeFrom('src', 'other');
    expect((await store.get('other'))?.partial).toEqual(S({ a: 1, b: 2 }));
    expect(await store.clearAll()).toBe(2);
    expect(await store.list()).toEqual([]);
  });

  test('export / import round trip; bad import writes nothing', async () => {
    await store.set('a', S({ x: 1 }));
    await store.merge('a', S({ y: 2 }));
    await store.set('b', S({ z: 3 }));
    const exported = await store.export();
    expect(exported).toEqual({
      a: { completed: S({ x: 1 }), partial: S({ y: 2 }) },
      b: { completed: S({ z: 3 }), partial: {} },
    });
    await store.clearAll();
    const progress: number[] = [];
    expect(await store.import(JSON.stringify(exported), { onProgress: (d) => progress.push(d) })).toBe(2);
    expect(progress).toEqual([2]);
    expect(await store.export()).toEqual(exported);
    await expectCode(store.import('{"c": {"completed": {}}, "d": {"completed": [1]}}'), 'INVALID_INPUT');
    await expectCode(store.import('{"c": '), 'INVALID_INPUT');
    expect(await store.list()).toEqual(['a', 'b']);
  });

  test('a held lock excludes other writers; writes pass under it with {lock}', async () => {
    const other = await openStore(db.url, layout, { lockWaitSeconds: 0.5, lockRetrySeconds: 0.05 });
    try {
      await store.set('locked', S({ a: 1 }));
      {
        await using lock = await store.acquireLock('locked');
        await expectCode(other.merge('locked', S({ b: 2 })), 'LOCK_TIMEOUT');
        await expectCode(other.acquireLock('locked', { timeoutSeconds: 0.3 }), 'LOCK_TIMEOUT');
        await store.merge('locked', S({ c: 3 }), { lock });
        expect(lock.lost).toBe(false);
      }
      // Released at the end of the block: the other store gets in at once.
      await other.merge('locked', S({ b: 2 }));
      expect((await store.get('locked'))?.merged).toEqual(S({ a: 1, b: 2, c: 3 }));
    } finally {
      await other.close();
    }
  });

  if (layout !== 'pgstate') {
    test('pgstate locks with the plugin key: a raw pg_try_advisory_lock on that key is refused while held', async () => {
      const id = 'dev:tap-github-to-target-postgres';
      const lock = await store.acquireLock(id);
      const held = await sql.query('SELECT pg_try_advisory_lock(2128584585411889108) AS ok');
      expect(held.rows[0].ok).toBe(false);
      await lock.release();
      const free = await sql.query('SELECT pg_try_advisory_lock(2128584585411889108) AS ok');
      expect(free.rows[0].ok).toBe(true);
      // A Python-style session holder blocks pgstate's merge, then lets it through.
      await expectCode(
        openStore(db.url, layout, { lockWaitSeconds: 0.3 }).then(async (s) => {
          try {
            await s.merge(id, S({ a: 1 }));
          } finally {
            await s.close();
          }
        }),
        'LOCK_TIMEOUT',
      );
      await sql.query('SELECT pg_advisory_unlock(2128584585411889108)');
      await store.merge(id, S({ a: 1 }));
      expect((await store.get(id))?.merged).toEqual(S({ a: 1 }));
    });
  }

  if (layout !== 'pgstate') {
    test('a held advisory lock whose session died is reported lost; nothing is written under it', async () => {
      const id = 'dev:fence-advisory';
      const lock = await store.acquireLock(id);
      const holder = await sql.query<{ pid: number }>(
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = $1`,
        [Number(advisoryLockKey(id) & 0xffffffffn)],
      );
      expect(holder.rows).toHaveLength(1);
      await sql.query('SELECT pg_terminate_backend($1)', [holder.rows[0]!.pid]);
      // Someone else (a Python writer) takes the lock the dead session held.
      await sql.query('SELECT pg_advisory_lock($1::int8)', [advisoryLockKey(id).toString()]);
      try {
        await expectCode(store.merge(id, S({ mine: 1 }), { lock }), 'LOCK_LOST');
        expect(await store.get(id)).toBeNull();
      } finally {
        await sql.query('SELECT pg_advisory_unlock($1::int8)', [advisoryLockKey(id).toString()]);
        await lock.release();
      }
    });
  }

  if (layout === 'pgstate') {
    test('lock rows: a live foreign row blocks, an expired one (or a Python row 5 min after its insert) is taken over', async () => {
      const short = await openStore(db.url, 'pgstate', { lockWaitSeconds: 0.3, lockRetrySeconds: 0.05 });
      try {
        await sql.query(
          `INSERT INTO mel_pgstate.meltano_state_locks (state_id, locked_at, lock_id) VALUES ('py', LOCALTIMESTAMP, 'python-uuid')`,
        );
        await expectCode(short.merge('py', S({ a: 1 })), 'LOCK_TIMEOUT');
        await sql.query(
          // The column default gave the Python row 5 minutes (server clock); move its insert back instead of waiting.
          `UPDATE mel_pgstate.meltano_state_locks SET expires_at = expires_at - interval '6 minutes' WHERE state_id = 'py'`,
        );
        await short.merge('py', S({ a: 1 }));
        await sql.query(
          `INSERT INTO mel_pgstate.meltano_state_locks (state_id, lock_id, expires_at) VALUES ('ts', 'pgstate:x', now() + interval '1 hour')`,
        );
        await expectCode(short.set('ts', S({ a: 1 })), 'LOCK_TIMEOUT');
        await sql.query(`UPDATE mel_pgstate.meltano_state_locks SET expires_at = now() - interval '1 second'`);
        await short.set('ts', S({ a: 1 }));
        // Transaction-scoped locks leave no rows behind.
        expect((await sql.query('SELECT count(*)::int AS n FROM mel_pgstate.meltano_state_locks')).rows[0].n).toBe(0);
      } finally {
        await short.close();
      }
    });

    test('a lock taken over after expiry is reported lost and its holder cannot write', async () => {
      const quick = await openStore(db.url, 'pgstate', { lockTimeoutSeconds: 30 });
      try {
        const lock = await quick.acquireLock('fence');
        // Simulate a long pause: the row expires and someone else takes it over.
        await sql.query(
          `UPDATE mel_pgstate.meltano_state_locks SET expires_at = now() - interval '1 second' WHERE state_id = 'fence'`,
        );
        await store.merge('fence', S({ other: 1 }));
        await expectCode(quick.merge('fence', S({ mine: 1 }), { lock }), 'LOCK_LOST');
        expect((await store.get('fence'))?.merged).toEqual(S({ other: 1 }));
        await lock.release();
      } finally {
        await quick.close();
      }
    });
  }
});
