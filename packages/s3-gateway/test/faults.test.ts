/**
 * PostgreSQL connections killed in the middle of a write: the client gets a retryable 503, the stored object is
 * exactly the old one (nothing half-written), and the same request retried succeeds. Uses the real Pulumi handler.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { type BucketHandler, createPool, parseConnectionSettings } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import { createPulumiBucketHandler } from '@pgstate/pulumi';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createS3Gateway, type S3Gateway } from '../src/index.js';
import { KEY } from './support/sign.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;
let admin: pg.Pool;
let handler: BucketHandler;
let gateway: S3Gateway;

const client = (maxAttempts: number) =>
  new S3Client({ endpoint: gateway.url, region: 'us-east-1', forcePathStyle: true, credentials: KEY, maxAttempts });
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_faults');
  // core's pool, as `pgstate serve` uses: a connection killed under a checked-out client must not crash the process.
  pool = createPool(parseConnectionSettings({ url: db.url, applicationName: 'gateway-under-test' }, { env: {} }));
  admin = new pg.Pool({ connectionString: db.url, max: 3 });
  handler = createPulumiBucketHandler({ pool });
  gateway = await createS3Gateway({
    buckets: { state: handler },
    credentials: [KEY],
    uploads: { pool },
    logger: false,
  });
  await handler.putObject('.pulumi/stacks/p/s.json', Buffer.from('{"old":true}'));
});

afterAll(async () => {
  await gateway?.close();
  await handler?.close?.();
  await pool?.end();
  await admin?.end();
  await db?.drop();
});

/**
 * Holds every table of the handler locked, waits until a gateway session queues behind the lock, kills the
 * gateway's sessions, then lets go. Returns how many sessions were killed.
 */
async function killWhileWriting(
  start: () => Promise<unknown>,
): Promise<{ killed: number; outcome: PromiseSettledResult<unknown> }> {
  const locker = await admin.connect();
  try {
    await locker.query('BEGIN');
    const tables = await locker.query<{ t: string }>(
      `SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE tablename LIKE 'pulumi%'`,
    );
    for (const { t } of tables.rows) await locker.query(`LOCK TABLE ${t} IN ACCESS EXCLUSIVE MODE`);
    const pending = start().then(
      (value) => ({ status: 'fulfilled', value }) as const,
      (reason: unknown) => ({ status: 'rejected', reason }) as const,
    );
    let waiting = 0;
    for (let i = 0; i < 200 && waiting === 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
      const w = await admin.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'gateway-under-test' AND wait_event_type = 'Lock'`,
      );
      waiting = w.rows[0]!.n;
    }
    expect(waiting).toBeGreaterThan(0);
    const killed = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gateway-under-test') k`,
    );
    await locker.query('ROLLBACK');
    return { killed: killed.rows[0]!.n, outcome: await pending };
  } finally {
    locker.release();
  }
}

describe('connections killed mid-write', () => {
  it('PutObject: retryable 503, the old object intact, and a retry succeeds', async () => {
    const s3 = client(1);
    const body = randomBytes(2 * 1024 * 1024);
    const { killed, outcome } = await killWhileWriting(() =>
      s3.send(new PutObjectCommand({ Bucket: 'state', Key: '.pulumi/stacks/p/s.json', Body: body })),
    );
    expect(killed).toBeGreaterThan(0);
    expect(outcome.status).toBe('rejected');
    const error = (outcome as PromiseRejectedResult).reason as {
      name: string;
      $metadata: { httpStatusCode: number };
      $retryable?: unknown;
    };
    expect(error.$metadata.httpStatusCode).toBe(503);
    expect(error.name).toBe('ServiceUnavailable');
    expect(Buffer.from((await handler.getObject('.pulumi/stacks/p/s.json'))!.body).toString()).toBe('{"old":true}');
    // The SDK's own retry policy treats the 503 as transient: with retries on, the same write now succeeds.
    const retrying = client(3);
    const put = await retrying.send(
      new PutObjectCommand({ Bucket: 'state', Key: '.pulumi/stacks/p/s.json', Body: body }),
    );
    expect(put.ETag).toBe(`"${md5(body)}"`);
    const got = await retrying.send(new GetObjectCommand({ Bucket: 'state', Key: '.pulumi/stacks/p/s.json' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
    s3.destroy();
    retrying.destroy();
  });

  it('CompleteMultipartUpload: nothing appears when the database drops mid-completion; completing again works', async () => {
    const s3 = client(1);
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(5 * 1024 * 1024), randomBytes(1000)];
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'state', Key: 'big/object' }));
    const etags: string[] = [];
    for (const [i, Body] of parts.entries()) {
      const r = await s3.send(
        new UploadPartCommand({ Bucket: 'state', Key: 'big/object', UploadId, PartNumber: i + 1, Body }),
      );
      etags.push(r.ETag!);
    }
    const complete = () =>
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: 'state',
          Key: 'big/object',
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      );
    const { outcome } = await killWhileWriting(complete);
    expect(outcome.status).toBe('rejected');
    expect(
      ((outcome as PromiseRejectedResult).reason as { $metadata: { httpStatusCode: number } }).$metadata.httpStatusCode,
    ).toBe(503);
    expect(await handler.headObject('big/object')).toBeNull();
    // The upload and its parts are still in PostgreSQL: the client may simply complete it again.
    const done = await complete();
    expect(done.ETag).toBe(`"${md5(Buffer.concat(parts))}"`);
    expect(Buffer.from((await handler.getObject('big/object'))!.body).equals(Buffer.concat(parts))).toBe(true);
    s3.destroy();
  });
});
