// The Pulumi tables come from @pgstate/schema's migrator only: `pgstate migrate --adapter pulumi` (or the store's
// own first-use migrate) creates them, journals them, and a DML-only role can then use the store.
import { randomBytes } from 'node:crypto';
import { createTestDatabase } from '@pgstate/core/testing';
import { grantRuntimeAccess, migrate, runtimeAccessSql } from '@pgstate/schema';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PulumiBlobStore, PulumiStateStore } from '../src/index.js';

const suffix = randomBytes(4).toString('hex');
const runtimeRole = `pulumi_rt_${suffix}`;
const password = `pw-${suffix}`;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Pool;
const closers: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'pulumi_mig');
  admin = new pg.Pool({ connectionString: db.url, max: 2 });
  await admin.query(`CREATE ROLE "${runtimeRole}" LOGIN PASSWORD '${password}'`);
  await admin.query(`GRANT CONNECT ON DATABASE "${db.name}" TO "${runtimeRole}"`);
});
afterAll(async () => {
  for (const c of closers) await c.close();
  await admin.end();
  await db.drop();
  const server = new pg.Client({ connectionString: inject('pgUrl') });
  await server.connect();
  await server.query(`DROP ROLE IF EXISTS "${runtimeRole}"`);
  await server.end();
});

function runtimeUrl(params: Record<string, string>): string {
  const url = new URL(db.url);
  url.username = runtimeRole;
  url.password = password;
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}

const tablesIn = async (schema: string) =>
  (await admin.query('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', [schema])).rows.map(
    (r) => r.tablename as string,
  );

describe('tables come from @pgstate/schema', () => {
  it('first use migrates: blob table + side tables, journaled, names derived from the table', async () => {
    const store = new PulumiBlobStore({ connection: db.url, table: 'team_a' });
    closers.push(store);
    await store.put('.pulumi/meta.yaml', Buffer.from('version: 1\n'));
    expect(await tablesIn('public')).toEqual(['team_a', 'team_a_objects', 'team_a_stacks']);
    const journal = await admin.query(
      "SELECT config, migration FROM pgstate.migrations WHERE config LIKE 'pulumi%' ORDER BY 1, 2",
    );
    expect(journal.rows).toEqual([
      { config: 'pulumi:public.team_a', migration: '0000_init' },
      { config: 'pulumi:public.team_a', migration: '0001_side_tables' },
    ]);
    const indexes = await admin.query(
      "SELECT indexname FROM pg_indexes WHERE tablename LIKE 'team_a%' ORDER BY indexname",
    );
    expect(indexes.rows.map((r) => r.indexname)).toEqual([
      'team_a_key_prefix_idx',
      'team_a_objects_pkey',
      'team_a_pkey',
      'team_a_stacks_pkey',
    ]);
    // A second configuration in the same database gets its own, non-colliding objects.
    const other = new PulumiBlobStore({ connection: db.url, table: 'team_b', layout: 'native', keyPrefix: 'db/' });
    closers.push(other);
    await other.put('k', Buffer.from('v'));
    expect(await tablesIn('public')).toEqual([
      'team_a',
      'team_a_objects',
      'team_a_stacks',
      'team_b',
      'team_b_objects',
      'team_b_stacks',
    ]);
    const native = await admin.query(
      "SELECT data_type FROM information_schema.columns WHERE table_name = 'team_b' AND column_name = 'data'",
    );
    expect(native.rows).toEqual([{ data_type: 'json' }]);
  });

  it('a DML-only role uses the store after an admin migrated and granted; the grants cover the side tables', async () => {
    const target = { adapter: 'pulumi', schema: 'infra', table: 'rt_state' } as const;
    await migrate(admin, target);
    const grants = await grantRuntimeAccess(admin, target, runtimeRole);
    expect(grants).toEqual(runtimeAccessSql(target, runtimeRole));
    expect(grants).toContain(
      `GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "infra"."rt_state_objects" TO "${runtimeRole}"`,
    );
    expect(grants).toContain(
      `GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "infra"."rt_state_stacks" TO "${runtimeRole}"`,
    );

    // Default options: the store runs migrate, which is up to date, so it needs no DDL right.
    const state = new PulumiStateStore(runtimeUrl({ schema: 'infra', table: 'rt_state' }));
    closers.push(state);
    await state.createStack('app', 'dev');
    const deployment = { version: 3, deployment: { manifest: { time: '2026-01-01T00:00:00Z' }, resources: [] } };
    await state.importDeployment('app', 'dev', deployment);
    expect((await state.listStacks()).map((s) => s.name)).toEqual(['organization/app/dev']);
    const index = await admin.query('SELECT key, project, stack FROM infra.rt_state_stacks');
    expect(index.rows).toEqual([{ key: '.pulumi/stacks/app/dev.json', project: 'app', stack: 'dev' }]);
    const objects = await admin.query('SELECT count(*)::int AS n FROM infra.rt_state_objects');
    expect(objects.rows[0].n).toBeGreaterThanOrEqual(2);

    // The same role on a configuration nobody migrated: PERMISSION_DENIED naming the fix, nothing created.
    const denied = new PulumiBlobStore({ connection: runtimeUrl({ schema: 'infra', table: 'not_migrated' }) });
    closers.push(denied);
    const error = await denied.put('k', Buffer.from('v')).catch((e) => e);
    expect(error).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(error.fix).toContain('pgstate migrate');
    expect(await tablesIn('infra')).toEqual(['rt_state', 'rt_state_objects', 'rt_state_stacks']);
  });

  it('an older table without side tables (created by hand or by the seed backend) is adopted by migrate', async () => {
    await admin.query(
      'CREATE TABLE legacy (key text PRIMARY KEY, data bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())',
    );
    await admin.query("INSERT INTO legacy (key, data) VALUES ('a', '\\x01ff'::bytea)");
    const store = new PulumiBlobStore({ connection: db.url, table: 'legacy' });
    closers.push(store);
    const got = await store.get('a');
    expect(Buffer.from(got!.body).toString('hex')).toBe('01ff');
    expect(await tablesIn('public')).toEqual(expect.arrayContaining(['legacy', 'legacy_objects', 'legacy_stacks']));
  });
});
