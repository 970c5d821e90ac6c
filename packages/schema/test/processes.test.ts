import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import type { MigrationTarget } from '../src/index.js';

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
  expect(applied).toEqual([
    'internal:pgstate 0000_init',
    'meltano-seed:public 0000_init',
    'pulumi:public.pulumi_state 0000_init',
  ]);

  const pool = new pg.Pool({ connectionString: db.url });
  pool.on('connect', (c) => c.on('error', () => {})); // DROP DATABASE ... WITH (FORCE) may race a closing client
  try {
    const { rows } = await pool.query('SELECT config, migration FROM pgstate.migrations ORDER BY config');
    expect(rows).toEqual([
      { config: 'internal:pgstate', migration: '0000_init' },
      { config: 'meltano-seed:public', migration: '0000_init' },
      { config: 'pulumi:public.pulumi_state', migration: '0000_init' },
    ]);
    const tables = await pool.query(
      "SELECT tablename FROM pg_tables WHERE schemaname IN ('public', 'pgstate') ORDER BY tablename",
    );
    expect(tables.rows.map((r) => r.tablename)).toEqual([
      'leases',
      'meltano_state',
      'meltano_state_locks',
      'migrations',
      'pulumi_state',
    ]);
  } finally {
    await pool.end();
  }
});
