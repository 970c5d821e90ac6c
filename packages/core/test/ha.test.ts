/**
 * Multi-host connections against a real primary and a real streaming standby (pg_basebackup -R): libpq's host walk
 * and target_session_attrs, errors that name every host, pools that discard connections to a read-only server, and
 * (last, because it ends the pair) a failover: the primary stopped with `pg_ctl -m immediate`, the standby promoted.
 */
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  acquireAdvisoryLock,
  advisoryLockKey,
  checkServerRole,
  connectClient,
  connectedHost,
  createPool,
  findLocalInstallations,
  freeLoopbackPort,
  isFailoverError,
  LeaseLocks,
  onPrimary,
  parseConnectionSettings,
  type RunningCluster,
  startCluster,
  startStandby,
  withClient,
  withRetry,
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

  test('connect_timeout applies per host: a host that never answers is left for the next one', async () => {
    // Accepts TCP connections and never says a word, like a server stuck behind a dead network path.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      expect(await reached([port, primary.port], { connect_timeout: '2' })).toBe(primary.port);
      const error = await rejectionOf(reached([port, dead], { connect_timeout: '2' }));
      expect((error as Error).message).toContain(
        `127.0.0.1:${port}: timed out (connect_timeout); 127.0.0.1:${dead}: connection refused`,
      );
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

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

test('a session advisory lock is taken on the primary even when target_session_attrs would allow the standby', async () => {
  const settings = parseConnectionSettings(url([standby.port, primary.port], { target_session_attrs: 'any' }));
  const key = advisoryLockKey('ha-on-primary');
  const lock = await acquireAdvisoryLock(settings, key, { timeoutMs: 0 });
  try {
    const admin = new pg.Client({ connectionString: primary.url });
    await admin.connect();
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
          AND ((classid::bigint << 32) | objid::bigint) = $1::bigint`,
      [key.toString()],
    );
    await admin.end();
    expect(rows[0]?.n).toBe(1);
    await lock.verify();
  } finally {
    await lock.release();
  }
  expect(await rejectionOf(lock.verify())).toMatchObject({ code: 'LOCK_LOST' });
});

test('onPrimary: a LISTEN connection reaches the primary and gets its NOTIFY; a standby would refuse LISTEN', async () => {
  const settings = parseConnectionSettings(url([standby.port, primary.port]));
  const onStandby = await connectClient(settings);
  expect(connectedHost(onStandby)?.port).toBe(standby.port);
  expect(await rejectionOf(onStandby.query('LISTEN ha_channel'))).toMatchObject({ message: /during recovery/ });
  await onStandby.end();
  const listener = await connectClient(onPrimary(settings));
  try {
    expect(connectedHost(listener)?.port).toBe(primary.port);
    const got = new Promise<string | undefined>((resolve) => listener.on('notification', (m) => resolve(m.payload)));
    await listener.query('LISTEN ha_channel');
    const pool = createPool(parseConnectionSettings(url([primary.port])));
    await pool.query("SELECT pg_notify('ha_channel', 'hello')");
    await pool.end();
    expect(await got).toBe('hello');
  } finally {
    await listener.end();
  }
});

describe("doctor's host check (checkServerRole)", () => {
  async function roleCheck(ports: number[], params: Record<string, string> = {}) {
    const settings = parseConnectionSettings(url(ports, params));
    const pool = createPool(settings);
    try {
      return await withClient(pool, (client) => checkServerRole(client, settings));
    } finally {
      await pool.end();
    }
  }

  test('several hosts with read-write: the primary reached, pass', async () => {
    const r = await roleCheck([dead, standby.port, primary.port], { target_session_attrs: 'read-write' });
    expect(r).toMatchObject({
      status: 'pass',
      data: { reached: `127.0.0.1:${primary.port}`, role: 'primary', hosts: 3 },
    });
    expect(r.detail).toBe(
      `reached 127.0.0.1:${primary.port} (one of 3 hosts, target_session_attrs=read-write): a primary`,
    );
  });

  test.each(['any', 'read-only', 'standby', 'prefer-standby'])(
    'several hosts with target_session_attrs=%s: a warning even when the primary was reached',
    async (attrs) => {
      const r = await roleCheck([primary.port, standby.port], { target_session_attrs: attrs });
      expect(r.status).toBe('warn');
      expect(r.detail).toMatch(/land on a standby|a standby \(read-only\)/);
      expect(r.fix).toMatch(/target_session_attrs=read-write/);
    },
  );

  test('a single host that is a standby: warn, role standby; a single primary: pass', async () => {
    const s = await roleCheck([standby.port]);
    expect(s).toMatchObject({ status: 'warn', data: { role: 'standby', readOnly: true, hosts: 1 } });
    expect(s.detail).toBe(`reached 127.0.0.1:${standby.port}: a standby (read-only); state writes will fail there`);
    expect(await roleCheck([primary.port])).toMatchObject({ status: 'pass', data: { role: 'primary' } });
  });
});

describe('failover: the primary stops, the standby is promoted (this ends the pair)', () => {
  test('pools, advisory locks and leases carry on on the new primary without a restart', async () => {
    const settings = parseConnectionSettings(
      url([primary.port, standby.port], { target_session_attrs: 'read-write', connect_timeout: '10' }),
    );
    const pool = createPool(settings);
    pools.push(pool);
    await pool.query(`CREATE SCHEMA IF NOT EXISTS pgstate;
      CREATE TABLE IF NOT EXISTS pgstate.leases (name text PRIMARY KEY, owner text NOT NULL,
        acquired_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, heartbeat_at timestamptz, info jsonb)`);
    await pool.query("INSERT INTO ha (v) VALUES ('before')");
    const key = advisoryLockKey('ha-failover');
    const lock = await acquireAdvisoryLock(pool, key);
    await lock.verify();
    const locks = new LeaseLocks(pool, { schema: 'pgstate', table: 'leases' });
    const lease = await locks.acquire('ha-lease', { ttlMs: 60_000, heartbeatMs: 100 });
    // Everything above is on the standby before the primary goes (this pair replicates asynchronously).
    await waitForReplay();

    await primary.stop('immediate');
    // The lock's connection is gone with the server, and with it the lock: the holder is told at once.
    await eventually(() => lock.lost);
    expect(lock.signal.aborted).toBe(true);
    expect(await rejectionOf(lock.verify())).toMatchObject({ code: 'LOCK_LOST' });
    // Until a primary exists, writes fail with a retryable error that names both hosts, never the password.
    const during = await rejectionOf(pool.query("INSERT INTO ha (v) VALUES ('during')"));
    expect(isFailoverError(during)).toBe(true);
    expect(during).toMatchObject({ code: 'UNREACHABLE' });
    // On a loaded machine the standby may not answer within connect_timeout: either way both attempts are named.
    expect((during as Error).message).toMatch(
      new RegExp(
        `127\\.0\\.0\\.1:${primary.port}: connection refused; 127\\.0\\.0\\.1:${standby.port}: (server is in read-only mode|timed out)`,
      ),
    );
    expectNoSecret(during, primary.password);
    // An idempotent read under withRetry rides out the failover.
    const read = withRetry(() => pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ha'), {
      attempts: 40,
      delayMs: 100,
      maxDelayMs: 250,
    });

    await standby.promote();
    expect((await read).rows[0]?.n).toBeGreaterThanOrEqual(1);
    // The same pool writes again, now on the promoted standby.
    await pool.query("INSERT INTO ha (v) VALUES ('after')");
    await withClient(pool, async (client) => expect(connectedHost(client)?.port).toBe(standby.port));
    const values = (await pool.query<{ v: string }>('SELECT v FROM ha ORDER BY id')).rows.map((r) => r.v);
    expect(values).toEqual(expect.arrayContaining(['before', 'after']));
    expect(values).not.toContain('during');

    // The advisory lock is free on the new primary: a new holder gets it, the old one still knows it lost it.
    const next = await acquireAdvisoryLock(pool, key, { timeoutMs: 0 });
    await next.verify();
    expect(lock.lost).toBe(true);
    expect(await rejectionOf(acquireAdvisoryLock(settings, key, { timeoutMs: 0 }))).toMatchObject({
      code: 'LOCK_TIMEOUT',
    });
    await next.release();
    await lock.release();

    // The lease row survived the failover: its holder renews it on the new primary and nobody else can take it.
    const renewedBefore = (await locks.inspect('ha-lease'))?.heartbeatAt?.getTime() ?? 0;
    await eventually(async () => ((await locks.inspect('ha-lease'))?.heartbeatAt?.getTime() ?? 0) > renewedBefore);
    expect(lease.lost).toBe(false);
    expect(await locks.tryAcquire('ha-lease', { ttlMs: 60_000 })).toBeUndefined();
    await lease.release();
  });
});

/** Waits until the standby has replayed everything the primary has written so far. */
async function waitForReplay(): Promise<void> {
  const p = new pg.Client({ connectionString: primary.url });
  await p.connect();
  const { rows } = await p.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  await p.end();
  const s = new pg.Client({ connectionString: standby.url });
  await s.connect();
  await eventually(
    async () =>
      (await s.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [rows[0]?.lsn])).rows[0]
        ?.ok === true,
  );
  await s.end();
}

async function eventually(check: () => boolean | Promise<boolean>, what = 'condition'): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not happen within 30 s`);
}
