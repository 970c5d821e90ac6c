/**
 * The bucket-handler contract of @pgstate/core/testing against the Pulumi handler, in both layouts: the bytea table
 * (raw bytes) and Pulumi's native table (`data json` = {"data": "<base64>"}). The probe reads the table with SQL.
 * Each test gets its own key prefix, so it starts on an empty bucket.
 */
import { createHash } from 'node:crypto';
import { createTestDatabase, runBucketHandlerContract } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, inject, test } from 'vitest';
import { createPulumiBucketHandler } from '../src/index.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'pulumi_contract');
  sql = new pg.Pool({ connectionString: db.url, max: 2 });
});
afterAll(async () => {
  await sql?.end();
  await db?.drop();
});

let run = 0;

for (const layout of ['bytea', 'native'] as const) {
  const table = `contract_${layout}`;
  let keyPrefix = '';
  runBucketHandlerContract(
    { describe, test, beforeEach, afterEach },
    {
      name: `@pgstate/pulumi, ${layout} layout`,
      open: () => {
        keyPrefix = `run-${++run}/`;
        // The bytea layout is the default (its layout name changed once; leaving it out works with every name).
        const layoutOption = layout === 'native' ? { layout } : {};
        return createPulumiBucketHandler({ connection: db.url, table, keyPrefix, ...layoutOption });
      },
      probe: {
        async rowFor(key) {
          const { rows } = await sql.query(`SELECT data FROM public.${table} WHERE key = $1`, [keyPrefix + key]);
          return rows[0] ?? null;
        },
      },
      expectedRow: (_key, body) =>
        layout === 'bytea' ? { data: Buffer.from(body) } : { data: { data: Buffer.from(body).toString('base64') } },
      key: (name) => `.pulumi/stacks/contract/${name}.json`,
      body: (n) => Buffer.from(`{"version":3,"n":${n},"pad":"${createHash('sha1').update(String(n)).digest('hex')}"}`),
      invalidKeys: ['/leading-slash', 'back\\slash', 'nul\u0000byte'],
    },
  );
}
