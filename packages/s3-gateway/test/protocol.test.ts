/**
 * The HTTP surface under bad and unusual input: every case gets S3's error code, writes nothing, and the server
 * keeps serving. Requests are built by hand (signed by Smithy's independent SigV4 signer where they are signed).
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import zlib from 'node:zlib';
import type { BucketHandler } from '@pgstate/core';
import { isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createS3Gateway, type S3Gateway } from '../src/index.js';
import { KEY, rawRequest, send, signer } from './support/sign.js';
import { createTableHandler } from './support/table-handler.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let handler: BucketHandler & { pool: pg.Pool };
let uploadsPool: pg.Pool;
let gateway: S3Gateway;
const closers: Array<() => Promise<void>> = [];

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const crc32 = (b: Buffer) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(zlib.crc32(b));
  return out.toString('base64');
};
async function keys(): Promise<string[]> {
  const r = await handler.pool.query<{ key: string }>('SELECT key FROM objects ORDER BY key');
  return r.rows.map((row) => row.key);
}
async function stillServes(g: S3Gateway = gateway): Promise<void> {
  const ok = await rawRequest(g.url, { method: 'PUT', path: '/state/alive', body: 'yes' });
  expect(ok.status).toBe(200);
  await handler.deleteObject('alive');
}

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_proto');
  handler = await createTableHandler(db.url);
  uploadsPool = new pg.Pool({ connectionString: db.url, max: 2 });
  gateway = await createS3Gateway({
    buckets: { state: handler },
    credentials: [KEY],
    uploads: { pool: uploadsPool },
    logger: false,
  });
});

afterAll(async () => {
  for (const close of closers) await close();
  await gateway?.close();
  await uploadsPool?.end();
  await handler?.close?.();
  await db?.drop();
});

describe('authentication', () => {
  it('refuses unsigned, wrongly signed, unknown-key and tampered requests, writing nothing', async () => {
    const unsigned = await rawRequest(gateway.url, { method: 'PUT', path: '/state/x', body: 'a', sign: false });
    expect([unsigned.status, unsigned.code]).toEqual([403, 'AccessDenied']);
    const wrong = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/x',
      body: 'a',
      sign: { ...KEY, secretAccessKey: 'nope' },
    });
    expect([wrong.status, wrong.code]).toEqual([403, 'SignatureDoesNotMatch']);
    const unknown = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/x',
      body: 'a',
      sign: { accessKeyId: 'OTHER', secretAccessKey: 's' },
    });
    expect([unknown.status, unknown.code]).toEqual([403, 'InvalidAccessKeyId']);
    const movedPath = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/x',
      body: 'a',
      after: (r) => {
        r.path = '/state/y';
      },
    });
    expect(movedPath.code).toBe('SignatureDoesNotMatch');
    const swappedBody = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/x',
      body: 'a',
      after: (r) => {
        r.body = 'b';
      },
    });
    expect([swappedBody.status, swappedBody.code]).toEqual([400, 'XAmzContentSHA256Mismatch']);
    expect(await keys()).toEqual([]);
    await stillServes();
  });

  it('refuses requests signed too long ago (replays) with RequestTimeTooSkewed', async () => {
    const old = await rawRequest(gateway.url, {
      method: 'GET',
      path: '/state',
      signingDate: new Date(Date.now() - 20 * 60_000),
    });
    expect([old.status, old.code]).toEqual([403, 'RequestTimeTooSkewed']);
    const future = await rawRequest(gateway.url, {
      method: 'GET',
      path: '/state',
      signingDate: new Date(Date.now() + 20 * 60_000),
    });
    expect(future.code).toBe('RequestTimeTooSkewed');
  });

  it('accepts presigned URLs until they expire', async () => {
    await rawRequest(gateway.url, { method: 'PUT', path: '/state/presigned', body: 'shared' });
    const url = new URL(gateway.url);
    const presign = async (signingDate: Date) => {
      const req = await signer().presign(
        {
          method: 'GET',
          protocol: 'http:',
          hostname: url.hostname,
          port: Number(url.port),
          path: '/state/presigned',
          query: {},
          headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
        },
        // As S3 presigners do: the payload is UNSIGNED-PAYLOAD and that header is not sent.
        { expiresIn: 60, signingDate, unsignableHeaders: new Set(['x-amz-content-sha256']) },
      );
      const q = new URLSearchParams(req.query as Record<string, string>).toString();
      return send(url, 'GET', `/state/presigned?${q}`, { host: url.host });
    };
    const fresh = await presign(new Date());
    expect([fresh.status, fresh.text]).toEqual([200, 'shared']);
    const expired = await presign(new Date(Date.now() - 10 * 60_000));
    expect([expired.status, expired.code]).toEqual([403, 'AccessDenied']);
    expect(expired.text).toContain('expired');
    await handler.deleteObject('presigned');
  });

  it('never listens beyond loopback without keys; open mode on loopback accepts unsigned requests', async () => {
    await expect(
      createS3Gateway({ buckets: { state: handler }, credentials: [], host: '0.0.0.0', logger: false }),
    ).rejects.toSatisfy((e: unknown) => isPgStateError(e, 'BAD_SETTING'));
    const open = await createS3Gateway({ buckets: { state: handler }, credentials: [], logger: false });
    closers.push(() => open.close());
    const r = await rawRequest(open.url, { method: 'PUT', path: '/state/open', body: 'o', sign: false });
    expect(r.status).toBe(200);
    await handler.deleteObject('open');
  });
});

describe("AWS's published signed streaming upload (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)", () => {
  const SIGS = [
    'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648',
    '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
    'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9',
  ];
  const body = (corrupt: boolean) =>
    Buffer.concat(
      [65536, 1024, 0].map((size, i) => {
        const data = Buffer.alloc(size, 'a');
        if (corrupt && size === 1024) data[10] = 0x62;
        return Buffer.concat([
          Buffer.from(`${size.toString(16)};chunk-signature=${SIGS[i]}\r\n`),
          data,
          Buffer.from('\r\n'),
        ]);
      }),
    );
  const headers = {
    host: 's3.amazonaws.com',
    'x-amz-date': '20130524T000000Z',
    'x-amz-storage-class': 'REDUCED_REDUNDANCY',
    authorization:
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
    'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
    'content-encoding': 'aws-chunked',
    'x-amz-decoded-content-length': '66560',
    'content-length': '66824',
  };

  it('verifies the seed and every chunk signature and stores the decoded bytes; one flipped byte is refused', async () => {
    const example = await createS3Gateway({
      buckets: { examplebucket: handler },
      credentials: [
        { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
      ],
      now: () => new Date('2013-05-24T00:00:00Z'),
      logger: false,
    });
    closers.push(() => example.close());
    const url = new URL(example.url);
    const bad = await send(url, 'PUT', '/examplebucket/chunkObject.txt', headers, body(true));
    expect([bad.status, bad.code]).toEqual([403, 'SignatureDoesNotMatch']);
    expect(await handler.headObject('chunkObject.txt')).toBeNull();
    const good = await send(url, 'PUT', '/examplebucket/chunkObject.txt', headers, body(false));
    expect(good.status).toBe(200);
    const stored = await handler.getObject('chunkObject.txt');
    expect(stored?.body.length).toBe(66560);
    expect(Buffer.from(stored!.body).equals(Buffer.alloc(66560, 'a'))).toBe(true);
    await handler.deleteObject('chunkObject.txt');
  });
});

describe('aws-chunked with trailing checksums (STREAMING-UNSIGNED-PAYLOAD-TRAILER)', () => {
  const data = Buffer.from('hello trailer world '.repeat(500));
  const framed = (checksum: string, opts: { truncate?: boolean; badSize?: boolean; noCrlf?: boolean } = {}) => {
    const a = data.subarray(0, 4000);
    const b = data.subarray(4000);
    const parts = [
      Buffer.from(`${opts.badSize ? 'zz' : a.length.toString(16)}\r\n`),
      a,
      Buffer.from(opts.noCrlf ? 'XX' : '\r\n'),
      Buffer.from(`${b.length.toString(16)}\r\n`),
      opts.truncate ? b.subarray(0, 10) : b,
      Buffer.from(`\r\n0\r\nx-amz-checksum-crc32:${checksum}\r\n\r\n`),
    ];
    return Buffer.concat(parts);
  };
  const put = (key: string, body: Buffer) =>
    rawRequest(gateway.url, {
      method: 'PUT',
      path: `/state/${key}`,
      body,
      headers: {
        'content-encoding': 'aws-chunked',
        'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
        'x-amz-decoded-content-length': String(data.length),
        'x-amz-trailer': 'x-amz-checksum-crc32',
        'x-amz-sdk-checksum-algorithm': 'CRC32',
      },
    });

  it('decodes the body and checks the trailing CRC32', async () => {
    const ok = await put('trailer-ok', framed(crc32(data)));
    expect(ok.status).toBe(200);
    expect(ok.headers['x-amz-checksum-crc32']).toBe(crc32(data));
    expect(Buffer.from((await handler.getObject('trailer-ok'))!.body).equals(data)).toBe(true);
    await handler.deleteObject('trailer-ok');
  });

  it('refuses wrong checksums, bad framing and truncated bodies without writing', async () => {
    expect((await put('t1', framed('AAAAAA=='))).code).toBe('BadDigest');
    expect((await put('t2', framed(crc32(data), { badSize: true }))).code).toBe('InvalidRequest');
    expect((await put('t3', framed(crc32(data), { noCrlf: true }))).code).toBe('InvalidRequest');
    expect((await put('t4', framed(crc32(data), { truncate: true }))).status).toBe(400);
    expect(await keys()).toEqual([]);
    await stillServes();
  });
});

describe('integrity headers, keys, XML and limits', () => {
  it('checks Content-MD5 and x-amz-checksum-* headers', async () => {
    const md5 = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/m',
      body: 'abc',
      headers: { 'content-md5': createHash('md5').update('abd').digest('base64') },
    });
    expect([md5.status, md5.code]).toEqual([400, 'BadDigest']);
    const crc = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/m',
      body: 'abc',
      headers: { 'x-amz-checksum-crc32': crc32(Buffer.from('abd')) },
    });
    expect(crc.code).toBe('BadDigest');
    const sha256 = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/m',
      body: 'abc',
      headers: { 'x-amz-checksum-sha256': createHash('sha256').update('abd').digest('base64') },
    });
    expect(sha256.code).toBe('BadDigest');
    const good = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/state/m',
      body: 'abc',
      headers: { 'x-amz-checksum-crc32': crc32(Buffer.from('abc')) },
    });
    expect(good.status).toBe(200);
    await handler.deleteObject('m');
    expect(await keys()).toEqual([]);
  });

  it('refuses dot segments, control characters, over-long keys and bad escapes', async () => {
    const dotdot = await rawRequest(gateway.url, { method: 'PUT', path: '/state/a/%2E%2E/b', body: 'x' });
    expect([dotdot.status, dotdot.code]).toEqual([400, 'InvalidArgument']);
    const nul = await rawRequest(gateway.url, { method: 'PUT', path: '/state/a%00b', body: 'x' });
    expect(nul.code).toBe('InvalidArgument');
    const long = await rawRequest(gateway.url, { method: 'PUT', path: `/state/${'k'.repeat(1025)}`, body: 'x' });
    expect(long.code).toBe('KeyTooLongError');
    const badEscape = await send(new URL(gateway.url), 'GET', '/state/%ZZ', { host: new URL(gateway.url).host });
    expect(badEscape.code).toBe('InvalidURI');
    const ok = await rawRequest(gateway.url, { method: 'PUT', path: `/state/${'k'.repeat(1024)}`, body: 'x' });
    expect(ok.status).toBe(200);
    await handler.deleteObject('k'.repeat(1024));
    expect(await keys()).toEqual([]);
  });

  it('answers MalformedXML for broken documents, DTDs and wrong roots', async () => {
    for (const xml of [
      '<Delete><Object><Key>a</Key></Object>',
      '<!DOCTYPE x [<!ENTITY a "b">]><Delete><Object><Key>&a;</Key></Object></Delete>',
      '<Other/>',
      '<Delete></Delete>',
      'not xml at all',
    ]) {
      const r = await rawRequest(gateway.url, { method: 'POST', path: '/state', query: { delete: '' }, body: xml });
      expect([r.status, r.code]).toEqual([400, 'MalformedXML']);
    }
    await rawRequest(gateway.url, { method: 'PUT', path: '/state/keep', body: 'k' });
    const r = await rawRequest(gateway.url, {
      method: 'POST',
      path: '/state',
      query: { delete: '' },
      body: '<Delete><Object><Key>keep</Key>',
    });
    expect(r.code).toBe('MalformedXML');
    expect(await keys()).toEqual(['keep']);
    await handler.deleteObject('keep');
  });

  it('refuses a body over the size limit before reading it', async () => {
    const small = await createS3Gateway({
      buckets: { state: handler },
      credentials: [KEY],
      limits: { maxObjectBytes: 1000 },
      logger: false,
    });
    closers.push(() => small.close());
    const r = await rawRequest(small.url, { method: 'PUT', path: '/state/big', body: Buffer.alloc(1001) });
    expect([r.status, r.code]).toEqual([400, 'EntityTooLarge']);
    expect(await keys()).toEqual([]);
    await stillServes(small);
  });

  it('answers 431 to huge headers and keeps serving', async () => {
    const r = await rawRequest(gateway.url, {
      method: 'GET',
      path: '/state',
      headers: { 'x-amz-meta-big': 'x'.repeat(20_000) },
    });
    expect(r.status).toBe(431);
    await stillServes();
  });

  it('accepts both copy-source encodings and virtual-hosted addressing', async () => {
    await rawRequest(gateway.url, { method: 'PUT', path: '/state/src%20key', body: 'copy me' });
    for (const source of ['state%2Fsrc%20key', '/state/src%20key']) {
      const r = await rawRequest(gateway.url, {
        method: 'PUT',
        path: '/state/dst',
        headers: { 'x-amz-copy-source': source },
      });
      expect(r.status).toBe(200);
      expect(r.text).toContain('<CopyObjectResult');
    }
    const port = new URL(gateway.url).port;
    const vhost = await rawRequest(gateway.url, {
      method: 'GET',
      path: '/dst',
      headers: { host: `state.localhost:${port}` },
    });
    expect([vhost.status, vhost.text]).toEqual([200, 'copy me']);
    await handler.deleteObject('dst');
    await handler.deleteObject('src key');
  });
});

describe('database problems', () => {
  it('a missing state table answers InternalError naming `pgstate migrate`, and the gateway keeps serving', async () => {
    const gone = await createTableHandler(db.url, 'gone');
    await gone.pool.query('DROP TABLE gone');
    const g = await createS3Gateway({ buckets: { state: handler, gone }, credentials: [KEY], logger: false });
    closers.push(async () => {
      await g.close();
      await gone.close?.();
    });
    const r = await rawRequest(g.url, { method: 'GET', path: '/gone/x' });
    expect([r.status, r.code]).toEqual([500, 'InternalError']);
    expect(r.text).toContain('pgstate migrate');
    expect(r.text).not.toContain('relation');
    await stillServes(g);
  });
});

describe('connections', () => {
  it('writes nothing for a body cut short, and keeps serving', async () => {
    const url = new URL(gateway.url);
    // A valid signature over UNSIGNED-PAYLOAD, then only half the promised bytes and a hang-up.
    const signed = await signer().sign(
      {
        method: 'PUT',
        protocol: 'http:',
        hostname: url.hostname,
        port: Number(url.port),
        path: '/state/cut',
        query: {},
        headers: { host: url.host, 'content-length': '100', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
      },
      {},
    );
    const socket = net.connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    const head = Object.entries(signed.headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\r\n');
    socket.write(`PUT /state/cut HTTP/1.1\r\n${head}\r\n\r\n${'x'.repeat(50)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await handler.headObject('cut')).toBeNull();
    await stillServes();
  });

  it('closes sockets that stall mid-headers', async () => {
    const quick = await createS3Gateway({
      buckets: { state: handler },
      credentials: [KEY],
      limits: { idleTimeoutMs: 300, headersTimeoutMs: 300 },
      logger: false,
    });
    closers.push(() => quick.close());
    const socket = net.connect(Number(new URL(quick.url).port), '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /state HTTP/1.1\r\nHost: x\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    await stillServes(quick);
  });

  it('close() lets an in-flight upload finish', async () => {
    const g = await createS3Gateway({ buckets: { state: handler }, credentials: [KEY], logger: false });
    const url = new URL(g.url);
    const body = Buffer.alloc(200_000, 7);
    const signed = await signer().sign(
      {
        method: 'PUT',
        protocol: 'http:',
        hostname: url.hostname,
        port: Number(url.port),
        path: '/state/inflight',
        query: {},
        headers: { host: url.host, 'content-length': String(body.length), 'x-amz-content-sha256': sha(body) },
      },
      {},
    );
    const socket = net.connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    const head = Object.entries(signed.headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\r\n');
    const response = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (d) => {
        text += d.toString();
        if (text.includes('\r\n\r\n')) resolve(text);
      });
      socket.on('close', () => resolve(text));
    });
    socket.write(`PUT /state/inflight HTTP/1.1\r\n${head}\r\n\r\n`);
    socket.write(body.subarray(0, 1000));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closed = g.close();
    socket.write(body.subarray(1000));
    await closed;
    expect(await response).toMatch(/^HTTP\/1.1 200/);
    socket.destroy();
    expect((await handler.headObject('inflight'))?.size).toBe(body.length);
    await handler.deleteObject('inflight');
  });
});
