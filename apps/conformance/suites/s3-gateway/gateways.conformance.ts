// Several gateways, one database: two `pgstate serve` processes (the built CLI, one shared 0600 keys file) on one
// PostgreSQL, driven by the AWS SDK v3 through a round-robin middleware that sends each request to the next gateway,
// as a load balancer would. Multipart parts uploaded through one gateway are completed through the other (object
// byte-exact, CRC32 checksums verified on the parts and on the GET); contenders racing for one Pulumi stack lock
// through both gateways, with the CLI's own lock-file protocol, end with exactly one holder. Every hop but PostgreSQL
// is stateless, so nothing here depends on which gateway a request reaches.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { migrate } from '@pgstate/schema';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type LaneTarget } from '../../src/kit.js';
import { needPgstateBin as needBin, type ServeProcess, spawnServe } from '../../src/serve.js';

const KEY = { accessKeyId: 'AKTWOGATEWAYS', secretAccessKey: 'two-gateways-secret-5d2e8c' };
const BUCKET = 'pulumi-state';
const MIB = 1024 * 1024;
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

/** One `pgstate serve` process; its request log tells which requests it served. */
class Gateway {
  private proc!: ServeProcess;

  get port(): number {
    return Number(this.proc.url.port);
  }
  get log(): string {
    return this.proc.log();
  }

  async start(lane: LaneTarget, keysFile: string, name: string): Promise<void> {
    this.proc = await spawnServe(
      [
        '--json',
        '--application-name',
        name,
        'serve',
        '--url',
        lane.url,
        '--listen',
        '127.0.0.1:0',
        '--keys-file',
        keysFile,
        '--bucket',
        `${BUCKET}=pulumi`,
        '--shutdown-grace',
        '5',
      ],
      { PATH: process.env.PATH ?? '', HOME: os.tmpdir() },
    );
  }

  /** S3 operations this gateway logged, in order. */
  operations(): string[] {
    return this.log
      .split('\n')
      .filter((line) => line.includes('"msg":"request"'))
      .map((line) => (JSON.parse(line) as { operation: string }).operation);
  }

  async stop(): Promise<number | null> {
    return this.proc.stop();
  }
}

/**
 * An S3 client pinned to one gateway. The SDK's default retries stay on, as in real use: a keep-alive connection the
 * gateway closes while idle (its keep-alive timeout) can meet the client's next request, which the SDK retries.
 */
function clientFor(port: number): S3Client {
  return new S3Client({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: KEY,
  });
}

/** Waits (bounded) until `check` holds: a gateway writes its request log line just after the response. */
async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
}

/**
 * An S3 client whose every request goes to the next gateway in turn. The endpoint is switched in the build step,
 * before SigV4 signs the request (the signed Host header names the gateway that receives it).
 */
function roundRobinClient(ports: number[]): S3Client {
  const client = clientFor(ports[0]!);
  let next = 0;
  client.middlewareStack.add(
    (handler) => async (args) => {
      const request = args.request as { port?: number; headers: Record<string, string> };
      const port = ports[next++ % ports.length]!;
      request.port = port;
      if (request.headers.host !== undefined) request.headers.host = `127.0.0.1:${port}`;
      return handler(args);
    },
    { step: 'build', name: 'pgstateRoundRobin', priority: 'high' },
  );
  return client;
}

interface Lanes {
  a: Gateway;
  b: Gateway;
  dir: string;
  clients: S3Client[];
  /** A client that alternates between the two gateways. */
  both: S3Client;
  /** Clients pinned to one gateway each. */
  viaA: S3Client;
  viaB: S3Client;
}

