import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { MIGRATION_LOCK_KEY, type MigrationTarget, migrate } from '../src/index.js';
import { committedMigrations } from './committed.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'fixtures', 'migrate-child.ts');

let db: Awaited<ReturnType<typeof createTestDatabase>>;
beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'schema_procs');
});
afterAll(async () => {
  await db?.drop();
});

function start(url: string, target: MigrationTarget) {
  const proc = spawn(
    process.execPath,
    ['--conditions=pgstate-source', '--import', 'tsx', child, url, JSON.stringify(target)],
    { cwd: path.join(here, '..'), stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => {
    out += d;
  });
  proc.stderr.on('data', (d) => {
    err += d;
  });
  const ready = new Promise<void>((resolve, reject) => {
    const check = () => (out.includes('ready\n') ? resolve() : undefined);
    proc.stdout.on('data', check);
    proc.once('exit', () => reject(new Error(`child exited before ready: ${out}${err}`)));
  });
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    proc.once('exit', (code) => resolve({ code, out, err })),
  );
  return { proc: proc as ChildProcess, ready, done };
}

it('8 OS processes migrating one fresh database at once all succeed; each migration is applied once', async () => {
  // Two configurations racing, four processes each, on a database without pgstate's internal tables yet.
  const targets: MigrationTarget[] = [
    ...Array.from({ length: 4 }, () => ({ adapter: 'pulumi' }) as const),
    ...Array.from({ length: 4 }, () => ({ adapter: 'meltano', layout: 'seed' }) as const),
  ];
  const children = targets.map((t) => start(db.url, t));
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.proc.stdin?.write('go\n');
  const results = await Promise.all(children.map((c) => c.done));

  for (const r of results) expect(r.code, r.out + r.err).toBe(0);
  const applied = results.flatMap((r) => JSON.parse(r.out.split('\n')[1]!) as string[]).sort();
  // Every committed migration of each configuration, applied exactly once across the 8 processes.
  const expected = [
    ...committedMigrations('internal').map((m) => ({ config: 'internal:pgstate', migration: m })),
    ...committedMigrations('meltano-seed').map((m) => ({ config: 'meltano-seed:public', migration: m })),
    ...committedMigrations('pulumi').map((m) => ({ config: 'pulumi:public.pulumi_state', migration: m })),
  ];
  expect(expected.length).toBeGreaterThanOrEqual(4);
  expect(applied).toEqual(expected.map((e) => `${e.config} ${e.migration}`).sort());

  const pool = new pg.Pool({ connectionString: db.url });
  pool.on('connect', (c) => c.on('error', () => {})); // DROP DATABASE ... WITH (FORCE) may race a closing client
  try {
    const { rows } = await pool.query('SELECT config, migration FROM pgstate.migrations ORDER BY config, migration');
    expect(rows).toEqual(expected);
    const tables = await pool.query(
      "SELECT tablename FROM pg_tables WHERE schemaname IN ('public', 'pgstate') ORDER BY tablename",
    );
    expect(tables.rows.map((r) => r.tablename)).toEqual([
      'leases',
      'meltano_state',
      'meltano_state_locks',
      'migrations',
      'pulumi_state',
      'pulumi_state_objects',
      'pulumi_state_stacks',
    ]);
  } finally {
    await pool.end();
  }
});

it('a migrator killed mid-migration leaves no lock and no partial state; the next one applies it', async () => {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on('connect', (c) => c.on('error', () => {}));
  const blocker = await pool.connect();
  try {
    await migrate(pool, { adapter: 'internal' });
    await pool.query('CREATE SCHEMA IF NOT EXISTS crash');
    // An uncommitted relation named like the prefix index makes the child's migration transaction wait in its
    // second statement (CREATE INDEX), after it created the table, while it holds the migration lock.
    await blocker.query('BEGIN');
    await blocker.query('CREATE TABLE crash.pulumi_state_key_prefix_idx (x int)');
    const child = start(db.url, { adapter: 'pulumi', schema: 'crash' });
    await child.ready;
    child.proc.stdin?.write('go\n');
    const lockKeyLow = Number(BigInt(MIGRATION_LOCK_KEY) & 0xffffffffn);
    for (;;) {
      const { rows } = await pool.query(
        `SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = $1)::int AS held,
                (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                   AND wait_event_type = 'Lock' AND query LIKE 'CREATE INDEX%')::int AS waiting`,
        [lockKeyLow],
      );
      if (rows[0].held === 1 && rows[0].waiting === 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.proc.kill('SIGKILL');
    await child.done;
    await blocker.query('ROLLBACK');
    // The killed migration's CREATE TABLE was rolled back with it.
    const partial = await pool.query("SELECT to_regclass('crash.pulumi_state') AS t");
    expect(partial.rows[0].t).toBeNull();

    const result = await migrate(pool, { adapter: 'pulumi', schema: 'crash' }, { lockTimeoutMs: 30_000 });
    expect(result.applied.map((m) => `${m.config} ${m.migration}`)).toEqual([
      'pulumi:crash.pulumi_state 0000_init',
      'pulumi:crash.pulumi_state 0001_side_tables',
    ]);
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM pgstate.migrations WHERE config = 'pulumi:crash.pulumi_state'",
    );
    expect(rows[0].n).toBe(2);
    const cols = await pool.query(
      "SELECT column_name FROM information_schema.columns WHERE table_schema = 'crash' AND table_name = 'pulumi_state' ORDER BY ordinal_position",
    );
    expect(cols.rows.map((r) => r.column_name)).toEqual(['key', 'data', 'updated_at']);
  } finally {
    blocker.release();
    await pool.end();
  }
});
