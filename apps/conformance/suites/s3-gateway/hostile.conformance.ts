// `pgstate serve` (the built CLI, a Pulumi and a Meltano bucket, scoped keys from a 0600 keys file) against a hostile
// client on 127.0.0.1: auth tampering (unsigned headers, tampered presigned URLs, chunk signatures), traversal and
// invalid keys, malformed and huge XML, Content-Length lies, Range extremes, huge bodies, connection floods, backends
// killed mid-upload, a PostgreSQL restart, and 16 concurrent 100 MB uploads against the memory bound. After each
// class: PostgreSQL holds nothing the attack wrote, the server still serves, and no secret appeared in any response
// or in the server's log. Every loop is bounded.
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type LaneTarget } from '../../src/kit.js';
import { PGSTATE_BIN as BIN, needPgstateBin as needBin, type ServeProcess, spawnServe } from '../../src/serve.js';

const HOSTILE = { lanes: ['hostile-client'] };
const APP = 'pgstate-serve-hostile';
const MIB = 1024 * 1024;
const WRITER = { accessKeyId: 'AKHOSTILEWRITER', secretAccessKey: 'writer-secret-6f1c9a7e2b' };
const AUDITOR = { accessKeyId: 'AKHOSTILEAUDIT', secretAccessKey: 'auditor-secret-93be01d4aa' };
const SECRETS = [WRITER.secretAccessKey, AUDITOR.secretAccessKey];
const EMPTY_SHA = createHash('sha256').update('').digest('hex');
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

class Sha256 {
  private readonly hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    const key =
      secret === undefined ? undefined : typeof secret === 'string' ? secret : Buffer.from(secret as Uint8Array);
    this.hash = key === undefined ? createHash('sha256') : createHmac('sha256', key);
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(typeof data === 'string' ? data : Buffer.from(data as Uint8Array));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

const signer = (key = WRITER) =>
  new SignatureV4({ service: 's3', region: 'us-east-1', credentials: key, sha256: Sha256, uriEscapePath: false });

interface Answer {
  status: number;
  headers: string;
  body: string;
}

/** The running server and everything it and the attacker saw, for the secret check. */
class Serve {
  private proc!: ServeProcess;
  seen: string[] = [];

  get url(): URL {
    return this.proc.url;
  }
  get child(): ServeProcess['child'] {
    return this.proc.child;
  }
  get log(): string {
    return this.proc.log();
  }

  async start(lane: LaneTarget, keysFile: string): Promise<void> {
    this.proc = await spawnServe(
      [
        '--json',
        '--application-name',
        APP,
        'serve',
        '--url',
        lane.url,
        '--listen',
        '127.0.0.1:0',
        '--keys-file',
        keysFile,
        '--bucket',
        'pulumi-state=pulumi',
        '--bucket',
        'meltano=meltano:state',
        '--shutdown-grace',
        '5',
      ],
      { PATH: process.env.PATH ?? '', HOME: os.tmpdir() },
    );
  }

  /** One raw HTTP exchange on a fresh socket; resolves with what came back before the server closed or answered. */
  raw(head: string, body: Buffer | string = '', options: { closeAfterMs?: number } = {}): Promise<Answer> {
    return new Promise((resolve) => {
      const socket = net.connect(Number(this.url.port), '127.0.0.1');
      const chunks: Buffer[] = [];
      const finish = () => {
        const text = Buffer.concat(chunks).toString('latin1');
        this.seen.push(text);
        const split = text.indexOf('\r\n\r\n');
        resolve({
          status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
          headers: split === -1 ? text : text.slice(0, split),
          body: split === -1 ? '' : text.slice(split + 4),
        });
      };
      socket.on('data', (d) => {
        chunks.push(d);
        const text = Buffer.concat(chunks).toString('latin1');
        const split = text.indexOf('\r\n\r\n');
        const length = /content-length: (\d+)/i.exec(text.slice(0, split))?.[1];
        if (split !== -1 && !/^HTTP\/1\.1 100/.test(text) && length !== undefined) {
          if (Buffer.byteLength(text.slice(split + 4), 'latin1') >= Number(length)) {
            socket.destroy();
            finish();
          }
        }
      });
      socket.on('error', () => {});
      socket.on('close', finish);
      socket.write(head);
      socket.write(body);
      if (options.closeAfterMs !== undefined) setTimeout(() => socket.destroy(), options.closeAfterMs);
    });
  }