async function parts(client: S3Client, key: string, uploadId: string, chunks: Buffer[], first = 1) {
  const etags: Array<{ PartNumber: number; ETag: string; ChecksumCRC32?: string }> = [];
  for (const [i, chunk] of chunks.entries()) {
    const r = await client.send(
      new UploadPartCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId: uploadId,
        PartNumber: first + i,
        Body: chunk,
        ChecksumAlgorithm: 'CRC32',
      }),
    );
    // The gateway verified the part's CRC32 and echoes it.
    expect(r.ChecksumCRC32).toEqual(expect.any(String));
    etags.push({ PartNumber: first + i, ETag: r.ETag!, ChecksumCRC32: r.ChecksumCRC32 });
  }
  return etags;
}

/**
 * One contender for a Pulumi stack lock, with the Pulumi CLI's DIY protocol over S3 (`.pulumi/locks/organization/
 * <project>/<stack>/<uuid>.json`): list the stack's lock directory (any lock: "currently locked"), write its own lock
 * file, list again; another lock beside its own means it lost the race, so it removes its file. The CLI gives up
 * there; a contender here backs off and tries again, so each round ends with exactly one holder rather than none.
 */
async function contend(client: S3Client, lockDir: string): Promise<{ outcome: 'won' | 'locked'; key: string }> {
  const key = `${lockDir}${randomUUID()}.json`;
  const list = async () =>
    ((await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: lockDir }))).Contents ?? []).map(
      (o) => o.Key!,
    );
  const body = JSON.stringify({ pid: process.pid, username: 'conformance', hostname: os.hostname(), timestamp: '' });
  for (let attempt = 0; attempt < 60; attempt++) {
    if ((await list()).length > 0) return { outcome: 'locked', key };
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    const after = await list();
    if (after.length === 1 && after[0] === key) return { outcome: 'won', key };
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 40));
  }
  throw new Error(`no outcome for ${key} after 60 attempts`);
}

