import { createHash, randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { BucketHandler } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createS3Gateway, type S3Gateway } from '../src/index.js';
import { KEY } from './support/sign.js';
import { createTableHandler } from './support/table-handler.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let handler: BucketHandler & { pool: pg.Pool };
let uploadsPool: pg.Pool;
let gateway: S3Gateway;
let second: S3Gateway;
let s3: S3Client;

const client = (endpoint: string, credentials = KEY) =>
  new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials, maxAttempts: 1 });
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const bytes = async (body: unknown) =>
  Buffer.from(await (body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_sdk');
  handler = await createTableHandler(db.url);
  uploadsPool = new pg.Pool({ connectionString: db.url, max: 4 });
  const common = {
    buckets: { state: handler },
    credentials: [KEY],
    uploads: { pool: uploadsPool },
    logger: false as const,
  };
  gateway = await createS3Gateway(common);
  second = await createS3Gateway(common);
  s3 = client(gateway.url);
});

afterAll(async () => {
  s3?.destroy();
  await gateway?.close();
  await second?.close();
  await uploadsPool?.end();
  await handler?.close?.();
  await db?.drop();
});

describe('object round trips through @aws-sdk/client-s3', () => {
  it('puts, heads and gets binary bodies byte-exact, with the MD5 ETag and a CRC32', async () => {
    const body = randomBytes(300_000);
    const put = await s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'dir/a b+c%d.bin', Body: body }));
    expect(put.ETag).toBe(`"${md5(body)}"`);
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'state', Key: 'dir/a b+c%d.bin' }));
    expect(head.ContentLength).toBe(body.length);
    expect(head.ETag).toBe(`"${md5(body)}"`);
    expect(head.LastModified).toBeInstanceOf(Date);
    const got = await s3.send(
      new GetObjectCommand({ Bucket: 'state', Key: 'dir/a b+c%d.bin', ChecksumMode: 'ENABLED' }),
    );
    expect((await bytes(got.Body)).equals(body)).toBe(true);
    expect(got.ChecksumCRC32).toBeDefined();
    // What the gateway stored is exactly what the handler's table holds.
    const row = await handler.pool.query('SELECT data FROM objects WHERE key = $1', ['dir/a b+c%d.bin']);
    expect(Buffer.compare(row.rows[0].data, body)).toBe(0);
  });

  it('stores empty objects and unicode keys', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'ünï/çødé/∑.json', Body: new Uint8Array() }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'state', Key: 'ünï/çødé/∑.json' }));
    expect((await bytes(got.Body)).length).toBe(0);
  });

  it('serves ranges, including open-ended and suffix ranges, and refuses unsatisfiable ones', async () => {
    const body = Buffer.from('0123456789');
    await s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'range.txt', Body: body }));
    const get = async (Range: string) => {
      const r = await s3.send(new GetObjectCommand({ Bucket: 'state', Key: 'range.txt', Range }));
      return { text: (await bytes(r.Body)).toString(), range: r.ContentRange };
    };
    expect(await get('bytes=2-5')).toEqual({ text: '2345', range: 'bytes 2-5/10' });
    expect(await get('bytes=7-')).toEqual({ text: '789', range: 'bytes 7-9/10' });
    expect(await get('bytes=-3')).toEqual({ text: '789', range: 'bytes 7-9/10' });
    expect(await get('bytes=8-100')).toEqual({ text: '89', range: 'bytes 8-9/10' });
    await expect(get('bytes=10-20')).rejects.toMatchObject({
      name: 'InvalidRange',
      $metadata: { httpStatusCode: 416 },
    });
  });

  it('answers NoSuchKey / NotFound / NoSuchBucket', async () => {
    await expect(s3.send(new GetObjectCommand({ Bucket: 'state', Key: 'missing' }))).rejects.toMatchObject({
      name: 'NoSuchKey',
    });
    await expect(s3.send(new HeadObjectCommand({ Bucket: 'state', Key: 'missing' }))).rejects.toMatchObject({
      name: 'NotFound',
      $metadata: { httpStatusCode: 404 },
    });
    await expect(s3.send(new GetObjectCommand({ Bucket: 'nope', Key: 'x' }))).rejects.toMatchObject({
      name: 'NoSuchBucket',
    });
    await expect(s3.send(new HeadBucketCommand({ Bucket: 'nope' }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
    await s3.send(new HeadBucketCommand({ Bucket: 'state' }));
    const buckets = await s3.send(new ListBucketsCommand({}));
    expect(buckets.Buckets?.map((b) => b.Name)).toEqual(['state']);
  });

  it('applies If-None-Match: * and If-Match atomically', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'lock', Body: 'one', IfNoneMatch: '*' }));
    await expect(
      s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'lock', Body: 'two', IfNoneMatch: '*' })),
    ).rejects.toMatchObject({ name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
    await expect(
      s3.send(
        new PutObjectCommand({ Bucket: 'state', Key: 'lock', Body: 'two', IfMatch: `"${md5(Buffer.from('zzz'))}"` }),
      ),
    ).rejects.toMatchObject({ name: 'PreconditionFailed' });
    await s3.send(
      new PutObjectCommand({ Bucket: 'state', Key: 'lock', Body: 'three', IfMatch: `"${md5(Buffer.from('one'))}"` }),
    );
    const got = await s3.send(new GetObjectCommand({ Bucket: 'state', Key: 'lock' }));
    expect((await bytes(got.Body)).toString()).toBe('three');
  });

  it('copies, deletes one and deletes many', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'copy/src one', Body: 'payload' }));
    const copy = await s3.send(
      new CopyObjectCommand({ Bucket: 'state', Key: 'copy/dst', CopySource: 'state/copy/src%20one' }),
    );
    expect(copy.CopyObjectResult?.ETag).toBe(`"${md5(Buffer.from('payload'))}"`);
    expect(copy.CopyObjectResult?.LastModified).toBeInstanceOf(Date);
    await expect(
      s3.send(new CopyObjectCommand({ Bucket: 'state', Key: 'copy/x', CopySource: 'state/copy/none' })),
    ).rejects.toMatchObject({ name: 'NoSuchKey' });
    await s3.send(new DeleteObjectCommand({ Bucket: 'state', Key: 'copy/dst' }));
    await s3.send(new DeleteObjectCommand({ Bucket: 'state', Key: 'copy/dst' })); // deleting a missing key succeeds
    await s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'copy/b', Body: 'b' }));
    const many = await s3.send(
      new DeleteObjectsCommand({
        Bucket: 'state',
        Delete: { Objects: [{ Key: 'copy/src one' }, { Key: 'copy/b' }, { Key: 'copy/none' }] },
      }),
    );
    expect(many.Deleted?.map((d) => d.Key).sort()).toEqual(['copy/b', 'copy/none', 'copy/src one']);
    const left = await s3.send(new ListObjectsV2Command({ Bucket: 'state', Prefix: 'copy/' }));
    expect(left.Contents ?? []).toEqual([]);
  });
});

