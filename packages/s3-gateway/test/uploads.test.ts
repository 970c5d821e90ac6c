/**
 * Multipart bookkeeping lives in the `gateway` migration set of @pgstate/schema: under a DML-only role a large upload
 * fails with a clear error until an administrator migrated, then works; tables an older gateway created are adopted.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { BucketHandler } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import { grantRuntimeAccess, migrationStatus } from '@pgstate/schema';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createS3Gateway, type S3Gateway } from '../src/index.js';
import { KEY } from './support/sign.js';
import { createTableHandler } from './support/table-handler.js';

const suffix = randomBytes(4).toString('hex');
const runtimeRole = `gw_rt_${suffix}`;
const password = `S3cr3t-${suffix}`;
const MiB = 1024 * 1024;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: pg.Pool;
let handler: BucketHandler & { pool: pg.Pool };
const pools: pg.Pool[] = [];
const gateways: S3Gateway[] = [];
const clients: S3Client[] = [];

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

function poolAs(role?: string): pg.Pool {
  const url = new URL(db.url);
  if (role) {
    url.username = role;
    url.password = password;
  }
  const pool = new pg.Pool({ connectionString: url.toString(), max: 3 });
  pool.on('connect', (c) => c.on('error', () => {}));
  pools.push(pool);
  return pool;
}

async function gatewayOn(uploadsPool: pg.Pool): Promise<S3Client> {
  const gateway = await createS3Gateway({
    buckets: { state: handler },
    credentials: [KEY],
    uploads: { pool: uploadsPool },
    logger: false,
  });
  gateways.push(gateway);
  const s3 = new S3Client({
    endpoint: gateway.url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: KEY,
    maxAttempts: 1,
  });
  clients.push(s3);
  return s3;
}

/** A two-part upload (5 MiB + 1 MiB), parts sent through `parts`, completed through `complete`. */
async function largeUpload(parts: S3Client, complete: S3Client, key: string): Promise<Buffer> {
  const body = randomBytes(6 * MiB);
  const { UploadId } = await parts.send(new CreateMultipartUploadCommand({ Bucket: 'state', Key: key }));
  const etags: string[] = [];
  for (const [i, chunk] of [body.subarray(0, 5 * MiB), body.subarray(5 * MiB)].entries()) {
    const r = await parts.send(
      new UploadPartCommand({ Bucket: 'state', Key: key, UploadId, PartNumber: i + 1, Body: chunk }),
    );
    etags.push(r.ETag!);
  }
  await complete.send(
    new CompleteMultipartUploadCommand({
      Bucket: 'state',
      Key: key,
      UploadId,
      MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }),
  );
  return body;
}

async function tableExists(name: string): Promise<boolean> {
  const { rows } = await admin.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [name]);
  return rows[0]!.ok;
}

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_uploads');
  admin = poolAs();
  await admin.query(`CREATE ROLE "${runtimeRole}" LOGIN PASSWORD '${password}'`);
  // The objects themselves go through an admin-owned handler: what is under test is the multipart bookkeeping.
  handler = await createTableHandler(db.url);
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  for (const g of gateways) await g.close();
  await handler?.close?.();
  for (const p of pools) await p.end();
  await db?.drop();
  const server = new pg.Client({ connectionString: inject('pgUrl') });
  await server.connect();
  await server.query(`DROP ROLE IF EXISTS "${runtimeRole}"`);
  await server.end();
});

describe('multipart tables as the gateway migration set', () => {
  it('under a DML-only role: a clear AccessDenied naming the fix before `migrate`, a byte-exact upload after', async () => {
    const runtime = await gatewayOn(poolAs(runtimeRole));
    const refused = await largeUpload(runtime, runtime, 'big/before').catch((error: unknown) => error);
    expect(refused).toMatchObject({
      name: 'AccessDenied',
      $metadata: { httpStatusCode: 403 },
      message: expect.stringContaining('pgstate migrate --adapter gateway'),
    });
    expect(await tableExists('public.pgstate_s3_uploads')).toBe(false);

    // What `pgstate migrate` + the runtime-role helper do, as the administrator.
    const s3Admin = await gatewayOn(admin); // the first multipart request migrates, as the Pulumi handler does
    const first = await largeUpload(s3Admin, s3Admin, 'big/admin');
    expect((await migrationStatus(admin, { adapter: 'gateway' })).upToDate).toBe(true);
    await grantRuntimeAccess(admin, { adapter: 'gateway' }, runtimeRole);

    const body = await largeUpload(runtime, runtime, 'big/after');
    const got = await runtime.send(new GetObjectCommand({ Bucket: 'state', Key: 'big/after' }));
    expect(md5(await got.Body!.transformToByteArray())).toBe(md5(body));
    const stored = await admin.query<{ key: string; md5: string }>(
      `SELECT key, md5(data) AS md5 FROM objects WHERE key LIKE 'big/%' ORDER BY key`,
    );
    expect(stored.rows).toEqual([
      { key: 'big/admin', md5: md5(first) },
      { key: 'big/after', md5: md5(body) },
    ]);
    // Completed uploads leave no parts behind.
    expect((await admin.query('SELECT count(*)::int AS n FROM public.pgstate_s3_upload_parts')).rows[0].n).toBe(0);
  });

  it('adopts the tables an older gateway created itself, completing an upload started before the upgrade', async () => {
    const client = await admin.connect();
    try {
      // Exactly the DDL of @pgstate/s3-gateway 0.1.0 (in the session's first schema), plus an upload in flight.
      await client.query('CREATE SCHEMA old_gw');
      await client.query('SET search_path = old_gw');
      await client.query(`CREATE TABLE pgstate_s3_uploads (upload_id text PRIMARY KEY, bucket text NOT NULL,
        key text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
      await client.query(`CREATE TABLE pgstate_s3_upload_parts (
        upload_id text NOT NULL REFERENCES pgstate_s3_uploads (upload_id) ON DELETE CASCADE,
        part_number integer NOT NULL, etag text NOT NULL, size bigint NOT NULL, data bytea NOT NULL,
        uploaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (upload_id, part_number))`);
      await client.query(
        `INSERT INTO pgstate_s3_uploads (upload_id, bucket, key) VALUES ('old-upload', 'state', 'old/key')`,
      );
      await client.query(
        `INSERT INTO pgstate_s3_upload_parts (upload_id, part_number, etag, size, data)
         VALUES ('old-upload', 1, md5('from before'), 11, 'from before')`,
      );
    } finally {
      await client.query('RESET search_path');
      client.release();
    }
    const gateway = await createS3Gateway({
      buckets: { state: handler },
      credentials: [KEY],
      uploads: { pool: admin, schema: 'old_gw' },
      logger: false,
    });
    gateways.push(gateway);
    const s3 = new S3Client({
      endpoint: gateway.url,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: KEY,
      maxAttempts: 1,
    });
    clients.push(s3);
    const etag = (await admin.query<{ e: string }>("SELECT md5('from before') AS e")).rows[0]!.e;
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: 'state',
        Key: 'old/key',
        UploadId: 'old-upload',
        MultipartUpload: { Parts: [{ ETag: `"${etag}"`, PartNumber: 1 }] },
      }),
    );
    const got = await s3.send(new GetObjectCommand({ Bucket: 'state', Key: 'old/key' }));
    expect(await got.Body!.transformToString()).toBe('from before');
    const status = await migrationStatus(admin, { adapter: 'gateway', schema: 'old_gw' });
    expect([status.upToDate, status.configs.at(-1)?.applied.map((m) => m.migration)]).toEqual([true, ['0000_init']]);
  });
});
