/**
 * withTransaction against a real server: commit, rollback, BEGIN options, and the rule that matters most: a pooled
 * connection whose ROLLBACK or COMMIT failed (here: its backend terminated from another connection, a deferred
 * constraint failing at COMMIT) is destroyed, never handed to the next caller. Also behind PgBouncer in transaction
 * mode, where every option must travel inside the transaction.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { createPool, parseConnectionSettings, pgErrorKind, withTransaction } from '../src/index.js';
import { createTestDatabase, pgbouncerBinary, startPgBouncer } from '../src/testing.js';
import { rejectionOf } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'txn');
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
  await admin.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
  await admin.query('CREATE TABLE deferred (id int, CONSTRAINT deferred_id UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)');
});

afterAll(async () => {
  await admin?.end();
  await db?.drop();
});

const newPool = () => createPool(parseConnectionSettings({ url: db.url, maxConnections: 2 }));
const pid = async (c: pg.ClientBase) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

describe('withTransaction', () => {
  test('commits what the callback wrote and returns its result; the connection goes back to the pool', async () => {
    const pool = newPool();
    try {
      const result = await withTransaction(pool, async (c) => {
        await c.query(`INSERT INTO items VALUES (1, 'one')`);
        return pid(c);
      });
      expect((await admin.query('SELECT note FROM items WHERE id = 1')).rows).toEqual([{ note: 'one' }]);
      expect([pool.totalCount, pool.idleCount]).toEqual([1, 1]);
      expect(await withTransaction(pool, pid)).toBe(result);
    } finally {
      await pool.end();
    }
  });

  test('rolls back and rethrows the callback’s own error; a healthy connection is reused', async () => {
    const pool = newPool();
    try {
      const thrown = new Error('boom');
      let first = 0;
      const error = await rejectionOf(
        withTransaction(pool, async (c) => {
          first = await pid(c);
          await c.query(`INSERT INTO items VALUES (2, 'two')`);
          throw thrown;
        }),
      );
      expect(error).toBe(thrown);
      expect((await admin.query('SELECT 1 FROM items WHERE id = 2')).rowCount).toBe(0);
      expect([pool.totalCount, pool.idleCount]).toEqual([1, 1]);
      // Reused, and not left inside the failed transaction.
      expect(await withTransaction(pool, pid)).toBe(first);
      const { rows } = await admin.query('SELECT state FROM pg_stat_activity WHERE pid = $1', [first]);
      expect(rows).toEqual([{ state: 'idle' }]);
    } finally {
      await pool.end();
    }
  });

  test('a server error inside the callback reaches the caller with its SQLSTATE', async () => {
    const pool = newPool();
    try {
      await admin.query(`INSERT INTO items VALUES (3, 'three') ON CONFLICT DO NOTHING`);
      const error = await rejectionOf(withTransaction(pool, (c) => c.query(`INSERT INTO items VALUES (3, 'again')`)));
      expect(error).toBeInstanceOf(pg.DatabaseError);
      expect(pgErrorKind(error)).toBe('unique-violation');
      expect(pool.idleCount).toBe(1);
    } finally {
      await pool.end();
    }
  });

  test('isolation level, READ ONLY and DEFERRABLE are set in BEGIN', async () => {
    const pool = newPool();
    try {
      const show = (c: pg.ClientBase) =>
        c
          .query<{ i: string; r: string; d: string }>(
            `SELECT current_setting('transaction_isolation') AS i, current_setting('transaction_read_only') AS r,
                    current_setting('transaction_deferrable') AS d`,
          )
          .then((r) => r.rows[0]);
      expect(await withTransaction(pool, show)).toEqual({ i: 'read committed', r: 'off', d: 'off' });
      expect(await withTransaction(pool, show, { isolation: 'repeatable read' })).toMatchObject({
        i: 'repeatable read',
      });
      expect(
        await withTransaction(pool, show, { isolation: 'serializable', readOnly: true, deferrable: true }),
      ).toEqual({ i: 'serializable', r: 'on', d: 'on' });
      const error = await rejectionOf(
        withTransaction(pool, (c) => c.query(`INSERT INTO items VALUES (4, 'x')`), { readOnly: true }),
      );
      expect(pgErrorKind(error)).toBe('read-only-transaction');
      // Nothing leaks into the session: the next transaction on the same connection is read-write again.
      expect(await withTransaction(pool, show)).toEqual({ i: 'read committed', r: 'off', d: 'off' });
      expect(pool.totalCount).toBe(1);
    } finally {
      await pool.end();
    }
  });

  test('an unknown isolation level is refused before anything runs', async () => {
    const pool = newPool();
    try {
      const error = await rejectionOf(
        withTransaction(pool, async () => 1, { isolation: 'snapshot' as 'serializable' }),
      );
      expect(error).toMatchObject({ code: 'BAD_SETTING' });
      expect(pool.totalCount).toBe(0);
    } finally {
      await pool.end();
    }
  });

  test('a connection whose backend is terminated mid-transaction (ROLLBACK fails) is destroyed, not pooled', async () => {
    const pool = newPool();
    try {
      let killed = 0;
      const error = await rejectionOf(
        withTransaction(pool, async (c) => {
          killed = await pid(c);
          await c.query(`INSERT INTO items VALUES (5, 'five')`);
          await admin.query('SELECT pg_terminate_backend($1)', [killed]);
          await c.query('SELECT 1');
        }),
      );
      expect(pgErrorKind(error)).toBe('connection-lost');
      expect(pool.totalCount).toBe(0);
      // The next caller gets a fresh, working connection, not the dead one.
      const next = await withTransaction(pool, pid);
      expect(next).not.toBe(killed);
      expect((await admin.query('SELECT 1 FROM items WHERE id = 5')).rowCount).toBe(0);
    } finally {
      await pool.end();
    }
  });

  test('a connection whose COMMIT failed is destroyed, and nothing was written', async () => {
    const pool = newPool();
    try {
      let first = 0;
      const error = await rejectionOf(
        withTransaction(pool, async (c) => {
          first = await pid(c);
          await c.query('INSERT INTO deferred VALUES (1), (1)');
        }),
      );
      expect(pgErrorKind(error)).toBe('unique-violation');
      expect(pool.totalCount).toBe(0);
      expect(await withTransaction(pool, pid)).not.toBe(first);
      expect((await admin.query('SELECT 1 FROM deferred')).rowCount).toBe(0);
    } finally {
      await pool.end();
    }
  });

  test('on a client the caller owns: commits and rolls back on it, and leaves it to the caller', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await withTransaction(client, (c) => c.query(`INSERT INTO items VALUES (6, 'six')`));
      const error = await rejectionOf(
        withTransaction(client, async (c) => {
          await c.query(`INSERT INTO items VALUES (7, 'seven')`);
          throw new Error('no');
        }),
      );
      expect(error).toMatchObject({ message: 'no' });
      const { rows } = await client.query('SELECT id FROM items WHERE id IN (6, 7) ORDER BY id');
      expect(rows).toEqual([{ id: 6 }]);
    } finally {
      await client.end();
    }
  });

  test('a source with only a pool’s connect() (e.g. a wrapper) is used as a pool', async () => {
    const pool = newPool();
    try {
      const source = { connect: () => pool.connect() };
      await withTransaction(source, (c) => c.query(`INSERT INTO items VALUES (8, 'eight')`));
      expect((await admin.query('SELECT 1 FROM items WHERE id = 8')).rowCount).toBe(1);
      expect([pool.totalCount, pool.idleCount]).toEqual([1, 1]);
    } finally {
      await pool.end();
    }
  });

  test('a pool that cannot connect gives a PgStateError without the password', async () => {
    const url = new URL(db.url);
    url.port = '1';
    url.password = 'hunter2-secret';
    const pool = createPool(parseConnectionSettings({ url: url.toString() }));
    try {
      const error = await rejectionOf(withTransaction(pool, async () => 1));
      expect(error).toMatchObject({ code: 'UNREACHABLE' });
      expect(String((error as Error).message)).not.toContain('hunter2-secret');
    } finally {
      await pool.end();
    }
  });

  // Not run (reported as skipped) where the Debian pgbouncer package is missing.
  test.skipIf(!pgbouncerBinary)(
    'behind PgBouncer in transaction mode: options stay inside each transaction',
    async () => {
      const url = new URL(db.url);
      const bouncer = await startPgBouncer({
        host: url.hostname,
        port: Number(url.port),
        user: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
      });
      url.port = String(bouncer.port);
      const pool = createPool(parseConnectionSettings({ url: url.toString(), maxConnections: 4 }));
      try {
        const modes = await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            withTransaction(
              pool,
              async (c) => {
                if (i % 2 === 0) await c.query(`INSERT INTO items VALUES (${100 + i}, 'via bouncer')`);
                return (await c.query<{ r: string }>(`SELECT current_setting('transaction_read_only') AS r`)).rows[0]!
                  .r;
              },
              { readOnly: i % 2 === 1 },
            ),
          ),
        );
        expect(modes).toEqual(Array.from({ length: 12 }, (_, i) => (i % 2 === 1 ? 'on' : 'off')));
        expect((await admin.query('SELECT 1 FROM items WHERE id >= 100')).rowCount).toBe(6);

        // A server connection terminated mid-transaction: the client connection is discarded, the next one works.
        const before = pool.totalCount;
        const error = await rejectionOf(
          withTransaction(pool, async (c) => {
            await c.query(`INSERT INTO items VALUES (200, 'lost')`);
            await admin.query('SELECT pg_terminate_backend($1)', [await pid(c)]);
            await c.query('SELECT 1');
          }),
        );
        expect(pgErrorKind(error)).toBe('connection-lost');
        expect(pool.totalCount).toBe(before - 1);
        const next = await withTransaction(pool, async (c) => (await c.query('SELECT 1 AS one')).rows[0]);
        expect(next).toEqual({ one: 1 });
        expect((await admin.query('SELECT 1 FROM items WHERE id = 200')).rowCount).toBe(0);
      } finally {
        await pool.end();
        await bouncer.stop();
      }
    },
    60_000,
  );
});
