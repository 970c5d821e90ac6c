/**
 * Multi-host connections against a real primary and a real streaming standby (pg_basebackup -R): libpq's host walk
 * and target_session_attrs, errors that name every host, pools that discard connections to a read-only server, and
 * (last, because it ends the pair) a failover: the primary stopped with `pg_ctl -m immediate`, the standby promoted.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  connectClient,
  connectedHost,
  createPool,
  findLocalInstallations,
  freeLoopbackPort,
  parseConnectionSettings,
  type RunningCluster,
  startCluster,
  startStandby,
  withClient,
} from '../src/index.js';
import { expectNoSecret, rejectionOf } from './helpers.js';

let primary: RunningCluster;
let standby: RunningCluster & { promote(): Promise<void> };
/** A loopback port nothing listens on. */
let dead: number;
const pools: pg.Pool[] = [];

beforeAll(async () => {
  const installation = findLocalInstallations()[0];
  if (!installation) throw new Error('PostgreSQL server binaries are needed for the HA tests');
  primary = await startCluster({ installation });
  standby = await startStandby(primary);
  dead = await freeLoopbackPort();
  const admin = new pg.Client({ connectionString: primary.url });
  await admin.connect();
  await admin.query('CREATE TABLE ha (id serial PRIMARY KEY, v text NOT NULL)');
  await admin.end();
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end().catch(() => {})));
  await standby?.destroy();
  await primary?.destroy();
});

/** `postgres://postgres:pw@127.0.0.1:P1,127.0.0.1:P2/postgres?...` for these ports, in this order. */
function url(ports: number[], params: Record<string, string> = {}): string {
  const hosts = ports.map((p) => `127.0.0.1:${p}`).join(',');
  const query = new URLSearchParams({ sslmode: 'disable', ...params });
  return `postgres://postgres:${encodeURIComponent(primary.password)}@${hosts}/postgres?${query}`;
}

/** Connects once and returns the port of the server reached. */
async function reached(ports: number[], params: Record<string, string> = {}): Promise<number | undefined> {
  const client = await connectClient(parseConnectionSettings(url(ports, params)));
  try {
    return connectedHost(client)?.port;
  } finally {
    await client.end();
  }
}

describe('libpq host walk and target_session_attrs', () => {
  test('hosts are tried in order; a refused host is skipped', async () => {
    expect(await reached([dead, standby.port, primary.port])).toBe(standby.port);
    expect(await reached([dead, primary.port, standby.port])).toBe(primary.port);
  });

  test.each(['read-write', 'primary', 'read-only', 'standby', 'prefer-standby'] as const)(
    'target_session_attrs=%s picks the right server whatever the order',
    async (attrs) => {
      const want = attrs === 'read-write' || attrs === 'primary' ? primary.port : standby.port;
      expect(await reached([dead, primary.port, standby.port], { target_session_attrs: attrs })).toBe(want);
      expect(await reached([dead, standby.port, primary.port], { target_session_attrs: attrs })).toBe(want);
    },
  );

  test('prefer-standby falls back to the primary when no standby answers', async () => {
    expect(await reached([dead, primary.port], { target_session_attrs: 'prefer-standby' })).toBe(primary.port);
  });

  test('the same settings from PGHOST/PGPORT lists and the keyword form', async () => {
    const env = {
      HOME: '/nonexistent',
      PGHOST: '127.0.0.1,127.0.0.1,127.0.0.1',
      PGPORT: `${dead},${standby.port},${primary.port}`,
      PGTARGETSESSIONATTRS: 'read-write',
      PGUSER: 'postgres',
      PGPASSWORD: primary.password,
      PGSSLMODE: 'disable',
    };
    const fromEnv = await connectClient(parseConnectionSettings('postgres:///postgres', { env }));
    expect(connectedHost(fromEnv)?.port).toBe(primary.port);
    await fromEnv.end();
    const keywords = `host=127.0.0.1,127.0.0.1 port=${standby.port},${primary.port} user=postgres dbname=postgres sslmode=disable target_session_attrs=primary password='${primary.password}'`;
    const fromKeywords = await connectClient(parseConnectionSettings(keywords, { env: { HOME: '/nonexistent' } }));
    expect(connectedHost(fromKeywords)?.port).toBe(primary.port);
    await fromKeywords.end();
  });

  test('load_balance_hosts=random spreads new connections over the hosts', async () => {
    const seen = new Set<number | undefined>();
    for (let i = 0; i < 24 && seen.size < 2; i++) {
      seen.add(await reached([primary.port, standby.port], { load_balance_hosts: 'random' }));
    }
    expect(seen).toEqual(new Set([primary.port, standby.port]));
    // Without it, always the first.
    for (let i = 0; i < 5; i++) expect(await reached([primary.port, standby.port])).toBe(primary.port);
  });

  test('when no host suits, the error names each host and why, never the password', async () => {
    const error = await rejectionOf(reached([dead, standby.port], { target_session_attrs: 'read-write' }));
    expect(error).toMatchObject({ name: 'PgStateError', code: 'UNREACHABLE' });
    expect((error as Error).message).toContain(
      `127.0.0.1:${dead}: connection refused; 127.0.0.1:${standby.port}: server is in read-only mode (target_session_attrs=read-write)`,
    );
    expectNoSecret(error, primary.password);
    const standbyOnly = await rejectionOf(reached([primary.port], { target_session_attrs: 'standby' }));
    expect((standbyOnly as Error).message).toMatch(/server is not a standby \(target_session_attrs=standby\)/);
  });

  test('a single standby under read-write is refused, and the probe connection is closed', async () => {
    const error = await rejectionOf(reached([standby.port], { target_session_attrs: 'read-write' }));
    expect((error as Error).message).toMatch(/^server is in read-only mode \(target_session_attrs=read-write\)/);
    // The walk closes the connections it rejects: none of ours stays on the standby.
    const admin = new pg.Client({ connectionString: standby.url });
    await admin.connect();
    for (let i = 0; ; i++) {
      const { rows } = await admin.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgstate' AND pid <> pg_backend_pid()",
      );
      if (rows[0]?.n === 0) break;
      if (i > 50) throw new Error('the rejected connection stayed open');
      await new Promise((r) => setTimeout(r, 100));
    }
    await admin.end();
  });
});

describe('pools and read-only servers', () => {
  test('a pooled connection that met a read-only server (25006) is discarded, not reused', async () => {
    // target_session_attrs=any lets this pool land on the standby: the write fails with 25006.
    const pool = createPool(parseConnectionSettings(url([standby.port])));
    pools.push(pool);
    const pids = new Set<number>();
    for (let i = 0; i < 3; i++) {
      const error = await rejectionOf(
        withClient(pool, async (client) => {
          pids.add((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number);
          await client.query("INSERT INTO ha (v) VALUES ('x')");
        }),
      );
      expect(error).toMatchObject({ code: '25006' });
    }
    // Three checkouts, three different connections: none went back to the pool after its 25006.
    expect(pids.size).toBe(3);
    expect(pool.totalCount).toBe(0);
    // The same through pool.connect()/release() as adapters use it.
    const client = await pool.connect();
    await rejectionOf(client.query("INSERT INTO ha (v) VALUES ('x')"));
    client.release();
    expect(pool.totalCount).toBe(0);
    // A read keeps its connection.
    await pool.query('SELECT 1');
    expect(pool.totalCount).toBe(1);
  });
});
