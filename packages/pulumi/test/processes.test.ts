import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PulumiBlobStore, PulumiStateStore } from '../src/index.js';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let db: Awaited<ReturnType<typeof createTestDatabase>>;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'pulumi_proc');
});
afterAll(async () => {
  await db.drop();
});

/** A TypeScript child process running this package's source (tsx + the pgstate-source condition). */
function child(script: string, args: string[]) {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=pgstate-source', path.join(packageDir, 'test/children', script), ...args],
    { cwd: packageDir, stdio: ['pipe', 'pipe', 'pipe'] },
  ) as ChildProcessWithoutNullStreams;
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  /** Resolves with the first unread line matching the predicate. */
  let read = 0;
  async function next(match: (line: string) => boolean = () => true): Promise<string> {
    for (;;) {
      while (read < lines.length) {
        const line = lines[read++]!;
        if (match(line)) return line;
      }
      const done = await Promise.race([
        new Promise<false>((resolve) => waiters.push(() => resolve(false))),
        exited.then(() => true),
      ]);
      if (done && read >= lines.length) throw new Error(`child exited: ${stderr.slice(-2000)}`);
    }
  }
  return { proc, next, exited };
}

async function lockRace(processes: number, rounds: number, table: string) {
  const children = Array.from({ length: processes }, () => child('lock-contender.ts', [db.url, table]));
  try {
    await Promise.all(children.map((c) => c.next((l) => l === 'ready')));
    for (let round = 0; round < rounds; round++) {
      for (const c of children) c.proc.stdin.write(`go ${round}\n`);
      const results = await Promise.all(
        children.map(async (c) => JSON.parse(await c.next()) as { won: boolean; code?: string }),
      );
      const winners = results.filter((r) => r.won);
      expect(winners, `round ${round}`).toHaveLength(1);
      for (const r of results) if (!r.won) expect(r.code).toBe('CONFLICT');
    }
    // The store agrees: one lock file per round's stack.
    const store = new PulumiStateStore(new PulumiBlobStore({ connection: db.url, table }));
    try {
      for (let round = 0; round < rounds; round++) {
        expect(await store.lockHolders('race', `race-${round}`)).toHaveLength(1);
      }
    } finally {
      await store.close();
    }
  } finally {
    for (const c of children) c.proc.stdin.end('exit\n');
    await Promise.all(children.map((c) => c.exited));
  }
}

describe('OS processes racing for one stack lock', () => {
  it('2 processes: exactly one wins each round', async () => {
    await lockRace(2, 10, 'race_two');
  }, 120_000);

  it('16 processes: exactly one wins each round', async () => {
    await lockRace(16, 5, 'race_sixteen');
  }, 240_000);
});

describe('a writer killed with SIGKILL during a 50 MB checkpoint save', () => {
  it('leaves exactly the old or the new checkpoint, and an index that matches it', async () => {
    const table = 'killed_writer';
    const store = new PulumiStateStore(new PulumiBlobStore({ connection: db.url, table }));
    try {
      for (const delayMs of [0, 150, 400]) {
        const writer = child('checkpoint-writer.ts', [db.url, table, '50']);
        // Let one save complete so there is an "old" checkpoint, then kill during the next one.
        const saved = (await writer.next((l) => l.startsWith('saved '))).split(' ');
        const saving = (await writer.next((l) => l.startsWith('saving '))).split(' ');
        await new Promise((r) => setTimeout(r, delayMs));
        writer.proc.kill('SIGKILL');
        await writer.exited;
        // Any later "saved" line means the kill came after the commit: then the new one must be there.
        const found = await store.readCheckpointBytes('p', 's');
        const md5 = createHash('md5').update(found!.bytes).digest('hex');
        expect([saved[2], saving[2]]).toContain(md5);
        const [summary] = await store.listStacks('p');
        expect(summary!.size).toBe(found!.bytes.byteLength);
        const head = await store.blobs.head(found!.key);
        expect(head!.etag).toBe(md5);
      }
    } finally {
      await store.close();
    }
  }, 300_000);
});
