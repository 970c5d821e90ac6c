/**
 * Rules where S3's answer is exact and clients depend on it: which headers must be signed, one auth mechanism per
 * request, ranges past the end or past 2 GiB, deeply nested XML, header injection through response-* parameters,
 * sub-resources this endpoint does not implement, version ids. Each case checks PostgreSQL for what was written.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { BucketHandler } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import { createPulumiBucketHandler } from '@pgstate/pulumi';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createS3Gateway, type S3Gateway } from '../src/index.js';
import { signedChunkedRequest } from './support/chunked.js';
import { KEY, rawRequest, send, signer } from './support/sign.js';
import { createTableHandler } from './support/table-handler.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let handler: BucketHandler & { pool: pg.Pool };
let uploadsPool: pg.Pool;
let pulumi: BucketHandler;
let gateway: S3Gateway;
const OBJECT = Buffer.alloc(1024, 'p');

async function keys(): Promise<string[]> {
  const r = await handler.pool.query<{ key: string }>('SELECT key FROM objects ORDER BY key');
  return r.rows.map((row) => row.key);
}

async function stillServes(): Promise<void> {
  const ok = await rawRequest(gateway.url, { method: 'PUT', path: '/state/alive', body: 'yes' });
  expect(ok.status).toBe(200);
  await handler.deleteObject('alive');
}

/** A presigned URL (path and query) for `method` on `path`, as S3 presigners make them. */
async function presign(method: string, path: string, headers: Record<string, string> = {}): Promise<string> {
  const url = new URL(gateway.url);
  const req = await signer().presign(
    {
      method,
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path,
      query: {},
      headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers },
    },
    // As S3 presigners do: the payload is UNSIGNED-PAYLOAD and that header is not sent.
    { expiresIn: 300, unsignableHeaders: new Set(['x-amz-content-sha256']) },
  );
  return `${path}?${new URLSearchParams(req.query as Record<string, string>).toString()}`;
}

/** A real `write EPIPE` error: a write to a pipe whose reader closed it. */
async function realEpipe(): Promise<Error> {
  const child = spawn('sh', ['-c', 'exec 0<&-; echo closed; sleep 5'], { stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    await new Promise((resolve) => child.stdout.once('data', resolve));
    return await new Promise<Error>((resolve) => {
      child.stdin.once('error', resolve);
      const write = () => child.stdin.write(Buffer.alloc(1024), (e) => !e && setImmediate(write));
      write();
    });
  } finally {
    child.kill();
  }
}

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_rules');
  handler = await createTableHandler(db.url);
  uploadsPool = new pg.Pool({ connectionString: db.url, max: 2 });
  pulumi = createPulumiBucketHandler({ pool: uploadsPool });
  await pulumi.putObject('.pulumi/stacks/app/prod.json', OBJECT);
  // A bucket whose database connection breaks while a write is sent, with the error Node gives for it.
  const broken: BucketHandler = {
    ...handler,
    putObject: async () => {
      throw await realEpipe();
    },
  };
  gateway = await createS3Gateway({
    buckets: { state: handler, pulumi, broken },
    credentials: [KEY],
    uploads: { pool: uploadsPool },
    logger: false,
  });
  await handler.putObject('secret.json', Buffer.from('{"secret":true}'));
});

afterAll(async () => {
  await gateway?.close();
  await uploadsPool?.end();
  await handler?.close?.();
  await db?.drop();
});

describe('signed headers', () => {
  it('refuses an x-amz-copy-source added to a presigned PUT URL: nothing is copied', async () => {
    const url = new URL(gateway.url);
    const target = await presign('PUT', '/state/drop');
    const r = await send(url, 'PUT', target, {
      host: url.host,
      'content-length': '0',
      'x-amz-copy-source': '/state/secret.json',
    });
    expect([r.status, r.code]).toEqual([403, 'AccessDenied']);
    expect(r.text).toContain('There were headers present in the request which were not signed');
    expect(r.text).toContain('x-amz-copy-source');
    expect(await keys()).toEqual(['secret.json']);
    // The same URL without the extra header still works: the rule does not break presigned uploads.
    const ok = await send(url, 'PUT', target, { host: url.host, 'content-length': '2' }, 'ok');
    expect([ok.status, ok.text]).toEqual([200, '']);
    expect(await keys()).toEqual(['drop', 'secret.json']);
    await handler.deleteObject('drop');
  });

  it('refuses an x-amz-* header added to a header-signed request after signing', async () => {
    const r = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/copy',
      after: (req) => {
        req.headers['x-amz-copy-source'] = '/state/secret.json';
      },
    });
    expect([r.status, r.code]).toEqual([403, 'AccessDenied']);
    expect(r.text).toContain('x-amz-copy-source');
    expect(await keys()).toEqual(['secret.json']);
    // Signed, the same copy is allowed.
    const signed = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/copy',
      headers: { 'x-amz-copy-source': '/state/secret.json' },
    });
    expect(signed.status).toBe(200);
    await handler.deleteObject('copy');
    await stillServes();
  });

  it('answers 400 to an Authorization header together with presigned query parameters', async () => {
    const url = new URL(gateway.url);
    const presigned = await presign('GET', '/state/secret.json');
    const headerSigned = await signer().sign(
      {
        method: 'GET',
        protocol: 'http:',
        hostname: url.hostname,
        port: Number(url.port),
        path: '/state/secret.json',
        query: {},
        headers: { host: url.host, 'x-amz-content-sha256': createHash('sha256').update('').digest('hex') },
      },
      {},
    );
    const r = await send(url, 'GET', presigned, headerSigned.headers as Record<string, string>);
    expect([r.status, r.code]).toEqual([400, 'InvalidArgument']);
    expect(r.text).toContain('Only one auth mechanism allowed');
  });
});

