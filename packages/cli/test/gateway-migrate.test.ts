/** The S3 gateway's multipart tables are a migration set: `pgstate serve` applies it at start. */
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, spawnServe } from './helpers.js';

const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used' });
let served: Awaited<ReturnType<typeof createTestDatabase>>;

beforeAll(async () => {
  served = await createTestDatabase(inject('pgUrl'), 'cli_gateway_serve');
});
afterAll(async () => {
  await served?.drop();
});

async function gatewayTables(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ t: string }>(
      "SELECT tablename AS t FROM pg_tables WHERE tablename LIKE 'pgstate_s3_%' ORDER BY 1",
    );
    return rows.map((r) => r.t);
  } finally {
    await client.end();
  }
}

describe('the gateway migration set from the CLI', () => {
  it('serve applies it at start, as the Pulumi handler applies its own', async () => {
    const s = spawnServe(['--url', served.url, '--listen', '127.0.0.1:0'], env);
    try {
      await s.doc;
      expect(await gatewayTables(served.url)).toEqual(['pgstate_s3_upload_parts', 'pgstate_s3_uploads']);
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  });
});