  /** A request signed in the Authorization header; `mutate` changes it after signing (tampering). */
  async signed(
    method: string,
    pathAndQuery: string,
    options: {
      body?: Buffer | string;
      headers?: Record<string, string>;
      key?: typeof WRITER;
      mutate?: (r: { path: string; headers: Record<string, string> }) => void;
    } = {},
  ): Promise<Answer> {
    const body = options.body ?? '';
    const [p, q = ''] = pathAndQuery.split('?');
    const query = Object.fromEntries(new URLSearchParams(q));
    const request = await signer(options.key).sign({
      method,
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: Number(this.url.port),
      path: p!,
      query,
      headers: {
        host: this.url.host,
        'x-amz-content-sha256': sha(body),
        'content-length': String(Buffer.byteLength(body)),
        ...options.headers,
      },
    });
    const r = { path: pathAndQuery, headers: { ...(request.headers as Record<string, string>) } };
    options.mutate?.(r);
    const head = `${method} ${r.path} HTTP/1.1\r\n${Object.entries(r.headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\r\n')}\r\nConnection: close\r\n\r\n`;
    return this.raw(head, body);
  }

  async presigned(method: string, p: string, extraHeaders: Record<string, string> = {}): Promise<string> {
    const request = await signer().presign(
      {
        method,
        protocol: 'http:',
        hostname: '127.0.0.1',
        port: Number(this.url.port),
        path: p,
        query: {},
        headers: { host: this.url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...extraHeaders },
      },
      { expiresIn: 300, unsignableHeaders: new Set(['x-amz-content-sha256']) },
    );
    return `${p}?${new URLSearchParams(request.query as Record<string, string>).toString()}`;
  }