describe('listing', () => {
  const keys = ['l/a', 'l/b/1', 'l/b/2', 'l/c', 'l/d/x/y', 'l/e', 'l/f_g', 'l/fz'];
  beforeAll(async () => {
    for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket: 'state', Key, Body: Key }));
  });

  it('pages ListObjectsV2 with continuation tokens, in byte order, LastModified on every entry', async () => {
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: 'state', Prefix: 'l/', MaxKeys: 3, ContinuationToken: token }),
      );
      pages++;
      for (const o of page.Contents ?? []) {
        expect(o.LastModified).toBeInstanceOf(Date);
        expect(o.Size).toBe(o.Key?.length);
        seen.push(o.Key!);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(seen).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    expect(pages).toBe(3);
  });

  it('rolls keys up into CommonPrefixes with a delimiter, across pages', async () => {
    const all: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({
          Bucket: 'state',
          Prefix: 'l/',
          Delimiter: '/',
          MaxKeys: 2,
          ContinuationToken: token,
        }),
      );
      all.push(...(page.Contents ?? []).map((o) => o.Key!), ...(page.CommonPrefixes ?? []).map((p) => p.Prefix!));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(all.sort()).toEqual(['l/a', 'l/b/', 'l/c', 'l/d/', 'l/e', 'l/f_g', 'l/fz']);
  });

  it('honours start-after and the v1 marker', async () => {
    const v2 = await s3.send(new ListObjectsV2Command({ Bucket: 'state', Prefix: 'l/', StartAfter: 'l/d/x/y' }));
    expect(v2.Contents?.map((o) => o.Key)).toEqual(['l/e', 'l/f_g', 'l/fz']);
    const v1 = await s3.send(new ListObjectsCommand({ Bucket: 'state', Prefix: 'l/', Marker: 'l/c', MaxKeys: 2 }));
    expect(v1.Contents?.map((o) => o.Key)).toEqual(['l/d/x/y', 'l/e']);
    expect(v1.IsTruncated).toBe(true);
    expect(v1.NextMarker).toBe('l/e');
    expect(v1.Contents?.[0]?.LastModified).toBeInstanceOf(Date);
  });
});

