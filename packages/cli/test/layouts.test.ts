/**
 * Every command accepts every adapter's settings the same way (issue 16): Pulumi's native layout and key prefix in
 * the URL or as flags, in `migrate`, `doctor`, `pulumi`, `serve`; per-bucket schema and layout in `serve`; commands
 * pointed at another layout's table refuse and name the right `--layout`; reading commands never write.
 */
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli, spawnServe } from './helpers.js';

const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used' });
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_layouts');
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
});
afterAll(async () => {
  await admin?.end();
  await db?.drop();
});

/** The URL with query parameters added. */
function urlWith(params: Record<string, string>): string {
  const u = new URL(db.url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

/** The table `pulumi login postgres://` creates and one checkpoint in it, as Pulumi's own driver writes them. */
async function pulumiNativeStore(schema: string): Promise<void> {
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.query(
    `CREATE TABLE ${schema}.pulumi_state (key text PRIMARY KEY, data json NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
  );
  const checkpoint = JSON.stringify({
    version: 3,
    checkpoint: { stack: 'organization/app/dev', latest: { resources: [] } },
  });
  await admin.query(`INSERT INTO ${schema}.pulumi_state (key, data) VALUES ($1, json_build_object('data', $2::text))`, [
    'db/.pulumi/stacks/app/dev.json',
    Buffer.from(checkpoint).toString('base64'),
  ]);
}

/** Which of pgstate's tables and journal rows exist: what a reading command must never create. */
async function written(schema: string): Promise<{ tables: string[]; journal: number }> {
  const tables = await admin.query<{ t: string }>(
    "SELECT tablename AS t FROM pg_tables WHERE schemaname = $1 OR schemaname = 'pgstate' ORDER BY 1",
    [schema],
  );
  const exists = (await admin.query("SELECT to_regclass('pgstate.migrations') IS NOT NULL AS ok")).rows[0].ok;
  const journal = exists
    ? (
        await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pgstate.migrations WHERE config LIKE $1', [
          `%${schema}%`,
        ])
      ).rows[0]!.n
    : 0;
  return { tables: tables.rows.map((r) => r.t), journal };
}

describe('Pulumi’s native table (the one `pulumi login postgres://` writes)', () => {
  it('reading commands refuse it without the native layout, name --layout native, and write nothing', async () => {
    await pulumiNativeStore('nat_read');
    const before = await written('nat_read');
    const stacks = await runCli(['--url', urlWith({ schema: 'nat_read' }), 'pulumi', 'stacks'], env);
    expect(stacks.code, stacks.stderr).toBe(2);
    expect(stacks.stderr).toContain('nat_read.pulumi_state has the Pulumi native layout, not bytea');
    expect(stacks.stderr).toContain('--layout native');
    expect(await written('nat_read')).toEqual(before);
    // With the native layout but before migrations: still nothing written, the fix names the native migrate.
    const pending = await runCli(['--url', urlWith({ schema: 'nat_read', layout: 'native' }), 'pulumi', 'stacks'], env);
    expect(pending.code).toBe(5);
    expect(pending.stderr).toContain('pgstate migrate --adapter pulumi --layout native --schema nat_read');
    expect(await written('nat_read')).toEqual(before);
  });

  it('migrate refuses the bytea set on it; doctor advises the native layout; both work with --layout native', async () => {
    await pulumiNativeStore('nat_mig');
    const wrong = await runCli(['--url', db.url, 'migrate', '--adapter', 'pulumi', '--schema', 'nat_mig'], env);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('nat_mig.pulumi_state has the Pulumi native layout, not bytea');
    const column = await admin.query(
      "SELECT data_type FROM information_schema.columns WHERE table_schema = 'nat_mig' AND table_name = 'pulumi_state' AND column_name = 'data'",
    );
    expect(column.rows).toEqual([{ data_type: 'json' }]);

    const advice = await runCli(
      ['--url', db.url, 'doctor', '--json', '--adapter', 'pulumi', '--schema', 'nat_mig'],
      env,
    );
    const check = (JSON.parse(advice.stdout).data.checks as Array<{ id: string; status: string; fix?: string }>).find(
      (c) => c.id === 'migrations:pulumi',
    );
    expect(check).toMatchObject({ status: 'fail' });
    expect(check?.fix).toContain('pgstate migrate --adapter pulumi --layout native --schema nat_mig');

    for (const args of [
      ['migrate', '--adapter', 'pulumi', '--layout', 'native', '--schema', 'nat_mig'],
      ['doctor', '--adapter', 'pulumi', '--layout', 'native', '--schema', 'nat_mig'],
    ]) {
      const r = await runCli(['--url', db.url, ...args], env);
      expect(r.code, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(0);
    }
    // The URL form works for every command too (?layout=native&key_prefix=).
    const url = urlWith({ schema: 'nat_mig', layout: 'native', key_prefix: 'db/' });
    for (const args of [
      ['doctor', '--adapter', 'pulumi'],
      ['migrate', '--adapter', 'pulumi', '--check'],
    ]) {
      const r = await runCli(['--url', url, ...args], env);
      expect(r.code, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(0);
    }
    const stacks = await runCli(['--url', url, 'pulumi', 'stacks', '--json'], env);
    expect(stacks.code, stacks.stderr).toBe(0);
    expect(JSON.parse(stacks.stdout).data).toEqual([expect.objectContaining({ name: 'organization/app/dev' })]);
  });

  it('serve serves it (?layout=native&key_prefix= in the URL, or per bucket)', async () => {
    await pulumiNativeStore('nat_serve');
    const migrated = await runCli(
      ['--url', db.url, 'migrate', '--adapter', 'pulumi', '--layout', 'native', '--schema', 'nat_serve'],
      env,
    );
    expect(migrated.code, migrated.stderr).toBe(0);
    for (const [url, bucket] of [
      [urlWith({ schema: 'nat_serve', layout: 'native', key_prefix: 'db/' }), 'state=pulumi'],
      [db.url, 'state=pulumi?schema=nat_serve&layout=native&key_prefix=db/'],
    ] as const) {
      const s = spawnServe<{ url: string; buckets: unknown[] }>(
        ['--url', url, '--listen', '127.0.0.1:0', '--bucket', bucket],
        env,
      );
      try {
        const doc = await s.doc;
        expect(doc.buckets).toEqual([{ name: 'state', handler: 'pulumi', layout: 'native', schema: 'nat_serve' }]);
        const got = await fetch(`${doc.url}/state/.pulumi/stacks/app/dev.json`);
        expect(got.status).toBe(200);
        expect(await got.text()).toContain('organization/app/dev');
      } finally {
        s.child.kill('SIGTERM');
        await s.exited;
      }
    }
  });
});

describe('settings from the URL path and the environment', () => {
  it('plain doctor (every adapter) warns on Pulumi’s native table and names --layout native', async () => {
    const other = await createTestDatabase(inject('pgUrl'), 'cli_layouts_plain');
    const pool = new pg.Pool({ connectionString: other.url, max: 1 });
    try {
      await pool.query(
        'CREATE TABLE public.pulumi_state (key text PRIMARY KEY, data json NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())',
      );
      const r = await runCli(['--url', other.url, 'doctor', '--json'], env);
      const check = (JSON.parse(r.stdout).data.checks as Array<{ id: string; status: string; fix?: string }>).find(
        (c) => c.id === 'migrations:pulumi',
      );
      expect(check).toMatchObject({ status: 'warn' });
      expect(check?.fix).toContain('--layout native');
    } finally {
      await pool.end();
      await other.drop();
    }
  });

  it('migrate --adapter meltano reads MELTANO_STATE_BACKEND_POSTGRES_SCHEMA like the store does', async () => {
    const r = await runCli(['--url', db.url, 'migrate', '--adapter', 'meltano'], {
      ...env,
      MELTANO_STATE_BACKEND_POSTGRES_SCHEMA: 'mel_env',
    });
    expect(r.code, r.stderr).toBe(0);
    expect((await admin.query("SELECT to_regclass('mel_env.meltano_state') AS t")).rows[0].t).not.toBeNull();
  });
});

describe('Meltano buckets in serve', () => {
  it('honour ?schema= (URL or per bucket) and migrate themselves on an unmigrated database, never a 500', async () => {
    for (const [url, bucket, schema] of [
      [urlWith({ schema: 'mel_url' }), 'mel=meltano:state', 'mel_url'],
      [db.url, 'mel=meltano:state?schema=mel_bucket', 'mel_bucket'],
    ] as const) {
      const s = spawnServe<{ url: string }>(['--url', url, '--listen', '127.0.0.1:0', '--bucket', bucket], env);
      try {
        const doc = await s.doc;
        const put = await fetch(`${doc.url}/mel/state/dev:tap-to-target/state.json`, {
          method: 'PUT',
          body: '{"completed": {"singer_state": {"a": 1}}, "partial": {}}',
        });
        expect(put.status, await put.text()).toBe(200);
        const { rows } = await admin.query(`SELECT state_id FROM ${schema}.meltano_state`);
        expect(rows).toEqual([{ state_id: 'dev:tap-to-target' }]);
      } finally {
        s.child.kill('SIGTERM');
        await s.exited;
      }
    }
    const { rows } = await admin.query("SELECT to_regclass('public.meltano_state') AS t");
    expect(rows[0].t).toBeNull();
  });

  it('a bucket setting the adapter does not read is a usage error', async () => {
    const r = await runCli(['--url', db.url, 'serve', '--bucket', 'mel=meltano?key_prefix=x'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('meltano has no setting "key_prefix"');
  });
});
