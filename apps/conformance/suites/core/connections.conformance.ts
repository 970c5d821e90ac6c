// @pgstate/core connections on every lane: what a user relies on when they hand pgstate a URL.
import { createPool, parseConnectionSettings } from '@pgstate/core';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance } from '../../src/kit.js';

defineConformance({
  adapter: '@pgstate/core',
  lanes: ['direct', 'tls-verify-full', 'mtls', 'pgbouncer', 'least-privilege'],
  async setup(admin) {
    await admin.query('CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)');
  },
  create: (lane) => createPool(parseConnectionSettings(lane.url)),
  close: (pool) => pool.end(),
  probes: (admin: pg.Pool) => ({
    async value(k: string) {
      const { rows } = await admin.query<{ v: string }>('SELECT v FROM kv WHERE k = $1', [k]);
      return rows[0]?.v;
    },
  }),
  tests({ test }) {
    test('a pool from the lane URL reaches the lane database as the lane user, over TLS when asked', async (t) => {
      const { rows } = await t.adapter.query<{ db: string; u: string; ssl: boolean | null; dn: string | null }>(
        `SELECT current_database() AS db, current_user AS u, s.ssl, s.client_dn AS dn
           FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()`,
      );
      const tls = t.lane.via === 'tls-verify-full' || t.lane.via === 'mtls';
      expect(rows[0]).toMatchObject({ db: t.lane.database, u: t.lane.user, ssl: tls });
      if (t.lane.via === 'mtls') expect(rows[0]?.dn).toContain(`CN=${t.lane.user}`);
    });

    test('a committed write lands; a rolled back one does not; a transaction sees its own writes', async (t) => {
      const client = await t.adapter.connect();
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO kv VALUES ($1, $2)', ['kept', 'v1']);
        const own = await client.query('SELECT v FROM kv WHERE k = $1', ['kept']);
        expect(own.rows[0]?.v).toBe('v1');
        expect(await t.probes.value('kept')).toBeUndefined();
        await client.query('COMMIT');
        await client.query('BEGIN');
        await client.query('INSERT INTO kv VALUES ($1, $2)', ['dropped', 'v2']);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
      expect(await t.probes.value('kept')).toBe('v1');
      expect(await t.probes.value('dropped')).toBeUndefined();
    });

    test('a transaction-scoped advisory lock excludes a second session until commit', async (t) => {
      const [a, b] = [await t.adapter.connect(), await t.adapter.connect()];
      try {
        await a.query('BEGIN');
        const first = await a.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(42) AS ok');
        expect(first.rows[0]?.ok).toBe(true);
        const second = await b.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(42) AS ok');
        expect(second.rows[0]?.ok).toBe(false);
        await a.query('COMMIT');
        const third = await b.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(42) AS ok');
        expect(third.rows[0]?.ok).toBe(true);
      } finally {
        a.release();
        b.release();
      }
    });

    test('the pool keeps serving after its backends are terminated', async (t) => {
      await t.adapter.query('SELECT 1');
      const terminated = await t.faults.terminateBackends();
      expect(terminated).toBeGreaterThan(0);
      // A query may meet a connection the server just closed, and each such connection fails at most one query
      // before it is discarded: directly that is the pool's own, behind PgBouncer each of its server connections that
      // was killed (it hands them out until it sees them fail). So a user's retries succeed within that many + 1.
      let rows: { one: number }[] | undefined;
      const failures: string[] = [];
      for (let attempt = 0; attempt <= terminated && !rows; attempt++) {
        rows = await t.adapter
          .query<{ one: number }>('SELECT 1 AS one')
          .then((r) => r.rows)
          .catch((error: Error) => {
            failures.push(error.message);
            return undefined;
          });
      }
      expect(rows?.[0]?.one, failures.join('; ')).toBe(1);
      expect(failures.length).toBeLessThanOrEqual(terminated);
    });

    test(
      'verify-full refuses a host name the server certificate does not name',
      async (t) => {
        const wrongHost = t.lane.url.replace('@localhost:', '@127.0.0.1:');
        const pool = createPool(parseConnectionSettings(wrongHost));
        try {
          await expect(pool.query('SELECT 1')).rejects.toThrow();
        } finally {
          await pool.end();
        }
      },
      { lanes: ['tls-verify-full', 'mtls'] },
    );

    test(
      'the least-privilege role can read and write rows but not change the schema',
      async (t) => {
        await t.adapter.query('INSERT INTO kv VALUES ($1, $2)', ['lp', 'ok']);
        expect(await t.probes.value('lp')).toBe('ok');
        await expect(t.adapter.query('CREATE TABLE intruder (x int)')).rejects.toMatchObject({ code: '42501' });
        await expect(t.adapter.query('DROP TABLE kv')).rejects.toMatchObject({ code: '42501' });
      },
      { lanes: ['least-privilege'] },
    );

    test(
      'the pool serves again after the server restarts',
      async (t) => {
        await t.adapter.query('INSERT INTO kv VALUES ($1, $2)', ['before', 'restart']);
        await t.faults.restartServer('immediate');
        await t.adapter.query('SELECT 1').catch(() => undefined);
        const { rows } = await t.adapter.query<{ v: string }>('SELECT v FROM kv WHERE k = $1', ['before']);
        expect(rows[0]?.v).toBe('restart');
      },
      { lanes: ['direct'], privateServer: true },
    );
  },
});
