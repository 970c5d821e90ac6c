/**
 * Peak memory of the large-object paths (issue 11: a 50 MB checkpoint never costs more than ~3x its size): each run
 * is a child process (children/memory.mjs, built dist, no loader) that reports its idle RSS, its peak RSS
 * (`process.resourceUsage().maxRSS`) and the duration of the write it timed itself. The goal is
 * (peak - idle) / object size, the worst over the runs; the object's own buffer counts as 1x of that.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DEFAULT_TABLE, pulumiTableNames } from '@pgstate/pulumi';
import pg from 'pg';
import { checkpointBytes, MB } from '../fixtures.js';
import type { Prepared, Scenario, Side } from '../harness.js';

const CHILD = fileURLToPath(new URL('../../children/memory.mjs', import.meta.url));

interface Child {
  process: ChildProcess;
  next(): Promise<Record<string, number | string>>;
  send(line: string): void;
  exited: Promise<number | null>;
}

function startChild(args: string[]): Child {
  const child = spawn(process.execPath, ['--expose-gc', CHILD, ...args], {
    cwd: path.dirname(CHILD),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    process: child,
    exited,
    send: (line) => child.stdin!.write(`${line}\n`),
    async next() {
      const line = await Promise.race([
        lines.next(),
        exited.then((code) => {
          throw new Error(`memory child exited ${code}: ${stderr.trim().slice(-500)}`);
        }),
      ]);
      if (line.done) throw new Error(`memory child closed its output: ${stderr.trim().slice(-500)}`);
      return JSON.parse(line.value) as Record<string, number | string>;
    },
  };
}

/** Worst (peak - idle) over the runs of one side. */
class PeakTracker {
  worst = 0;
  add(idle: number, peak: number) {
    this.worst = Math.max(this.worst, peak - idle);
  }
}

