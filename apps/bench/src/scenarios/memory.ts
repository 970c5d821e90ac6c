/**
 * Peak memory of the large-object paths (issue 11: a 50 MB checkpoint never costs more than ~3x its size): each run
 * is a child process (children/memory.mjs, built dist, no loader) that reports its idle RSS, its peak RSS
 * (`process.resourceUsage().maxRSS`) and the duration of the write it timed itself. The goal is
 * (peak - idle) / object size, the worst over the runs; the object's own buffer counts as 1x of that.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
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

export const memoryScenarios: Scenario[] = [checkpointSave, gatewayPut];
