/**
 * The operation modules driven alone (no HTTP server, no SigV4), against real PostgreSQL: the service, bucket, object
 * and multipart operations with a table-backed bucket handler and the multipart tables of the gateway migration set.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { BucketHandler } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createGatewayContext, type GatewayContext } from '../src/context.js';
import { drive } from './support/drive.js';
import { createTableHandler } from './support/table-handler.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let handler: BucketHandler & { pool: pg.Pool };
let uploads: pg.Pool;
let ctx: GatewayContext;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_operations');
  handler = await createTableHandler(db.url);
  uploads = new pg.Pool({ connectionString: db.url, max: 2 });
  ctx = createGatewayContext({
    buckets: { state: handler, 'read-only': handler },
    credentials: [
      { accessKeyId: 'writer', secretAccessKey: 'writer-secret' },
      { accessKeyId: 'auditor', secretAccessKey: 'auditor-secret', buckets: { 'read-only': 'read' } },
    ],
    uploads: { pool: uploads },
    limits: { minPartBytes: 4 },
  });
});

afterAll(async () => {
  await uploads?.end();
  await handler?.close?.();
  await db?.drop();
});

describe('service operations', () => {
  it('ListBuckets shows the buckets the key may read', async () => {
    const all = await drive(ctx, 'GET', '/', { accessKeyId: 'writer' });
    expect(all.text).toContain('<Name>read-only</Name><CreationDate>');
    expect(all.text).toContain('<Name>state</Name>');
    const scoped = await drive(ctx, 'GET', '/', { accessKeyId: 'auditor' });
    expect(scoped.text).toContain('<Name>read-only</Name>');
    expect(scoped.text).not.toContain('<Name>state</Name>');
  });
});

describe('object and bucket operations', () => {
  it('PutObject stores the bytes in the handler’s table; GetObject with a range cuts them; DeleteObject removes', async () => {
    const put = await drive(ctx, 'PUT', '/state/dir/one', { body: 'hello world' });
    expect([put.status, put.headers.etag]).toEqual([200, `"${md5(Buffer.from('hello world'))}"`]);
    const row = await handler.pool.query('SELECT data FROM objects WHERE key = $1', ['dir/one']);
    expect(row.rows[0].data.toString()).toBe('hello world');
    const ranged = await drive(ctx, 'GET', '/state/dir/one', { headers: { range: 'bytes=6-' } });
    expect([ranged.status, ranged.text, ranged.headers['content-range']]).toEqual([206, 'world', 'bytes 6-10/11']);
    const conditional = await drive(ctx, 'PUT', '/state/dir/one', { body: 'x', headers: { 'if-none-match': '*' } });
    expect(conditional.status).toBe(412);
    expect((await drive(ctx, 'DELETE', '/state/dir/one')).status).toBe(204);
    expect((await handler.pool.query('SELECT 1 FROM objects WHERE key = $1', ['dir/one'])).rowCount).toBe(0);
  });

  it('ListObjectsV2 pages with a continuation token; unknown buckets and unsupported sub-resources are refused', async () => {
    for (const k of ['p/a', 'p/b', 'p/c']) await drive(ctx, 'PUT', `/state/${k}`, { body: k });
    const first = await drive(ctx, 'GET', '/state?list-type=2&prefix=p%2F&max-keys=2');
    expect(first.text).toMatch(/<Key>p\/a<\/Key>.*<Key>p\/b<\/Key>/s);
    const token = /<NextContinuationToken>([^<]+)</.exec(first.text)![1]!;
    const second = await drive(ctx, 'GET', `/state?list-type=2&prefix=p%2F&continuation-token=${token}`);
    expect(second.text).toContain('<Key>p/c</Key>');
    expect(second.text).not.toContain('<Key>p/a</Key>');
    expect((await drive(ctx, 'GET', '/nope?list-type=2')).text).toMatch(/^NoSuchBucket/);
    expect((await drive(ctx, 'GET', '/state?lifecycle')).text).toMatch(/^NotImplemented: .*bucket \?lifecycle$/);
    expect((await drive(ctx, 'PUT', '/state/k?tagging', { body: 'no' })).status).toBe(501);
    expect((await handler.pool.query("SELECT 1 FROM objects WHERE key = 'k'")).rowCount).toBe(0);
  });

  it('scoped keys: a read-only key may not write (403), and writes nothing', async () => {
    const denied = await drive(ctx, 'PUT', '/read-only/x', { body: 'no', accessKeyId: 'auditor' });
    expect(denied.text).toMatch(/^AccessDenied/);
    expect((await handler.pool.query("SELECT 1 FROM objects WHERE key = 'x'")).rowCount).toBe(0);
  });
});

describe('multipart operations', () => {
  it('create, upload parts, list them, complete: one object byte-exact, the parts rows gone', async () => {
    const created = await drive(ctx, 'POST', '/state/mp/obj?uploads');
    const uploadId = /<UploadId>([^<]+)</.exec(created.text)![1]!;
    const parts = [randomBytes(10), randomBytes(3)];
    const etags: string[] = [];
    for (const [i, part] of parts.entries()) {
      const r = await drive(ctx, 'PUT', `/state/mp/obj?partNumber=${i + 1}&uploadId=${uploadId}`, { body: part });
      etags.push(r.headers.etag!);
    }
    const listed = await drive(ctx, 'GET', `/state/mp/obj?uploadId=${uploadId}`);
    expect(listed.text.match(/<PartNumber>\d+<\/PartNumber>/g)).toEqual([
      '<PartNumber>1</PartNumber>',
      '<PartNumber>2</PartNumber>',
    ]);
    const doc = `<CompleteMultipartUpload>${etags
      .map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`)
      .join('')}</CompleteMultipartUpload>`;
    const done = await drive(ctx, 'POST', `/state/mp/obj?uploadId=${uploadId}`, { body: doc });
    expect(done.status).toBe(200);
    const whole = Buffer.concat(parts);
    const row = await handler.pool.query('SELECT md5(data) AS m FROM objects WHERE key = $1', ['mp/obj']);
    expect(row.rows[0].m).toBe(md5(whole));
    const left = await uploads.query('SELECT count(*)::int AS n FROM public.pgstate_s3_upload_parts');
    expect(left.rows[0].n).toBe(0);
  });

  it('abort removes the upload; a second abort and a part for it are NoSuchUpload', async () => {
    const created = await drive(ctx, 'POST', '/state/mp/aborted?uploads');
    const uploadId = /<UploadId>([^<]+)</.exec(created.text)![1]!;
    expect((await drive(ctx, 'DELETE', `/state/mp/aborted?uploadId=${uploadId}`)).status).toBe(204);
    expect((await drive(ctx, 'DELETE', `/state/mp/aborted?uploadId=${uploadId}`)).text).toMatch(/^NoSuchUpload/);
    const part = await drive(ctx, 'PUT', `/state/mp/aborted?partNumber=1&uploadId=${uploadId}`, { body: 'late' });
    expect(part.text).toMatch(/^NoSuchUpload/);
  });

  it('without an uploads database, multipart is 501 and nothing else changes', async () => {
    const bare = createGatewayContext({ buckets: { state: handler }, credentials: [] });
    expect((await drive(bare, 'POST', '/state/k?uploads')).status).toBe(501);
    expect((await drive(bare, 'PUT', '/state/bare', { body: 'ok' })).status).toBe(200);
  });
});