function tempObject(bytes: Buffer): { file: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-bench-mem-'));
  const file = path.join(dir, 'checkpoint.json');
  fs.writeFileSync(file, bytes);
  return { file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

function saveSide(label: string, mode: string, url: string, file: string, peaks: PeakTracker): Side {
  return {
    label,
    async run() {
      const child = startChild([mode, url, file]);
      const doc = await child.next();
      await child.exited;
      peaks.add(Number(doc.idleRss), Number(doc.maxRss));
      return Number(doc.ms);
    },
  };
}

const GOAL = {
  text: 'peak RSS over idle <= 3x the object size (worst run)',
  maxRatio: 3,
  on: {
    candidate: 'candidatePeakOverIdleBytes',
    baseline: 'objectBytes',
    unit: 'bytes' as const,
    candidateLabel: 'peak RSS over idle, pgstate child (worst run)',
    baselineLabel: 'object size',
  },
};

const checkpointSave: Scenario = {
  suite: 'memory',
  name: 'checkpoint save 50 MB, child process',
  goal: GOAL,
  runs: 3,
  warmups: 0,
  async prepare({ url, quick }): Promise<Prepared> {
    const bytes = checkpointBytes('mem', 'dev', quick ? MB : 50 * MB);
    const object = tempObject(bytes);
    const candidate = new PeakTracker();
    const baseline = new PeakTracker();
    return {
      candidate: saveSide('PulumiStateStore.saveCheckpoint in a child', 'save-pgstate', url, object.file, candidate),
      baseline: saveSide('bare INSERT ... ON CONFLICT in a child', 'save-raw', url, object.file, baseline),
      units: { objectBytes: 'bytes', candidatePeakOverIdleBytes: 'bytes', baselinePeakOverIdleBytes: 'bytes' },
      extras: async () => ({
        objectBytes: bytes.byteLength,
        candidatePeakOverIdleBytes: candidate.worst,
        baselinePeakOverIdleBytes: baseline.worst,
      }),
      async teardown() {
        object.remove();
      },
    };
  },
};

const gatewayPut: Scenario = {
  suite: 'memory',
  name: 'gateway PutObject 50 MB, gateway in a child process',
  goal: GOAL,
  runs: 3,
  warmups: 0,
  async prepare({ url, quick }): Promise<Prepared> {
    const bytes = checkpointBytes('mem', 'dev', quick ? MB : 50 * MB);
    const object = tempObject(bytes);
    const candidate = new PeakTracker();
    const baseline = new PeakTracker();
    return {
      candidate: {
        label: 'S3 PutObject to a gateway child (SDK in this process)',
        async run() {
          const child = startChild(['gateway', url]);
          try {
            const { url: endpoint } = await child.next();
            const s3 = new S3Client({
              endpoint: String(endpoint),
              forcePathStyle: true,
              region: 'us-east-1',
              credentials: { accessKeyId: 'PGSTATEBENCH', secretAccessKey: 'bench-secret-not-a-real-one' },
            });
            const put = (key: string, body: Uint8Array) =>
              s3.send(new PutObjectCommand({ Bucket: 'pulumi-state', Key: key, Body: body }));
            await put('.pulumi/warm-up', Buffer.from('warm'));
            child.send('idle');
            const { idleRss } = await child.next();
            const start = performance.now();
            await put('.pulumi/stacks/mem/dev.json', bytes);
            const ms = performance.now() - start;
            s3.destroy();
            child.send('exit');
            const { maxRss } = await child.next();
            await child.exited;
            candidate.add(Number(idleRss), Number(maxRss));
            return ms;
          } finally {
            child.process.kill();
          }
        },
      },
      baseline: saveSide('bare INSERT ... ON CONFLICT in a child', 'save-raw', url, object.file, baseline),
      units: { objectBytes: 'bytes', candidatePeakOverIdleBytes: 'bytes', baselinePeakOverIdleBytes: 'bytes' },
      extras: async () => ({
        objectBytes: bytes.byteLength,
        candidatePeakOverIdleBytes: candidate.worst,
        baselinePeakOverIdleBytes: baseline.worst,
      }),
      async teardown() {
        object.remove();
      },
    };
  },
};

const MIB = 1024 * 1024;
const CONCURRENT = 16;

/** Starts a gateway child; returns its endpoint, an S3 client for it and a way to read its peak RSS and stop it. */
async function gatewayChild(url: string) {
  const child = startChild(['gateway', url]);
  const { url: endpoint } = await child.next();
  const s3 = new S3Client({
    endpoint: String(endpoint),
    forcePathStyle: true,
    region: 'us-east-1',
    maxAttempts: 1,
    credentials: { accessKeyId: 'PGSTATEBENCH', secretAccessKey: 'bench-secret-not-a-real-one' },
  });
  return {
    s3,
    put: (key: string, body: Uint8Array) =>
      s3.send(new PutObjectCommand({ Bucket: 'pulumi-state', Key: key, Body: body })),
    async stop(): Promise<number> {
      s3.destroy();
      child.send('exit');
      const { maxRss } = await child.next();
      await child.exited;
      return Number(maxRss);
    },
    kill: () => child.process.kill(),
  };
}

/**
 * Issue 15's goal: 16 concurrent 100 MB PUTs keep the gateway's peak RSS under 400 MiB (its in-flight body budget
 * makes uploads wait their turn), and every upload is either stored byte-exact (checked with md5 in PostgreSQL) or
 * answered 503 SlowDown. Anything else (a torn object, another error) fails the run. Baseline: one such PUT alone.
 */
const gatewayConcurrentPuts: Scenario = {
  suite: 'memory',
  name: `gateway ${CONCURRENT} concurrent PutObject 100 MB, gateway in a child process`,
  goal: {
    text: 'peak RSS of the gateway under 400 MiB',
    maxRatio: 1,
    on: {
      candidate: 'candidatePeakRssBytes',
      baseline: 'goalBytes',
      unit: 'bytes',
      candidateLabel: `peak RSS, gateway child, ${CONCURRENT} concurrent PUTs`,
      baselineLabel: '400 MiB',
    },
  },
  runs: 1,
  warmups: 0,
  async prepare({ url, quick }): Promise<Prepared> {
    const size = quick ? MIB : 100 * MIB;
    const bodies = Array.from({ length: CONCURRENT }, (_, i) => Buffer.alloc(size, i + 1));
    const blobs = pulumiTableNames(DEFAULT_TABLE).blobs;
    const outcome = { stored: 0, slowDown: 0, candidatePeakRssBytes: 0, baselinePeakRssBytes: 0 };
    return {
      candidate: {
        label: `${CONCURRENT} concurrent PutObject (SDK, no retries) to a gateway child with default limits`,
        async run() {
          const gateway = await gatewayChild(url);
          try {
            const start = performance.now();
            const results = await Promise.allSettled(bodies.map((body, i) => gateway.put(`concurrent/${i}`, body)));
            const ms = performance.now() - start;
            outcome.candidatePeakRssBytes = Math.max(outcome.candidatePeakRssBytes, await gateway.stop());
            const db = new pg.Client({ connectionString: url });
            await db.connect();
            try {
              for (const [i, result] of results.entries()) {
                if (result.status === 'rejected') {
                  const name = (result.reason as { name?: string }).name;
                  if (name !== 'SlowDown') throw new Error(`upload ${i} failed with ${name}, not SlowDown`);
                  outcome.slowDown++;
                  continue;
                }
                const { rows } = await db.query<{ md5: string }>(`SELECT md5(data) FROM ${blobs} WHERE key = $1`, [
                  `concurrent/${i}`,
                ]);
                if (rows[0]?.md5 !== createHash('md5').update(bodies[i]!).digest('hex')) {
                  throw new Error(`upload ${i} answered 200 but is not stored byte-exact`);
                }
                outcome.stored++;
                await db.query(`DELETE FROM ${blobs} WHERE key = $1`, [`concurrent/${i}`]);
              }
            } finally {
              await db.end();
            }
            return ms;
          } finally {
            gateway.kill();
          }
        },
      },
      baseline: {
        label: 'one PutObject of the same size to a gateway child',
        async run() {
          const gateway = await gatewayChild(url);
          try {
            const start = performance.now();
            await gateway.put('concurrent/alone', bodies[0]!);
            const ms = performance.now() - start;
            outcome.baselinePeakRssBytes = Math.max(outcome.baselinePeakRssBytes, await gateway.stop());
            return ms;
          } finally {
            gateway.kill();
          }
        },
      },
      units: {
        candidatePeakRssBytes: 'bytes',
        baselinePeakRssBytes: 'bytes',
        goalBytes: 'bytes',
        objectBytes: 'bytes',
        stored: 'count',
        slowDown: 'count',
      },
      extras: async () => ({ ...outcome, goalBytes: 400 * MIB, objectBytes: size }),
    };
  },
};

export const memoryScenarios: Scenario[] = [checkpointSave, gatewayPut, gatewayConcurrentPuts];