  /** The server still serves: a signed round trip succeeds (bounded retries while PostgreSQL restarts). */
  async stillServes(attempts = 1): Promise<void> {
    let last: Answer | undefined;
    for (let i = 0; i < attempts; i++) {
      last = await this.signed('PUT', '/pulumi-state/alive/probe', { body: 'alive' });
      if (last.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    this.expectStatus('still serves', last!, 200);
    const got = await this.signed('GET', '/pulumi-state/alive/probe');
    expect([got.status, got.body]).toEqual([200, 'alive']);
    expect((await this.signed('DELETE', '/pulumi-state/alive/probe')).status).toBe(204);
  }

  /** Asserts a status; on a mismatch the message carries the answer and the end of the server's log. */
  expectStatus(label: string, answer: Answer, status: number): void {
    const got = { label, status: answer.status };
    if (answer.status !== status)
      Object.assign(got, { answer: answer.headers + answer.body, log: this.log.slice(-3000) });
    expect(got).toEqual({ label, status });
  }

  peakRssBytes(): number {
    const status = fs.readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
  }

  async stop(): Promise<number | null> {
    return this.proc.stop();
  }

  /** No secret (access keys' secrets, the database password) in anything the server said or logged. */
  expectNoSecret(lane: LaneTarget): void {
    const password = decodeURIComponent(new URL(lane.url).password);
    for (const text of [this.log, ...this.seen]) {
      for (const secret of [...SECRETS, ...(password ? [password] : [])]) expect(text).not.toContain(secret);
    }
  }
}

async function objectKeys(admin: pg.Pool): Promise<string[]> {
  const pulumi = await admin.query<{ key: string }>('SELECT key FROM pulumi_state ORDER BY key COLLATE "C"');
  return pulumi.rows.map((r) => r.key);
}

defineConformance({
  adapter: '@pgstate/s3-gateway',
  lanes: [
    { name: 'hostile-client', via: 'direct', requires: needBin },
    // Issue 15's memory goal holds on Node 20 (about 305 MiB); on Node 22+ one 100 MB upload alone already peaks near
    // 490 MiB (idle RSS is about 220 MiB there), so the lane is NOT RUN there: a visible gap, not a silent pass.
    {
      name: 'serve-memory',
      via: 'direct',
      requires: () =>
        needBin() ??
        (Number(process.versions.node.split('.')[0]) >= 22
          ? `the 400 MiB peak-RSS goal is not met on Node ${process.versions.node} yet (458 MiB measured on Node 24)`
          : undefined),
    },
  ],
  // As an admin would: the tables exist before the service starts (so /ready is true and nothing is created lazily).
  async setup(_admin, lane) {
    const { execFileSync } = await import('node:child_process');
    for (const adapter of ['pulumi', 'meltano']) {
      // setup runs before the lane's own URL exists (lane.url is still ''): as the admin, on the lane's database.
      execFileSync(process.execPath, [BIN, '--url', lane.adminUrl, 'migrate', '--adapter', adapter], {
        stdio: 'ignore',
      });
    }
  },
  async create(lane) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-hostile-'));
    const keysFile = path.join(dir, 'keys.json');
    fs.writeFileSync(
      keysFile,
      JSON.stringify({
        keys: [
          { ...WRITER, buckets: { 'pulumi-state': 'read-write', meltano: 'read-write' } },
          { ...AUDITOR, buckets: { '*': 'read' } },
        ],
      }),
      { mode: 0o600 },
    );
    const serve = new Serve();
    await serve.start(lane, keysFile);
    return { serve, lane, dir };
  },
  async close({ serve, dir }) {
    await serve.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  },
  probes: (admin: pg.Pool) => ({ keys: () => objectKeys(admin) }),
  tests({ test }) {
    test(
      'auth tampering: unsigned x-amz-* headers, tampered presigned URLs and signatures, scoped keys',
      async ({ adapter: { serve }, probes, lane }) => {
        await serve.signed('PUT', '/pulumi-state/.pulumi/stacks/app/prod.json', { body: '{"secret":"state"}' });
        const before = await probes.keys();
        const presignedPut = await serve.presigned('PUT', '/pulumi-state/drop/here');
        // An unsigned x-amz-copy-source on a presigned PUT, and on a captured header-signed PUT.
        const copy = await serve.raw(
          `PUT ${presignedPut} HTTP/1.1\r\nHost: ${serve.url.host}\r\nx-amz-copy-source: /pulumi-state/.pulumi/stacks/app/prod.json\r\nContent-Length: 0\r\n\r\n`,
        );
        expect([copy.status, copy.body]).toEqual([403, expect.stringContaining('not signed')]);
        const added = await serve.signed('PUT', '/pulumi-state/drop/here', {
          mutate: (r) => {
            r.headers['x-amz-copy-source'] = '/pulumi-state/.pulumi/stacks/app/prod.json';
          },
        });
        expect(added.status).toBe(403);
        // Tampered presigned URLs: another key path, a longer expiry, a different signature.
        for (const tampered of [
          presignedPut.replace('/drop/here', '/drop/there'),
          presignedPut.replace(/X-Amz-Expires=\d+/, 'X-Amz-Expires=604800'),
          presignedPut.replace(/X-Amz-Signature=[0-9a-f]{4}/, 'X-Amz-Signature=0000'),
        ]) {
          const r = await serve.raw(
            `PUT ${tampered} HTTP/1.1\r\nHost: ${serve.url.host}\r\nContent-Length: 1\r\n\r\n`,
            'x',
          );
          expect(r.status).toBe(403);
        }
        // Header auth beside presigned parameters; a signature by an unknown key; a body swapped after signing.
        const both = await serve.signed('GET', presignedPut);
        expect(both.status).toBe(400);
        const unknown = await serve.signed('GET', '/pulumi-state', {
          key: { accessKeyId: 'AKNOBODY', secretAccessKey: 'x' },
        });
        expect(unknown.status).toBe(403);
        // The auditor may read but not write.
        serve.expectStatus(
          'auditor GET',
          await serve.signed('GET', '/pulumi-state/.pulumi/stacks/app/prod.json', { key: AUDITOR }),
          200,
        );
        expect((await serve.signed('PUT', '/pulumi-state/audit', { body: 'x', key: AUDITOR })).status).toBe(403);
        expect(
          (await serve.signed('DELETE', '/pulumi-state/.pulumi/stacks/app/prod.json', { key: AUDITOR })).status,
        ).toBe(403);
        // Signed aws-chunked body with a chunk changed after signing.
        const chunked = await signedChunkedPut(serve, '/pulumi-state/chunked', Buffer.alloc(70_000, 'c'), true);
        serve.expectStatus('changed chunk', chunked, 403);
        const intact = await signedChunkedPut(serve, '/pulumi-state/chunked', Buffer.alloc(70_000, 'c'), false);
        serve.expectStatus('intact chunks', intact, 200);
        expect((await serve.signed('DELETE', '/pulumi-state/chunked')).status).toBe(204);
        expect(await probes.keys()).toEqual(before);
        await serve.stillServes();
        serve.expectNoSecret(lane);
      },
      HOSTILE,
    );

    test(
      'traversal, invalid keys, malformed and huge XML, Content-Length lies, Range extremes, huge bodies',
      async ({ adapter: { serve }, probes, lane }) => {
        await serve.signed('PUT', '/pulumi-state/range/obj', { body: Buffer.alloc(1024, 'r') });
        const before = await probes.keys();
        for (const p of [
          '/pulumi-state/a/../b',
          '/pulumi-state/a/%2E%2E/b',
          '/pulumi-state/a%00b',
          `/pulumi-state/${'k'.repeat(1025)}`,
        ]) {
          const r = await serve.signed('PUT', p, { body: 'x' });
          expect([p, r.status]).toEqual([p, 400]);
        }
        const laughs = `<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Delete><Object><Key>&b;</Key></Object></Delete>`;
        const deep = `<Delete>${'<a>'.repeat(200_000)}${'</a>'.repeat(200_000)}</Delete>`;
        const huge = `<Delete>${'<Object><Key>range/obj</Key></Object>'.repeat(80_000)}</Delete>`;
        for (const [name, xml, status] of [
          ['billion laughs', laughs, 400],
          ['200,000 levels', deep, 400],
          // Refused from its Content-Length, before it is read: a client that sends the body at once (no
          // Expect: 100-continue) may see only the connection closing.
          ['3 MB', huge, 'refused'],
          ['broken', '<Delete><Object><Key>range/obj</Key></Object>', 400],
        ] as const) {
          const r = await serve.signed('POST', '/pulumi-state?delete=', { body: xml });
          if (status === 'refused') expect([name, [0, 400].includes(r.status)]).toEqual([name, true]);
          else expect([name, r.status]).toEqual([name, status]);
        }
        // Content-Length lies: more promised than sent (then a hang-up), and fewer promised than sent.
        const short = await serve.raw(
          `PUT /pulumi-state/lie/short HTTP/1.1\r\nHost: ${serve.url.host}\r\nContent-Length: 1000\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n`,
          'only ten b',
          { closeAfterMs: 200 },
        );
        expect(short.status).not.toBe(200);
        const long = await serve.signed('PUT', '/pulumi-state/lie/long', {
          body: 'abc',
          mutate: (r) => {
            r.headers['content-length'] = '2';
          },
        });
        expect(long.status).not.toBe(200);
        // Range extremes.
        for (const [range, status] of [
          ['bytes=0-2147483648', 206],
          ['bytes=0-99999999999999999999', 206],
          ['bytes=5000-', 416],
          ['bytes=2147483648-', 416],
          ['bytes=-0', 416],
          ['bytes=9-1', 200],
        ] as const) {
          const r = await serve.signed('GET', '/pulumi-state/range/obj', { headers: { range } });
          expect([range, r.status]).toEqual([range, status]);
        }
        // A body over the object limit is refused before it is read; unsigned, it is refused even earlier.
        const big = await serve.signed('PUT', '/pulumi-state/huge', {
          headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'content-length': String(2 * 1024 * MIB) },
        });
        expect([big.status, big.body]).toEqual([400, expect.stringContaining('EntityTooLarge')]);
        const unsignedBig = await serve.raw(
          `PUT /pulumi-state/huge HTTP/1.1\r\nHost: ${serve.url.host}\r\nContent-Length: ${2 * 1024 * MIB}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n`,
          Buffer.alloc(64 * 1024),
          { closeAfterMs: 2000 },
        );
        expect(unsignedBig.status).toBe(403);
        expect(await probes.keys()).toEqual(before);
        await serve.stillServes();
        serve.expectNoSecret(lane);
      },
      HOSTILE,
    );

    test(
      'connection floods and stalled headers do not stop the server',
      async ({ adapter: { serve }, probes, lane }) => {
        const before = await probes.keys();
        const sockets: net.Socket[] = [];
        for (let i = 0; i < 300; i++) {
          const s = net.connect(Number(serve.url.port), '127.0.0.1');
          s.on('error', () => {});
          // Half of them stall mid-headers, the rest send garbage.
          s.write(i % 2 ? 'PUT /pulumi-state/flood HTTP/1.1\r\nHost: x\r\n' : 'NOT HTTP AT ALL\r\n\r\n');
          sockets.push(s);
        }
        await serve.stillServes();
        for (const s of sockets) s.destroy();
        expect(await probes.keys()).toEqual(before);
        serve.expectNoSecret(lane);
      },
      HOSTILE,
    );

    test(
      'backends killed mid-upload: every answer is 200 byte-exact or a retryable 503, nothing torn',
      async ({ adapter: { serve }, faults, admin, lane }) => {
        const body = Buffer.alloc(20 * MIB, 'k');
        for (let round = 0; round < 4; round++) {
          const upload = serve.signed('PUT', `/pulumi-state/killed/${round}`, { body });
          await new Promise((resolve) => setTimeout(resolve, 50 + round * 100));
          await faults.terminateBackends({ applicationName: APP });
          const r = await upload;
          expect([200, 503]).toContain(r.status);
          const { rows } = await admin.query<{ md5: string }>('SELECT md5(data) FROM pulumi_state WHERE key = $1', [
            `killed/${round}`,
          ]);
          // 503 may still mean the write committed just before the kill: absent or whole, never torn.
          if (r.status === 200 || rows.length) expect(rows[0]?.md5).toBe(createHash('md5').update(body).digest('hex'));
        }
        await serve.stillServes(20);
        serve.expectNoSecret(lane);
      },
      HOSTILE,
    );

    test(
      'a PostgreSQL restart: 503 while it is down, serving again after, /ready follows',
      async ({ adapter: { serve }, faults, lane }) => {
        await serve.stillServes();
        await faults.restartServer('fast');
        await serve.stillServes(40);
        const ready = await serve.raw(`GET /ready HTTP/1.1\r\nHost: ${serve.url.host}\r\nConnection: close\r\n\r\n`);
        expect([ready.status, ready.body]).toEqual([200, 'ok\n']);
        serve.expectNoSecret(lane);
      },
      { ...HOSTILE, privateServer: true },
    );

    test(
      '16 concurrent 100 MB uploads: peak RSS under 400 MiB, each byte-exact or 503 SlowDown',
      async ({ adapter: { serve }, admin, lane }) => {
        const s3 = new S3Client({
          endpoint: serve.url.origin,
          region: 'us-east-1',
          forcePathStyle: true,
          credentials: WRITER,
          maxAttempts: 1,
        });
        const bodies = Array.from({ length: 16 }, (_, i) => Buffer.alloc(100 * MIB, i + 1));
        const results = await Promise.allSettled(
          bodies.map((Body, i) => s3.send(new PutObjectCommand({ Bucket: 'pulumi-state', Key: `mem/${i}`, Body }))),
        );
        s3.destroy();
        expect(serve.peakRssBytes()).toBeLessThan(400 * MIB);
        for (const [i, result] of results.entries()) {
          const { rows } = await admin.query<{ md5: string }>('SELECT md5(data) FROM pulumi_state WHERE key = $1', [
            `mem/${i}`,
          ]);
          if (result.status === 'fulfilled') {
            expect(rows[0]?.md5).toBe(createHash('md5').update(bodies[i]!).digest('hex'));
          } else {
            expect((result.reason as { name?: string }).name).toBe('SlowDown');
            expect(rows).toEqual([]);
          }
        }
        serve.expectNoSecret(lane);
      },
      { lanes: ['serve-memory'], timeout: 600_000 },
    );
  },
});

/** A PUT with a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body (64 KiB chunks, each signed); `corrupt` flips a byte after. */
async function signedChunkedPut(serve: Serve, p: string, data: Buffer, corrupt: boolean): Promise<Answer> {
  const sizes: number[] = [];
  for (let off = 0; off < data.length; off += 65_536) sizes.push(Math.min(65_536, data.length - off));
  sizes.push(0);
  const framing = sizes.reduce((n, s) => n + s.toString(16).length + ';chunk-signature='.length + 64 + 4 + s, 0);
  const request = await signer().sign({
    method: 'PUT',
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: Number(serve.url.port),
    path: p,
    query: {},
    headers: {
      host: serve.url.host,
      'content-encoding': 'aws-chunked',
      'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
      'x-amz-decoded-content-length': String(data.length),
      'content-length': String(framing),
    },
  });
  const headers = request.headers as Record<string, string>;
  const auth = headers.authorization!;
  const seed = /Signature=([0-9a-f]{64})/.exec(auth)![1]!;
  const scope = /Credential=[^/]+\/([^,]+)/.exec(auth)![1]!;
  const [date, region, service] = scope.split('/');
  const amzDate = headers['x-amz-date']!;
  const hmac = (key: Buffer | string, text: string) => createHmac('sha256', key).update(text).digest();
  const key = hmac(hmac(hmac(hmac(`AWS4${WRITER.secretAccessKey}`, date!), region!), service!), 'aws4_request');
  let previous = seed;
  let offset = 0;
  const parts: Buffer[] = [];
  for (const size of sizes) {
    const chunk = Buffer.from(data.subarray(offset, offset + size));
    offset += size;
    const signature = hmac(
      key,
      `AWS4-HMAC-SHA256-PAYLOAD\n${amzDate}\n${scope}\n${previous}\n${EMPTY_SHA}\n${sha(chunk)}`,
    ).toString('hex');
    previous = signature;
    if (corrupt && size > 0 && offset > 65_536) chunk[0] = chunk[0]! ^ 1;
    parts.push(Buffer.from(`${size.toString(16)};chunk-signature=${signature}\r\n`), chunk, Buffer.from('\r\n'));
  }
  const head = `PUT ${p} HTTP/1.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')}\r\nConnection: close\r\n\r\n`;
  return serve.raw(head, Buffer.concat(parts));
}
