import { randomBytes } from 'node:crypto';
import { createTestDatabase } from '@pgstate/core/testing';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import {
  grantRuntimeAccess,
  leasesTable,
  migrate,
  migrationStatus,
  pulumiStateTable,
  runtimeAccessSql,
} from '../src/index.js';

const suffix = randomBytes(4).toString('hex');
const runtimeRole = `pgstate_rt_${suffix}`;
const noRightsRole = `pgstate_none_${suffix}`;
const password = `S3cr3t-${suffix}`;
const pulumi = { adapter: 'pulumi' } as const;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Pool;
const pools: pg.Pool[] = [];

function poolAs(role: string): pg.Pool {
  const url = new URL(db.url);
  url.username = role;
  url.password = password;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
  pool.on('connect', (c) => c.on('error', () => {}));
  pools.push(pool);
  return pool;
}

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'schema_roles');
  admin = new pg.Pool({ connectionString: db.url });
  admin.on('connect', (c) => c.on('error', () => {}));
  for (const role of [runtimeRole, noRightsRole]) {
    await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`);
  }
  await migrate(admin, pulumi);
  await migrate(admin, { adapter: 'meltano', layout: 'seed' });
});

afterAll(async () => {
  for (const pool of pools) await pool.end();
  await admin?.end();
  await db?.drop();
  const server = new pg.Client({ connectionString: inject('pgUrl') });
  await server.connect();
  for (const role of [runtimeRole, noRightsRole]) await server.query(`DROP ROLE IF EXISTS "${role}"`);
  await server.end();
});

it('grants exactly USAGE + DML (and SELECT on the journal) to a runtime role', () => {
  expect(runtimeAccessSql(pulumi, 'app_rt')).toEqual([
    'GRANT USAGE ON SCHEMA "pgstate" TO "app_rt"',
    'GRANT SELECT ON TABLE "pgstate"."migrations" TO "app_rt"',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "pgstate"."leases" TO "app_rt"',
    'GRANT USAGE ON SCHEMA "public" TO "app_rt"',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."pulumi_state" TO "app_rt"',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."pulumi_state_objects" TO "app_rt"',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."pulumi_state_stacks" TO "app_rt"',
  ]);
  expect(() => runtimeAccessSql(pulumi, 'app"; DROP ROLE postgres; --')).toThrow(
    expect.objectContaining({ code: 'INVALID_IDENTIFIER' }),
  );
});

it('a DML-only role works on the tables after an admin migrated, and cannot migrate or change DDL', async () => {
  await grantRuntimeAccess(admin, pulumi, runtimeRole);
  const runtime = poolAs(runtimeRole);

  // Reads, writes, updates and deletes work; so do leases.
  const orm = drizzle(runtime);
  const table = pulumiStateTable();
  await orm.insert(table).values({ key: 'k', data: Buffer.from('v1') });
  await orm.update(table).set({ data: Buffer.from('v2') });
  expect((await orm.select().from(table)).map((r) => r.data.toString())).toEqual(['v2']);
  await orm.delete(table);
  const now = new Date();
  await orm.insert(leasesTable()).values({ name: 'l', owner: 'me', acquiredAt: now, expiresAt: now });

  // Status and an up-to-date migrate need no more than that (no lock, no writes).
  expect((await migrationStatus(runtime, pulumi)).upToDate).toBe(true);
  expect((await migrate(runtime, pulumi)).applied).toEqual([]);

  // A pending migration: PERMISSION_DENIED with the fix, and nothing written.
  const err = await migrate(runtime, { adapter: 'pulumi', table: 'other' }).catch((e) => e);
  expect(err).toMatchObject({ code: 'PERMISSION_DENIED', fix: expect.stringContaining('pgstate migrate') });
  expect(err.message).toContain('pulumi:public.other');
  expect(String(err)).not.toContain(password);
  const { rows } = await admin.query(
    "SELECT to_regclass('public.other') AS t, (SELECT count(*)::int FROM pgstate.migrations WHERE config = 'pulumi:public.other') AS j",
  );
  expect(rows[0]).toEqual({ t: null, j: 0 });

  // No DDL and no journal writes for the runtime role.
  await expect(runtime.query('ALTER TABLE public.pulumi_state ADD COLUMN x int')).rejects.toMatchObject({
    code: '42501',
  });
  await expect(
    runtime.query(
      "INSERT INTO pgstate.migrations (config, migration, adapter, schema_name, hash) VALUES ('a','b','c','d','e')",
    ),
  ).rejects.toMatchObject({ code: '42501' });
  // Grants are per table: the Meltano tables were not granted to this role.
  await expect(runtime.query('SELECT * FROM public.meltano_state')).rejects.toMatchObject({ code: '42501' });
});

it('a role without rights gets PERMISSION_DENIED with a fix, never a password', async () => {
  const nobody = poolAs(noRightsRole);
  const err = await migrationStatus(nobody, pulumi).catch((e) => e);
  expect(err).toMatchObject({ code: 'PERMISSION_DENIED', fix: expect.stringContaining('grantRuntimeAccess') });
  expect(`${err} ${err.message} ${err.fix}`).not.toContain(password);
  await expect(migrate(nobody, pulumi)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
});

it('connection problems keep core error codes (no raw pg/socket error escapes)', async () => {
  const pool = new pg.Pool({ connectionString: `postgres://nobody:${password}@127.0.0.1:1/db`, max: 1 });
  pools.push(pool);
  const err = await migrate(pool, pulumi).catch((e) => e);
  expect(err).toMatchObject({ name: 'PgStateError', code: 'UNREACHABLE' });
  expect(`${err} ${err.fix}`).not.toContain(password);
});