defineConformance({
  adapter: '@pgstate/s3-gateway',
  lanes: [
    { name: 'two-gateways', via: 'direct', requires: needBin },
    { name: 'two-gateways-pgbouncer', via: 'pgbouncer', requires: needBin },
  ],
  // As an administrator would, on a direct connection: the gateways then only read the journal at start.
  async setup(admin) {
    await migrate(admin, { adapter: 'pulumi' });
    await migrate(admin, { adapter: 'gateway' });
  },
  async create(lane): Promise<Lanes> {
    // One keys file shared by both gateways: a client signs the same way whichever one it reaches.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-two-gateways-'));
    const keysFile = path.join(dir, 'keys.json');
    fs.writeFileSync(keysFile, JSON.stringify({ keys: [KEY] }), { mode: 0o600 });
    const a = new Gateway();
    const b = new Gateway();
    await Promise.all([a.start(lane, keysFile, 'pgstate-gateway-a'), b.start(lane, keysFile, 'pgstate-gateway-b')]);
    const both = roundRobinClient([a.port, b.port]);
    const viaA = clientFor(a.port);
    const viaB = clientFor(b.port);
    return { a, b, dir, both, viaA, viaB, clients: [both, viaA, viaB] };
  },
  async close({ a, b, dir, clients }) {
    for (const c of clients) c.destroy();
    expect(await a.stop()).toBe(0);
    expect(await b.stop()).toBe(0);
    for (const g of [a, b]) expect(g.log).not.toContain(KEY.secretAccessKey);
    fs.rmSync(dir, { recursive: true, force: true });
  },
  probes: (admin: pg.Pool) => ({
    async object(key: string): Promise<{ md5: string; size: number } | undefined> {
      const { rows } = await admin.query<{ md5: string; size: number }>(
        'SELECT md5(data) AS md5, octet_length(data) AS size FROM pulumi_state WHERE key = $1',
        [key],
      );
      return rows[0];
    },
    async keys(prefix: string): Promise<string[]> {
      const { rows } = await admin.query<{ key: string }>(
        'SELECT key FROM pulumi_state WHERE left(key, length($1)) = $1 ORDER BY key COLLATE "C"',
        [prefix],
      );
      return rows.map((r) => r.key);
    },
    async partsInFlight(): Promise<number> {
      const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pgstate_s3_upload_parts');
      return rows[0]!.n;
    },
  }),
  tests({ test }) {
    test('the round-robin client reaches both gateways in turn', async ({ adapter: { a, b, both } }) => {
      const before = [a.operations().length, b.operations().length];
      for (let i = 0; i < 4; i++) {
        await both.send(new PutObjectCommand({ Bucket: BUCKET, Key: `rr/${i}`, Body: `v${i}` }));
      }
      const served = () => [a.operations().length - before[0]!, b.operations().length - before[1]!];
      await eventually(() => served()[0] === 2 && served()[1] === 2);
      expect(served()).toEqual([2, 2]);
    });

    test('multipart: parts uploaded through one gateway, completed through the other; byte-exact, checksums right', async ({
      adapter: { viaA, viaB, both },
      probes,
    }) => {
      const key = 'multipart/a-then-b.bin';
      const body = randomBytes(12 * MIB);
      const chunks = [body.subarray(0, 5 * MIB), body.subarray(5 * MIB, 10 * MIB), body.subarray(10 * MIB)];
      const { UploadId } = await viaA.send(
        new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: 'CRC32' }),
      );
      const uploaded = await parts(viaA, key, UploadId!, chunks);
      // The other gateway sees every part the first one stored.
      const listed = await viaB.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId }));
      expect(listed.Parts?.map((p) => [p.PartNumber, p.ETag, p.Size])).toEqual(
        uploaded.map((p, i) => [p.PartNumber, p.ETag, chunks[i]!.length]),
      );
      const done = await viaB.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: uploaded },
        }),
      );
      expect(done.ETag).toBe(`"${md5(body)}"`);
      expect(await probes.object(key)).toEqual({ md5: md5(body), size: body.length });
      // Read back through the first gateway with the SDK validating the full-object CRC32 it sends.
      const got = await viaA.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, ChecksumMode: 'ENABLED' }));
      expect(md5(await got.Body!.transformToByteArray())).toBe(md5(body));
      expect(await probes.partsInFlight()).toBe(0);

      // Round robin: consecutive parts land on alternating gateways, and so does the completion.
      const key2 = 'multipart/alternating.bin';
      const body2 = randomBytes(11 * MIB);
      const chunks2 = [body2.subarray(0, 5 * MIB), body2.subarray(5 * MIB, 10 * MIB), body2.subarray(10 * MIB)];
      const created = await both.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key2 }));
      const uploaded2 = await parts(both, key2, created.UploadId!, chunks2);
      await both.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key2,
          UploadId: created.UploadId,
          MultipartUpload: { Parts: uploaded2 },
        }),
      );
      expect(await probes.object(key2)).toEqual({ md5: md5(body2), size: body2.length });
      expect(await probes.partsInFlight()).toBe(0);
    });

    test('Pulumi stack lock raced through both gateways: exactly one holder per round, the others see it locked', async ({
      adapter: { a, b, viaA, viaB },
      probes,
    }) => {
      const lockDir = '.pulumi/locks/organization/race/dev/';
      const served = [a.operations().length, b.operations().length];
      for (let round = 0; round < 5; round++) {
        const contenders = Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? viaA : viaB));
        const results = await Promise.all(contenders.map((client) => contend(client, lockDir)));
        const winners = results.filter((r) => r.outcome === 'won');
        expect({ round, winners: winners.length }).toEqual({ round, winners: 1 });
        // PostgreSQL holds the winner's lock file and nothing else.
        expect(await probes.keys(lockDir)).toEqual([winners[0]!.key]);
        // The holder releases (as `pulumi` does when its update ends); the next round starts from no lock.
        await viaA.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: winners[0]!.key }));
        expect(await probes.keys(lockDir)).toEqual([]);
      }
      // Both gateways took part in the race.
      await eventually(() => a.operations().length > served[0]! && b.operations().length > served[1]!);
      expect(a.operations().length - served[0]!).toBeGreaterThan(0);
      expect(b.operations().length - served[1]!).toBeGreaterThan(0);
    });
  },
});
