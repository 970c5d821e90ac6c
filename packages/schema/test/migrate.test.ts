import { createTestDatabase } from '@pgstate/core/testing';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  assertMigrated,
  MIGRATION_LOCK_KEY,
  meltanoStateTable,
  migrate,
  migrationStatus,
  pulumiStateTable,
  resolveTarget,
} from '../src/index.js';
import { committedMigrations } from './committed.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'schema_migrate');
  pool = new pg.Pool({ connectionString: db.url, max: 10 });
  pool.on('connect', (c) => c.on('error', () => {})); // DROP DATABASE ... WITH (FORCE) may race a closing client
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

async function columns(schema: string, table: string) {
  const { rows } = await pool.query(
    `SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
     WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
    [schema, table],
  );
  return rows;
}

async function indexes(schema: string, table: string) {
  const { rows } = await pool.query(
    'SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY indexname',
    [schema, table],
  );
  return rows as Array<{ indexname: string; indexdef: string }>;
}

describe('migrate', () => {
  it('creates the Pulumi seed table with its prefix index, and records it in the journal', async () => {
    const result = await migrate(pool, { adapter: 'pulumi' });
    expect(result.applied.map((m) => `${m.config} ${m.migration}`)).toEqual([
      'internal:pgstate 0000_init',
      'pulumi:public.pulumi_state 0000_init',
      'pulumi:public.pulumi_state 0001_side_tables',
    ]);
    expect(await columns('public', 'pulumi_state')).toEqual([
      { column_name: 'key', data_type: 'text', is_nullable: 'NO', column_default: null },
      { column_name: 'data', data_type: 'bytea', is_nullable: 'NO', column_default: null },
      { column_name: 'updated_at', data_type: 'timestamp with time zone', is_nullable: 'NO', column_default: 'now()' },
    ]);
    const idx = await indexes('public', 'pulumi_state');
    expect(idx.map((i) => i.indexname)).toEqual(['pulumi_state_key_prefix_idx', 'pulumi_state_pkey']);
    expect(idx[0]!.indexdef).toContain('text_pattern_ops');

    // The Drizzle table works against what the migration created.
    const orm = drizzle(pool);
    const table = pulumiStateTable();
    await orm.insert(table).values({ key: '.pulumi/meta.yaml', data: Buffer.from('version: 1\n') });
    const [row] = await orm.select().from(table).where(eq(table.key, '.pulumi/meta.yaml'));
    expect(row!.data.toString()).toBe('version: 1\n');

    // Second run: nothing to do.
    expect((await migrate(pool, { adapter: 'pulumi' })).applied).toEqual([]);
    const status = await migrationStatus(pool, { adapter: 'pulumi' });
    expect(status.upToDate).toBe(true);
    expect(status.configs.map((c) => [c.config, c.applied.length, c.pending])).toEqual([
      ['internal:pgstate', 1, []],
      ['pulumi:public.pulumi_state', 2, []],
    ]);
  });

  it('lets two Pulumi configurations coexist in one schema and across schemas (index names derived)', async () => {
    await migrate(pool, { adapter: 'pulumi', table: 'team_a' });
    await migrate(pool, { adapter: 'pulumi', schema: 'infra', table: 'team_a' });
    expect((await indexes('public', 'team_a')).map((i) => i.indexname)).toEqual([
      'team_a_key_prefix_idx',
      'team_a_pkey',
    ]);
    expect((await indexes('infra', 'team_a')).map((i) => i.indexname)).toEqual([
      'team_a_key_prefix_idx',
      'team_a_pkey',
    ]);
    const orm = drizzle(pool);
    await orm.insert(pulumiStateTable({ table: 'team_a' })).values({ key: 'a', data: Buffer.from('public') });
    await orm
      .insert(pulumiStateTable({ schema: 'infra', table: 'team_a' }))
      .values({ key: 'a', data: Buffer.from('infra') });
    const rows = await orm.select().from(pulumiStateTable({ schema: 'infra', table: 'team_a' }));
    expect(rows.map((r) => r.data.toString())).toEqual(['infra']);
    const { rows: journal } = await pool.query(
      "SELECT DISTINCT config FROM pgstate.migrations WHERE config LIKE 'pulumi:%' ORDER BY config",
    );
    expect(journal.map((r) => r.config)).toEqual([
      'pulumi:infra.team_a',
      'pulumi:public.pulumi_state',
      'pulumi:public.team_a',
    ]);
  });

  it('creates the Pulumi side tables with names derived from the table, and adopts a native table Pulumi created', async () => {
    await migrate(pool, { adapter: 'pulumi', schema: 'side', table: 'team_b' });
    const { rows: side } = await pool.query(
      "SELECT tablename FROM pg_tables WHERE schemaname = 'side' ORDER BY tablename",
    );
    expect(side.map((r) => r.tablename)).toEqual(['team_b', 'team_b_objects', 'team_b_stacks']);
    expect((await indexes('side', 'team_b_objects')).map((i) => i.indexname)).toEqual(['team_b_objects_pkey']);
    // What `pulumi login postgres://` runs on open, before pgstate ever migrated this table.
    await pool.query('CREATE SCHEMA native');
    await pool.query(
      'CREATE TABLE native.pstate (key TEXT PRIMARY KEY, data JSON NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())',
    );
    await pool.query(`INSERT INTO native.pstate (key, data) VALUES ('db/.pulumi/meta.yaml', '{"data":"eA=="}')`);
    const result = await migrate(pool, { adapter: 'pulumi', layout: 'native', schema: 'native', table: 'pstate' });
    expect(result.applied.map((m) => `${m.config} ${m.migration}`)).toEqual(['pulumi-native:native.pstate 0000_init']);
    expect((await columns('native', 'pstate')).map((c) => `${c.column_name} ${c.data_type}`)).toEqual([
      'key text',
      'data json',
      'updated_at timestamp with time zone',
    ]);
    expect((await pool.query('SELECT count(*)::int AS n FROM native.pstate')).rows[0].n).toBe(1);
    expect((await indexes('native', 'pstate')).map((i) => i.indexname)).toEqual([
      'pstate_key_prefix_idx',
      'pstate_pkey',
    ]);
    expect(
      (await pool.query("SELECT tablename FROM pg_tables WHERE schemaname = 'native' ORDER BY 1")).rows.map(
        (r) => r.tablename,
      ),
    ).toEqual(['pstate', 'pstate_objects', 'pstate_stacks']);
    expect(() => resolveTarget({ adapter: 'pulumi', layout: 'jsonb' as 'native' })).toThrow(
      expect.objectContaining({ code: 'BAD_SETTING' }),
    );
  });

  it('creates the Meltano seed tables, with the expires_at lock column defaulting to 5 minutes on', async () => {
    await migrate(pool, { adapter: 'meltano', layout: 'seed', schema: 'meltano' });
    expect((await columns('meltano', 'meltano_state')).map((c) => `${c.column_name} ${c.data_type}`)).toEqual([
      'state_id character varying',
      'partial_state text',
      'completed_state text',
      'updated_at timestamp without time zone',
    ]);
    expect(
      (await columns('meltano', 'meltano_state_locks')).map((c) => `${c.column_name} ${c.data_type} ${c.is_nullable}`),
    ).toEqual([
      'state_id character varying NO',
      'locked_at timestamp without time zone YES',
      'lock_id character varying YES',
      'expires_at timestamp with time zone YES',
    ]);
    // A lock row as the Python seed plugin writes it (state_id, lock_id only) gets an absolute expiry.
    await pool.query("INSERT INTO meltano.meltano_state_locks (state_id, lock_id) VALUES ('dev:a-to-b', 'x')");
    const { rows } = await pool.query(
      'SELECT round(extract(epoch FROM expires_at - now()))::int AS left FROM meltano.meltano_state_locks',
    );
    expect(rows).toEqual([{ left: 300 }]);
    expect((await indexes('meltano', 'meltano_state')).map((i) => i.indexname)).toEqual([
      'meltano_state_pkey',
      'meltano_state_state_id_c_idx',
    ]);
  });

  it('upgrades the seed tables the Python seed plugin created first, and checks their shape, not only the journal', async () => {
    await pool.query('CREATE SCHEMA pyseed');
    // The plugin's own DDL (its first version), with a lock row of a live Python holder.
    await pool.query(`CREATE TABLE pyseed.meltano_state (state_id VARCHAR(900) PRIMARY KEY, partial_state TEXT,
      completed_state TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)`);
    await pool.query(`CREATE TABLE pyseed.meltano_state_locks (state_id VARCHAR(900) PRIMARY KEY,
      locked_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, lock_id VARCHAR(255))`);
    await pool.query("INSERT INTO pyseed.meltano_state_locks (state_id, lock_id) VALUES ('dev:held', 'py')");
    const target = { adapter: 'meltano', layout: 'seed', schema: 'pyseed' } as const;
    const result = await migrate(pool, target);
    expect(result.applied.map((m) => m.migration)).toEqual(committedMigrations('meltano-seed'));
    expect((await columns('pyseed', 'meltano_state_locks')).map((c) => `${c.column_name} ${c.column_default}`)).toEqual(
      ['state_id null', 'locked_at CURRENT_TIMESTAMP', 'lock_id null', "expires_at (now() + '00:05:00'::interval)"],
    );
    // The row that was there gets 5 minutes from the migration: a live holder stays live.
    const { rows } = await pool.query('SELECT expires_at > now() AS live FROM pyseed.meltano_state_locks');
    expect(rows).toEqual([{ live: true }]);
    expect((await migrationStatus(pool, target)).upToDate).toBe(true);

    // The journal says migrated, but the column went away: status, assertMigrated, dry run and migrate say so.
    await pool.query('ALTER TABLE pyseed.meltano_state_locks DROP COLUMN expires_at');
    const status = await migrationStatus(pool, target);
    expect(status.upToDate).toBe(false);
    expect(status.configs.at(-1)?.shape).toEqual(['pyseed.meltano_state_locks has no column expires_at']);
    await expect(assertMigrated(pool, target)).rejects.toMatchObject({
      code: 'MIGRATIONS_PENDING',
      message: expect.stringContaining('pyseed.meltano_state_locks has no column expires_at'),
    });
    expect((await migrate(pool, target, { dryRun: true })).shape).toEqual([
      'pyseed.meltano_state_locks has no column expires_at',
    ]);
    await expect(migrate(pool, target)).rejects.toMatchObject({ code: 'MIGRATIONS_PENDING' });
    await pool.query('ALTER TABLE pyseed.meltano_state_locks ADD COLUMN expires_at timestamptz');
    await pool.query('ALTER TABLE pyseed.meltano_state DROP CONSTRAINT meltano_state_pkey');
    expect((await migrationStatus(pool, target)).configs.at(-1)?.shape).toEqual([
      'pyseed.meltano_state has no primary key or unique index on (state_id)',
    ]);
    await pool.query('DROP TABLE pyseed.meltano_state');
    expect((await migrationStatus(pool, target)).configs.at(-1)?.shape).toEqual([
      'table pyseed.meltano_state is missing',
    ]);
  });

  it('adopts a Meltano `state` table that the Python side already created', async () => {
    await pool.query('CREATE SCHEMA py');
    await pool.query(`CREATE TABLE py.state (state_id VARCHAR(900) PRIMARY KEY, partial_state TEXT,
      completed_state TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)`);
    await pool.query(`INSERT INTO py.state (state_id, completed_state) VALUES ('dev:x', '{"singer_state":{}}')`);
    const result = await migrate(pool, { adapter: 'meltano', layout: 'plugin', schema: 'py' });
    expect(result.applied.map((m) => `${m.config} ${m.migration}`)).toEqual(
      committedMigrations('meltano-plugin').map((m) => `meltano-plugin:py.state ${m}`),
    );
    const rows = await drizzle(pool)
      .select()
      .from(meltanoStateTable({ schema: 'py' }));
    expect(rows.map((r) => r.completedState)).toEqual(['{"singer_state":{}}']);
    // The adopted table gains the byte-order index that makes `list(pattern)` an index range scan.
    expect(await indexes('py', 'state')).toEqual([
      { indexname: 'state_pkey', indexdef: 'CREATE UNIQUE INDEX state_pkey ON py.state USING btree (state_id)' },
      {
        indexname: 'state_state_id_c_idx',
        indexdef: 'CREATE INDEX state_state_id_c_idx ON py.state USING btree (state_id COLLATE "C")',
      },
    ]);
    expect((await migrate(pool, { adapter: 'meltano', layout: 'plugin', schema: 'py' })).applied).toEqual([]);
  });

  it('adopts a Meltano `state` table that already has the pgstate index (a migrator that died after DDL, or made by hand)', async () => {
    await pool.query('CREATE SCHEMA py2');
    await pool.query(`CREATE TABLE py2.runs (state_id VARCHAR(900) PRIMARY KEY, partial_state TEXT,
      completed_state TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)`);
    await pool.query('CREATE INDEX runs_state_id_c_idx ON py2.runs (state_id COLLATE "C")');
    const result = await migrate(pool, { adapter: 'meltano', layout: 'plugin', schema: 'py2', table: 'runs' });
    expect(result.applied.map((m) => m.migration)).toEqual(committedMigrations('meltano-plugin'));
    expect((await indexes('py2', 'runs')).map((i) => i.indexname)).toEqual(['runs_pkey', 'runs_state_id_c_idx']);
  });

  it('creates the systemdb layout without a server default on updated_at', async () => {
    await migrate(pool, { adapter: 'meltano', layout: 'systemdb', schema: 'sysdb', table: 'state' });
    const cols = await columns('sysdb', 'state');
    expect(cols.find((c) => c.column_name === 'updated_at')?.column_default).toBeNull();
    expect((await indexes('sysdb', 'state')).map((i) => i.indexname)).toEqual(['state_pkey', 'state_state_id_c_idx']);
  });

  it('dry-run returns the SQL and writes nothing', async () => {
    const result = await migrate(pool, { adapter: 'pulumi', schema: 'dry', table: 'st' }, { dryRun: true });
    expect(result.dryRun).toBe(true);
    expect(result.sql).toContain('CREATE TABLE IF NOT EXISTS "dry"."st"');
    expect(result.sql).toContain('CREATE INDEX IF NOT EXISTS "st_key_prefix_idx" ON "dry"."st"');
    const { rows } = await pool.query(
      "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'dry')::int AS schemas, " +
        "(SELECT count(*) FROM pgstate.migrations WHERE config = 'pulumi:dry.st')::int AS journal",
    );
    expect(rows[0]).toEqual({ schemas: 0, journal: 0 });
    expect((await migrationStatus(pool, { adapter: 'pulumi', schema: 'dry', table: 'st' })).upToDate).toBe(false);
  });

  it('rejects hostile names before touching the database', async () => {
    const hostile = [
      { adapter: 'pulumi', table: 'x"; DROP TABLE pulumi_state; --' },
      { adapter: 'pulumi', schema: 'public; DROP SCHEMA pgstate CASCADE' },
      { adapter: 'meltano', layout: 'plugin', table: 'state"' },
      { adapter: 'powersync', schema: '' },
      { adapter: 'pulumi', table: 'a'.repeat(64) },
      { adapter: 'pulumi', table: 'a'.repeat(49) }, // its index name would pass 63 bytes
      { adapter: 'meltano', layout: 'plugin', table: 'a'.repeat(49) }, // <table>_state_id_c_idx would too
    ] as const;
    for (const target of hostile) {
      await expect(migrate(pool, target), JSON.stringify(target)).rejects.toMatchObject({
        code: 'INVALID_IDENTIFIER',
      });
    }
    await expect(migrate(pool, { adapter: 'internal', schema: 'x y' })).rejects.toMatchObject({
      code: 'INVALID_IDENTIFIER',
      message: expect.stringContaining('schema name'),
    });
    // A 48-byte table name is the longest whose index name still fits.
    expect(() => resolveTarget({ adapter: 'pulumi', table: 'a'.repeat(48) })).not.toThrow();
    const { rows } = await pool.query("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'pulumi_state'");
    expect(rows[0].n).toBe(1);
  });

  it('many concurrent migrate() calls in one process apply every migration once', async () => {
    const target = { adapter: 'pulumi', schema: 'race', table: 'one' } as const;
    const results = await Promise.all(Array.from({ length: 8 }, () => migrate(pool, target)));
    expect(results.flatMap((r) => r.applied).map((m) => `${m.config} ${m.migration}`)).toEqual([
      'pulumi:race.one 0000_init',
      'pulumi:race.one 0001_side_tables',
    ]);
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM pgstate.migrations WHERE config = 'pulumi:race.one'",
    );
    expect(rows[0].n).toBe(2);
  });

  it('status flags an applied migration whose committed SQL changed, and assertMigrated names what is pending', async () => {
    const target = { adapter: 'pulumi', schema: 'edited' } as const;
    await expect(assertMigrated(pool, target)).rejects.toMatchObject({
      code: 'MIGRATIONS_PENDING',
      message: expect.stringContaining('pulumi:edited.pulumi_state 0000_init'),
      fix: expect.stringContaining('pgstate migrate'),
    });
    await migrate(pool, target);
    await assertMigrated(pool, target);
    await pool.query("UPDATE pgstate.migrations SET hash = 'old' WHERE config = 'pulumi:edited.pulumi_state'");
    const status = await migrationStatus(pool, target);
    expect(status.configs[1]!.applied.map((a) => [a.migration, a.modified])).toEqual([
      ['0000_init', true],
      ['0001_side_tables', true],
    ]);
    expect(status.configs[0]!.applied.every((a) => !a.modified)).toBe(true);
  });

  it('a different internal schema keeps its own journal', async () => {
    const result = await migrate(pool, { adapter: 'pulumi', table: 'alt' }, { internalSchema: 'pgstate_alt' });
    expect([...new Set(result.applied.map((m) => m.config))]).toEqual(['internal:pgstate_alt', 'pulumi:public.alt']);
    const { rows } = await pool.query('SELECT DISTINCT config FROM pgstate_alt.migrations ORDER BY config');
    expect(rows.map((r) => r.config)).toEqual(['internal:pgstate_alt', 'pulumi:public.alt']);
    expect((await migrationStatus(pool, { adapter: 'pulumi', table: 'alt' })).upToDate).toBe(false);
  });

  it('waits for the migration lock, or fails with LOCK_TIMEOUT when asked to, writing nothing', async () => {
    const holder = await pool.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
      const target = { adapter: 'pulumi', schema: 'waits' } as const;
      await expect(migrate(pool, target, { lockTimeoutMs: 100 })).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
      expect((await migrationStatus(pool, target)).upToDate).toBe(false);
      const waiting = migrate(pool, target);
      await holder.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]);
      expect([...new Set((await waiting).applied.map((m) => m.config))]).toEqual(['pulumi:waits.pulumi_state']);
    } finally {
      holder.release();
    }
  });

  it('the internal target keeps its journal in its own schema', async () => {
    await migrate(pool, { adapter: 'internal', schema: 'own' });
    const { rows } = await pool.query('SELECT config FROM own.migrations');
    expect(rows.map((r) => r.config)).toEqual(['internal:own']);
    expect((await migrationStatus(pool, { adapter: 'internal', schema: 'own' })).upToDate).toBe(true);
    await expect(
      migrate(pool, { adapter: 'internal', schema: 'own' }, { internalSchema: 'other' }),
    ).rejects.toMatchObject({ code: 'BAD_SETTING' });
  });
});

describe('PowerSync keeps its journal in its own schema', () => {
  it('by default, so migrate and migrationStatus (the CLI, doctor, the storage module) agree without options', async () => {
    const target = { adapter: 'powersync', schema: 'ps_journal_default' } as const;
    const { applied } = await migrate(pool, target);
    expect(applied.length).toBeGreaterThan(0);
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ps_journal_default.migrations');
    expect(rows[0]?.n).toBe(applied.length);
    const status = await migrationStatus(pool, target);
    expect(status.configs.flatMap((c) => c.pending)).toEqual([]);
    // The same answer when the caller names the schema explicitly, as the storage module does.
    const explicit = await migrationStatus(pool, target, { internalSchema: 'ps_journal_default' });
    expect(explicit.configs.flatMap((c) => c.pending)).toEqual([]);
  });
});
