/**
 * A gateway whose database has turned read-only, as a standby is during a failover (or with target_session_attrs=any
 * pointing at one): writes get a retryable 503 with no details or stack, reads keep working, and the connection that
 * met the read-only server is not reused.
 */
import { createPool, parseConnectionSettings } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import { createPulumiBucketHandler } from '@pgstate/pulumi';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createS3Gateway, type S3Gateway } from '../src/index.js';
import { KEY, rawRequest } from './support/sign.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;
let gateway: S3Gateway;
let handler: ReturnType<typeof createPulumiBucketHandler>;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_read_only');
  pool = createPool(parseConnectionSettings({ url: db.url, applicationName: 'gateway-read-only' }, { env: {} }));
  handler = createPulumiBucketHandler({ pool });
  gateway = await createS3Gateway({ buckets: { state: handler }, credentials: [KEY], logger: false });
  await handler.putObject('.pulumi/stacks/p/s.json', Buffer.from('{"old":true}'));
});

afterAll(async () => {
  await gateway?.close();
  await handler?.close?.();
  await pool?.end();
  await db?.drop();
});

it('a write on a read-only server is a 503 without details; reads still work; nothing changed', async () => {
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query(`ALTER DATABASE "${db.name}" SET default_transaction_read_only = on`);
  // Only new sessions see the database setting: drop the pool's existing ones.
  await admin.query(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gateway-read-only'",
  );
  await new Promise((r) => setTimeout(r, 200));
  try {
    const put = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/.pulumi/stacks/p/s.json',
      body: '{"new":true}',
    });
    expect([put.status, put.code]).toEqual([503, 'ServiceUnavailable']);
    expect(put.text).not.toMatch(/25006|read-only transaction|\n\s+at /);
    const get = await rawRequest(gateway.url, { method: 'GET', path: '/state/.pulumi/stacks/p/s.json' });
    expect([get.status, get.text]).toEqual([200, '{"old":true}']);
  } finally {
    await admin.query(`ALTER DATABASE "${db.name}" RESET default_transaction_read_only`);
    await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gateway-read-only'",
    );
    await admin.end();
  }
});
