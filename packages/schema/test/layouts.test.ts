import { LayoutMismatchError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { assertLayout, migrate, migrationStatus, resolveTarget } from '../src/index.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'schema_layouts');
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on('connect', (c) => c.on('error', () => {}));
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** The table `pulumi login postgres://` creates (Pulumi's driver, not pgstate). */
async function pulumiNativeTable(schema: string): Promise<void> {
  await pool.query(`CREATE SCHEMA ${schema}`);
  await pool.query(
    `CREATE TABLE ${schema}.pulumi_state (key text PRIMARY KEY, data json NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
  );
}

describe('layout names', () => {
  it('accept the former names as aliases and keep the stored journal keys', () => {
    expect(resolveTarget({ adapter: 'pulumi', layout: 'seed' }).config).toBe('pulumi:public.pulumi_state');
    expect(resolveTarget({ adapter: 'pulumi', layout: 'bytea' }).config).toBe('pulumi:public.pulumi_state');
    expect(resolveTarget({ adapter: 'pulumi' }).layout).toBe('bytea');
    expect(resolveTarget({ adapter: 'pulumi', layout: 'native' }).config).toBe('pulumi-native:public.pulumi_state');
    expect(resolveTarget({ adapter: 'meltano', layout: 'seed' }).config).toBe('meltano-seed:public');
    expect(resolveTarget({ adapter: 'meltano', layout: 'pgstate' }).config).toBe('meltano-seed:public');
    expect(resolveTarget({ adapter: 'meltano' }).layout).toBe('pgstate');
    expect(() => resolveTarget({ adapter: 'meltano', layout: 'weird' as 'plugin' })).toThrow(
      /Unknown Meltano layout "weird"/,
    );
  });
});

describe('layout detection', () => {
  it('never applies the bytea migrations onto Pulumi’s native table, not even as a dry run', async () => {
    await pulumiNativeTable('native1');
    const target = { adapter: 'pulumi', schema: 'native1' } as const;
    const error = await migrate(pool, target).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LayoutMismatchError);
    expect((error as LayoutMismatchError).found).toBe('native');
    expect((error as Error).message).toMatch(/native1\.pulumi_state has the Pulumi native layout, not bytea/);
    expect((error as LayoutMismatchError).fix).not.toMatch(/--layout/);
    await expect(migrate(pool, target, { dryRun: true })).rejects.toBeInstanceOf(LayoutMismatchError);
    // Nothing recorded for the bytea configuration, and the table is as Pulumi made it.
    const status = await migrationStatus(pool, target);
    expect(status.configs.at(-1)?.applied).toEqual([]);
    const { rows } = await pool.query(
      "SELECT data_type FROM information_schema.columns WHERE table_schema = 'native1' AND table_name = 'pulumi_state' AND column_name = 'data'",
    );
    expect(rows[0].data_type).toBe('json');
    // The native layout adopts it.
    await migrate(pool, { ...target, layout: 'native' });
    expect((await migrationStatus(pool, { ...target, layout: 'native' })).upToDate).toBe(true);
  });

  it('assertLayout names the layout that fits for a reader, and passes where nothing or the right layout exists', async () => {
    await pulumiNativeTable('native2');
    await expect(assertLayout(pool, { adapter: 'pulumi', schema: 'native2' })).rejects.toThrow(
      /native2\.pulumi_state has the Pulumi native layout, not bytea/,
    );
    await assertLayout(pool, { adapter: 'pulumi', schema: 'native2', layout: 'native' });
    await assertLayout(pool, { adapter: 'pulumi', schema: 'nothing_here' });
    await migrate(pool, { adapter: 'pulumi', schema: 'bytea1' });
    await assertLayout(pool, { adapter: 'pulumi', schema: 'bytea1', layout: 'seed' });
    await expect(assertLayout(pool, { adapter: 'pulumi', schema: 'bytea1', layout: 'native' })).rejects.toThrow(
      /has the Pulumi bytea layout, not native/,
    );
  });

  it('Meltano: a reader of the pgstate layout on a plugin/systemdb `state` table is told which layout fits', async () => {
    await migrate(pool, { adapter: 'meltano', layout: 'systemdb', schema: 'mel1' });
    const error = await assertLayout(pool, { adapter: 'meltano', schema: 'mel1' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LayoutMismatchError);
    expect((error as LayoutMismatchError).found).toBe('plugin');
    expect((error as Error).message).toMatch(/mel1\.state has the Meltano plugin layout, not pgstate/);
    await assertLayout(pool, { adapter: 'meltano', layout: 'plugin', schema: 'mel1' });
    // Both may live side by side: migrating the pgstate layout next to a `state` table is fine.
    await migrate(pool, { adapter: 'meltano', layout: 'pgstate', schema: 'mel1' });
    await assertLayout(pool, { adapter: 'meltano', schema: 'mel1' });
  });
});
