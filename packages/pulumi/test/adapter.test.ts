import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pulumiAdapter, pulumiStoreOptions } from '../src/index.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'pulumi_adapter');
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

describe('pulumiAdapter (the registry entry every pgstate command reads settings through)', () => {
  it('flags over URL parameters over the URL path; layouts by name or former name; native keys under the database', () => {
    const fromUrl = pulumiAdapter.resolveSettings({
      urlParams: { layout: 'native', table: 't', schema: 's' },
      database: 'app',
    });
    expect(fromUrl).toEqual({
      adapter: 'pulumi',
      layout: 'native',
      schema: 's',
      table: 't',
      extra: { key_prefix: 'app/' },
    });
    const flags = pulumiAdapter.resolveSettings({
      flags: { layout: 'seed', key_prefix: 'p/' },
      urlParams: { layout: 'native' },
      schema: 'from_path',
      database: 'app',
    });
    expect(flags).toEqual({ adapter: 'pulumi', layout: 'bytea', schema: 'from_path', extra: { key_prefix: 'p/' } });
    expect(pulumiStoreOptions(flags)).toEqual({ layout: 'bytea', schema: 'from_path', keyPrefix: 'p/' });
    expect(() => pulumiAdapter.resolveSettings({ flags: { layout: 'json' } })).toThrow(/Unknown Pulumi layout "json"/);
    expect(() => pulumiAdapter.resolveSettings({ flags: { table: 'x;drop' } })).toThrow(
      expect.objectContaining({ code: 'INVALID_IDENTIFIER' }),
    );
  });

  it('detects the layout of an existing table from the catalog', async () => {
    const settings = pulumiAdapter.resolveSettings({ flags: { schema: 'detect' } });
    expect(await pulumiAdapter.detectLayouts(pool, settings)).toEqual([]);
    await pool.query('CREATE SCHEMA detect');
    await pool.query(
      'CREATE TABLE detect.pulumi_state (key text PRIMARY KEY, data json NOT NULL, updated_at timestamptz)',
    );
    expect(await pulumiAdapter.detectLayouts(pool, settings)).toEqual([
      { layouts: ['native'], table: 'detect.pulumi_state' },
    ]);
  });
});