describe('multipart uploads', () => {
  const MiB = 1024 * 1024;

  it('assembles parts byte-exact; parts may go through different gateways', async () => {
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(1234)];
    const other = client(second.url);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'state', Key: 'big/object' }));
    const etags: string[] = [];
    for (const [i, part] of parts.entries()) {
      // Alternate gateways: the upload lives in PostgreSQL, not in either process.
      const via = i % 2 === 0 ? s3 : other;
      const r = await via.send(
        new UploadPartCommand({ Bucket: 'state', Key: 'big/object', UploadId, PartNumber: i + 1, Body: part }),
      );
      expect(r.ETag).toBe(`"${md5(part)}"`);
      etags.push(r.ETag!);
    }
    const listed = await other.send(new ListPartsCommand({ Bucket: 'state', Key: 'big/object', UploadId }));
    expect(listed.Parts?.map((p) => [p.PartNumber, p.Size])).toEqual([
      [1, 5 * MiB],
      [2, 5 * MiB],
      [3, 1234],
    ]);
    // Nothing is visible before completion.
    await expect(s3.send(new HeadObjectCommand({ Bucket: 'state', Key: 'big/object' }))).rejects.toMatchObject({
      name: 'NotFound',
    });
    await other.send(
      new CompleteMultipartUploadCommand({
        Bucket: 'state',
        Key: 'big/object',
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
    const got = await s3.send(new GetObjectCommand({ Bucket: 'state', Key: 'big/object' }));
    expect((await bytes(got.Body)).equals(Buffer.concat(parts))).toBe(true);
    const leftover = await uploadsPool.query('SELECT count(*)::int AS n FROM pgstate_s3_upload_parts');
    expect(leftover.rows[0].n).toBe(0);
    other.destroy();
  });

  it('refuses wrong part ETags, out-of-order parts and small non-final parts; abort removes the upload', async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'state', Key: 'mp/bad' }));
    const p1 = await s3.send(
      new UploadPartCommand({ Bucket: 'state', Key: 'mp/bad', UploadId, PartNumber: 1, Body: 'small' }),
    );
    const p2 = await s3.send(
      new UploadPartCommand({ Bucket: 'state', Key: 'mp/bad', UploadId, PartNumber: 2, Body: 'tail' }),
    );
    const complete = (Parts: Array<{ ETag: string; PartNumber: number }>) =>
      s3.send(
        new CompleteMultipartUploadCommand({ Bucket: 'state', Key: 'mp/bad', UploadId, MultipartUpload: { Parts } }),
      );
    await expect(complete([{ ETag: '"00000000000000000000000000000000"', PartNumber: 1 }])).rejects.toMatchObject({
      name: 'InvalidPart',
    });
    await expect(
      complete([
        { ETag: p2.ETag!, PartNumber: 2 },
        { ETag: p1.ETag!, PartNumber: 1 },
      ]),
    ).rejects.toMatchObject({
      name: 'InvalidPartOrder',
    });
    await expect(
      complete([
        { ETag: p1.ETag!, PartNumber: 1 },
        { ETag: p2.ETag!, PartNumber: 2 },
      ]),
    ).rejects.toMatchObject({
      name: 'EntityTooSmall',
    });
    await s3.send(new AbortMultipartUploadCommand({ Bucket: 'state', Key: 'mp/bad', UploadId }));
    await expect(
      s3.send(new UploadPartCommand({ Bucket: 'state', Key: 'mp/bad', UploadId, PartNumber: 3, Body: 'x' })),
    ).rejects.toMatchObject({ name: 'NoSuchUpload' });
    await expect(s3.send(new HeadObjectCommand({ Bucket: 'state', Key: 'mp/bad' }))).rejects.toMatchObject({
      name: 'NotFound',
    });
  });
});