describe('exact S3 errors', () => {
  const prod = '/pulumi/.pulumi/stacks/app/prod.json';

  it('cuts a range past 2 GiB at the end of the object (206), and answers 416 to ranges starting past it', async () => {
    const far = await rawRequest(gateway.url, { method: 'GET', path: prod, headers: { range: 'bytes=0-2147483648' } });
    expect([far.status, far.headers['content-range']]).toEqual([206, 'bytes 0-1023/1024']);
    expect(far.body.equals(OBJECT)).toBe(true);
    const tail = await rawRequest(gateway.url, {
      method: 'GET',
      path: prod,
      headers: { range: 'bytes=1000-4294967296' },
    });
    expect([tail.status, tail.body.length]).toEqual([206, 24]);
    for (const range of ['bytes=5000-', 'bytes=1024-2000', 'bytes=2147483648-', 'bytes=99999999999999999999-']) {
      const r = await rawRequest(gateway.url, { method: 'GET', path: prod, headers: { range } });
      expect([range, r.status, r.code]).toEqual([range, 416, 'InvalidRange']);
      expect(r.text).toContain('<ActualObjectSize>1024</ActualObjectSize>');
    }
    const head = await rawRequest(gateway.url, {
      method: 'HEAD',
      path: prod,
      headers: { range: 'bytes=0-2147483648' },
    });
    expect([head.status, head.headers['content-length']]).toEqual([206, '1024']);
  });

  it('answers MalformedXML to a CompleteMultipartUpload nested 200,000 levels deep, and keeps serving', async () => {
    const created = await rawRequest(gateway.url, { method: 'POST', path: '/state/deep', query: { uploads: '' } });
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created.text)![1]!;
    const depth = 200_000;
    const xml = `<CompleteMultipartUpload>${'<P>'.repeat(depth)}${'</P>'.repeat(depth)}</CompleteMultipartUpload>`;
    const r = await rawRequest(gateway.url, { method: 'POST', path: '/state/deep', query: { uploadId }, body: xml });
    expect([r.status, r.code]).toEqual([400, 'MalformedXML']);
    expect(await keys()).toEqual(['secret.json']);
    await stillServes();
  });

  it('answers 400 to response-* parameters carrying CR/LF (no header injection)', async () => {
    for (const param of ['response-content-type', 'response-content-disposition']) {
      const r = await rawRequest(gateway.url, {
        method: 'GET',
        path: '/state/secret.json',
        query: { [param]: 'text/plain\r\nSet-Cookie: a=b' },
      });
      expect([r.status, r.code]).toEqual([400, 'InvalidArgument']);
      expect(r.headers['set-cookie']).toBeUndefined();
    }
    const fine = await rawRequest(gateway.url, {
      method: 'GET',
      path: '/state/secret.json',
      query: { 'response-content-type': 'application/json' },
    });
    expect([fine.status, fine.headers['content-type']]).toEqual([200, 'application/json']);
  });

  it('answers NotImplemented to PUT with sub-resources it does not implement, storing nothing', async () => {
    for (const sub of ['policy', 'versioning', 'cors', 'lifecycle', 'tagging', 'encryption']) {
      const r = await rawRequest(gateway.url, {
        method: 'PUT',
        path: '/state/config',
        query: { [sub]: '' },
        body: '<x/>',
      });
      expect([sub, r.status, r.code]).toEqual([sub, 501, 'NotImplemented']);
    }
    expect(await keys()).toEqual(['secret.json']);
  });

  it('knows only the version id "null" (an unversioned bucket), like S3', async () => {
    for (const method of ['GET', 'HEAD', 'DELETE']) {
      const r = await rawRequest(gateway.url, {
        method,
        path: '/state/secret.json',
        query: { versionId: '3HL4kqtJlcpXroDTDmjVBH40Nrjfkd' },
      });
      expect([method, r.status]).toEqual([method, 400]);
      if (method !== 'HEAD') expect(r.code).toBe('InvalidArgument');
    }
    expect(await keys()).toEqual(['secret.json']);
    const current = await rawRequest(gateway.url, {
      method: 'GET',
      path: '/state/secret.json',
      query: { versionId: 'null' },
    });
    expect([current.status, current.text]).toEqual([200, '{"secret":true}']);
  });

  it('answers a lost database connection (write EPIPE) with a retryable 503', async () => {
    const r = await rawRequest(gateway.url, { method: 'PUT', path: '/broken/x', body: 'data' });
    expect([r.status, r.code]).toEqual([503, 'ServiceUnavailable']);
    await stillServes();
  });

  it('refuses a signed aws-chunked upload whose second chunk was changed, and keeps serving', async () => {
    const data = Buffer.alloc(70_000, 'c');
    for (const corrupt of [true, false]) {
      const { head, body } = await signedChunkedRequest(gateway.url, '/state/chunked', data, corrupt);
      const socket = net.connect(Number(new URL(gateway.url).port), '127.0.0.1');
      socket.on('error', () => {});
      let answer = '';
      const answered = new Promise((resolve) => {
        socket.on('close', resolve);
        socket.on('data', (d) => {
          answer += d;
          if (answer.includes('\r\n\r\n')) resolve(undefined);
        });
      });
      socket.write(head);
      socket.write(body);
      await answered;
      socket.destroy();
      expect(answer).toMatch(corrupt ? /^HTTP\/1.1 403/ : /^HTTP\/1.1 200/);
      expect(await keys()).toEqual(corrupt ? ['secret.json'] : ['chunked', 'secret.json']);
    }
    await handler.deleteObject('chunked');
    await stillServes();
  });
});
