/** The S3 gateway's multipart tables are one more migration target: in `migrate` (alone and in `all`) and at serve's start. */
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli, spawnServe } from './helpers.js';

const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used' });
let migrated: Awaited<ReturnType<typeof createTestDatabase>>;
let served: Awaited<ReturnType<typeof createTestDatabase>>;
let elsewhere: Awaited<ReturnType<typeof createTestDatabase>>;

beforeAll(async () => {
  migrated = await createTestDatabase(inject('pgUrl'), 'cli_gateway_migrate');
  served = await createTestDatabase(inject('pgUrl'), 'cli_gateway_serve');
  elsewhere = await createTestDatabase(inject('pgUrl'), 'cli_gateway_schema');
});
afterAll(async () => {
  await migrated?.drop();
  await served?.drop();
  await elsewhere?.drop();
});

async function gatewayTables(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ t: string }>(
      "SELECT schemaname || '.' || tablename AS t FROM pg_tables WHERE tablename LIKE 'pgstate\\_s3\\_%' ORDER BY 1",
    );
    return rows.map((r) => r.t);
  } finally {
    await client.end();
  }
}

describe('the gateway migration set from the CLI', () => {
  it('migrate --dry-run shows it (with --adapter gateway and in all); migrate applies it; --check agrees', async () => {
    const one = await runCli(['--url', migrated.url, 'migrate', '--adapter', 'gateway', '--dry-run'], env);
    expect(one.code).toBe(0);
    expect(one.stdout).toContain('-- gateway:public: 0000_init');
    expect(one.stdout).toContain('CREATE TABLE IF NOT EXISTS "public"."pgstate_s3_upload_parts"');
    const all = await runCli(['--url', migrated.url, 'migrate', '--dry-run'], env);
    expect(all.stdout).toContain('-- gateway:public: 0000_init');
    expect(await gatewayTables(migrated.url)).toEqual([]);
    expect((await runCli(['--url', migrated.url, 'migrate', '--adapter', 'gateway', '--check'], env)).code).toBe(5);
    const applied = await runCli(['--url', migrated.url, 'migrate'], env);
    expect(applied.code).toBe(0);
    expect(applied.stdout).toMatch(/applied\s+gateway:public\s+0000_init/);
    expect(await gatewayTables(migrated.url)).toEqual(['public.pgstate_s3_upload_parts', 'public.pgstate_s3_uploads']);
    expect((await runCli(['--url', migrated.url, 'migrate', '--adapter', 'gateway', '--check'], env)).code).toBe(0);
  });

  it('serve applies it at start, as the Pulumi handler applies its own', async () => {
    const s = spawnServe(['--url', served.url, '--listen', '127.0.0.1:0'], env);
    try {
      await s.doc;
      expect(await gatewayTables(served.url)).toEqual(['public.pgstate_s3_upload_parts', 'public.pgstate_s3_uploads']);
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  });

  it('serve and migrate agree on ?schema=: serve puts the tables where migrate --adapter gateway does', async () => {
    const withSchema = new URL(elsewhere.url);
    withSchema.searchParams.set('schema', 'gw');
    const url = withSchema.toString();
    const s = spawnServe(['--url', url, '--listen', '127.0.0.1:0'], env);
    try {
      await s.doc;
      expect(await gatewayTables(elsewhere.url)).toEqual(['gw.pgstate_s3_upload_parts', 'gw.pgstate_s3_uploads']);
      expect((await runCli(['--url', url, 'migrate', '--adapter', 'gateway', '--check'], env)).code).toBe(0);
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  });
});
