// Compaction behaviours (written from the facts doc's description of upstream's compact suite), storage v1 and v2.
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  addChecksums,
  type BucketStorageBatch,
  type BucketStorageFactory,
  type OplogEntry,
  type PgStateSyncRulesStorage,
  pgstateTestSetup,
  SaveOperationTag,
  type SourceTable,
  type SyncBucketDataChunk,
  type TestStorageConfig,
} from '../src/index.js';
import { all, bucket, checkpointAt, deploy, rid, table, WRITER } from './helpers.js';

const ALL_YAML = `
bucket_definitions:
  global:
    data: [select * from test]
`;

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_compact');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

const put = (t: SourceTable, row: Record<string, string>) =>
  ({ sourceTable: t, tag: SaveOperationTag.INSERT, after: row, afterReplicaId: rid(row.id!) }) as const;
const upd = (t: SourceTable, row: Record<string, string>) =>
  ({ sourceTable: t, tag: SaveOperationTag.UPDATE, after: row, afterReplicaId: rid(row.id!) }) as const;
const del = (t: SourceTable, id: string) =>
  ({ sourceTable: t, tag: SaveOperationTag.DELETE, before: { id }, beforeReplicaId: rid(id) }) as const;

const TIGHT = { clearBatchLimit: 2, moveBatchLimit: 1, moveBatchQueryLimit: 1 };

/** What a client holds after applying ops in order: rows by (type, id, subkey) and its running checksum. */
function replay(ops: OplogEntry[], start: { rows: Map<string, string>; checksum: number } = fresh()) {
  const rows = new Map(start.rows);
  let checksum = start.checksum;
  for (const op of ops) {
    const c = Number(op.checksum);
    if (op.op === 'CLEAR') {
      rows.clear();
      checksum = c & 0xffffffff;
      continue;
    }
    checksum = addChecksums(checksum, c);
    const key = `${op.object_type}/${op.object_id}/${op.subkey}`;
    if (op.op === 'PUT') rows.set(key, op.data ?? '');
    else if (op.op === 'REMOVE') rows.delete(key);
  }
  return { rows, checksum };
}
const fresh = () => ({ rows: new Map<string, string>(), checksum: 0 });
const flat = (chunks: SyncBucketDataChunk[]) => chunks.flatMap((c) => c.chunkData.data);

describe.each([1, 2, 3])('storage version %i', (storageVersion) => {
  let setup: TestStorageConfig;
  beforeAll(() => {
    setup = pgstateTestSetup({ url, schema: `ps_compact_v${storageVersion}`, storageVersion });
  });

  async function scenario(
    yaml: string,
    fn: (s: {
      factory: BucketStorageFactory;
      storage: PgStateSyncRulesStorage;
      writer: BucketStorageBatch;
      t: SourceTable;
      req: (name?: string, start?: bigint) => ReturnType<typeof bucket>;
      read: (checkpoint: bigint, name?: string, start?: bigint) => Promise<SyncBucketDataChunk[]>;
      checksum: (checkpoint: bigint, name?: string) => Promise<{ bucket: string; checksum: number; count: number }>;
    }) => Promise<void>,
  ) {
    const factory = await setup.factory();
    try {
      const { stream } = await deploy(factory, yaml, storageVersion);
      const storage = factory.getInstance(stream) as PgStateSyncRulesStorage;
      const writer = await storage.createWriter(WRITER);
      const t = await table(writer, 'test', 1);
      await writer.markAllSnapshotDone('1/1');
      const req = (name = 'global[]', start = 0n) => bucket(stream, name, start);
      // Every chunk up to the checkpoint, batch after batch (as the sync layer pages with next_after).
      const read = async (checkpoint: bigint, name = 'global[]', start = 0n) => {
        const chunks: SyncBucketDataChunk[] = [];
        for (let from = start; ; ) {
          const batch = await all(storage.getBucketDataBatch(checkpointAt(checkpoint), [req(name, from)]));
          chunks.push(...batch);
          const last = batch[batch.length - 1];
          if (!last?.chunkData.has_more) return chunks;
          from = BigInt(last.chunkData.next_after);
        }
      };
      const checksum = async (checkpoint: bigint, name = 'global[]') =>
        (await storage.getChecksums(checkpointAt(checkpoint), [req(name)])).get(req(name).bucket)!;
      await fn({ factory, storage, writer, t, req, read, checksum });
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  }

  test('compacting (1): a superseded PUT becomes a MOVE to the later op; checksums unchanged', () =>
    scenario(ALL_YAML, async ({ storage, writer, t, read, checksum }) => {
      await writer.save(put(t, { id: 't1' }));
      await writer.save(put(t, { id: 't2' }));
      await writer.save(upd(t, { id: 't2' }));
      await writer.commit('1/1');
      const cp = (await storage.getCheckpoint()).checkpoint;
      const before = await read(cp);
      const dataBefore = flat(before);
      const checksumBefore = await checksum(cp);
      expect(dataBefore.map((d) => [d.op, d.object_id])).toEqual([
        ['PUT', 't1'],
        ['PUT', 't2'],
        ['PUT', 't2'],
      ]);
      expect(before[0]!.targetOp).toBeNull();

      await storage.compact(TIGHT);

      const after = await read(cp);
      const dataAfter = flat(after);
      expect(after[0]!.targetOp).toBe(BigInt(dataBefore[2]!.op_id));
      expect(dataAfter).toEqual([
        dataBefore[0],
        { op_id: dataBefore[1]!.op_id, op: 'MOVE', checksum: dataBefore[1]!.checksum },
        dataBefore[2],
      ]);
      expect(await checksum(cp)).toEqual(checksumBefore); // partial on top of the cached value
      storage.clearChecksumCache();
      expect(await checksum(cp)).toEqual(checksumBefore); // computed from scratch
      expect(replay(dataAfter).rows).toEqual(replay(dataBefore).rows);
    }));

  test('compacting (2): the leading non-PUT run collapses into one CLEAR carrying its checksums', () =>
    scenario(ALL_YAML, async ({ storage, writer, t, read, checksum }) => {
      await writer.save(put(t, { id: 't1' }));
      await writer.save(put(t, { id: 't2' }));
      await writer.save(del(t, 't1'));
      await writer.save(upd(t, { id: 't2' }));
      await writer.commit('1/1');
      const cp = (await storage.getCheckpoint()).checkpoint;
      const dataBefore = flat(await read(cp));
      const checksumBefore = await checksum(cp);
      expect(dataBefore.map((d) => d.op)).toEqual(['PUT', 'PUT', 'REMOVE', 'PUT']);

      await storage.compact(TIGHT);

      const after = await read(cp);
      const dataAfter = flat(after);
      const cleared = [0, 1, 2].reduce((sum, i) => addChecksums(sum, Number(dataBefore[i]!.checksum)), 0);
      expect(dataAfter).toEqual([{ op_id: dataBefore[2]!.op_id, op: 'CLEAR', checksum: cleared }, dataBefore[3]]);
      expect(after[0]!.targetOp).toBeLessThanOrEqual(cp);
      storage.clearChecksumCache();
      expect(await checksum(cp)).toEqual({ ...checksumBefore, count: 2 });
      expect(replay(dataAfter)).toEqual(replay(dataBefore));
    }));

  test('compacting (3): a bucket of deleted rows becomes a single CLEAR', () =>
    scenario(ALL_YAML, async ({ storage, writer, t, read, checksum }) => {
      await writer.save(put(t, { id: 't1' }));
      await writer.save(put(t, { id: 't2' }));
      await writer.save(del(t, 't1'));
      await writer.commit('1/1');
      await writer.save(del(t, 't2'));
      await writer.commit('2/1');
      const cp = (await storage.getCheckpoint()).checkpoint;
      const checksumBefore = await checksum(cp);

      await storage.compact(TIGHT);

      const dataAfter = flat(await read(cp));
      expect(dataAfter).toEqual([{ op_id: cp.toString(), op: 'CLEAR', checksum: checksumBefore.checksum }]);
      storage.clearChecksumCache();
      expect(await checksum(cp)).toEqual({ ...checksumBefore, count: 1 });
    }));

  test('compacting (4): interleaved buckets, exact CLEAR and PUT vectors', () =>
    scenario(
      `
bucket_definitions:
  grouped:
    parameters: select 'b' as b
    data:
      - select * from test where b = bucket.b
`,
      async ({ storage, writer, t, read }) => {
        for (let i = 0; i < 100; i++) {
          await writer.save(put(t, { id: 't1', b: 'b1', value: 'start' }));
          await writer.save(upd(t, { id: 't1', b: 'b1', value: 'intermediate' }));
          await writer.save(put(t, { id: 't2', b: 'b2', value: 'start' }));
          await writer.save(upd(t, { id: 't1', b: 'b1', value: 'final' }));
          await writer.save(upd(t, { id: 't2', b: 'b2', value: 'final' }));
          await writer.commit('1/1');
        }
        const cp = (await storage.getCheckpoint()).checkpoint;
        expect(cp).toBe(500n);
        await storage.compact({ clearBatchLimit: 100, moveBatchLimit: 100, moveBatchQueryLimit: 100 });
        const b1 = flat(await read(cp, 'grouped["b1"]'));
        const b2 = flat(await read(cp, 'grouped["b2"]'));
        // Vectors from PowerSync's compact suite (Postgres op ids).
        expect(b1).toEqual([
          { op_id: '497', op: 'CLEAR', checksum: -937074151 },
          {
            op_id: '499',
            op: 'PUT',
            object_type: 'test',
            object_id: 't1',
            checksum: 52221819,
            subkey: '6544e3899293153fa7b38331/117ab485-4b42-58a2-ab32-0053a22c3423',
            data: '{"id":"t1","b":"b1","value":"final"}',
          },
        ]);
        expect(b2).toEqual([
          { op_id: '498', op: 'CLEAR', checksum: -234380197 },
          {
            op_id: '500',
            op: 'PUT',
            object_type: 'test',
            object_id: 't2',
            checksum: 2126669493,
            subkey: '6544e3899293153fa7b38331/ec27c691-b47a-5d92-927a-9944feb89eee',
            data: '{"id":"t2","b":"b2","value":"final"}',
          },
        ]);
      },
    ));

  test('partial checksums after compacting (1): ops after the compaction add to the compacted sum', () =>
    scenario(ALL_YAML, async ({ storage, writer, t, read, checksum }) => {
      await writer.save(put(t, { id: 't1' }));
      await writer.save(put(t, { id: 't2' }));
      await writer.save(del(t, 't1'));
      await writer.commit('1/1');
      const cp1 = (await storage.getCheckpoint()).checkpoint;
      const first = flat(await read(cp1));
      await storage.compact(TIGHT);
      await writer.save(del(t, 't2'));
      await writer.commit('2/1');
      const cp2 = (await storage.getCheckpoint()).checkpoint;
      const second = flat(await read(cp2, 'global[]', cp1));
      expect(second.map((d) => d.op)).toEqual(['REMOVE']);
      storage.clearChecksumCache();
      const expected = [...first, ...second].reduce((sum, d) => addChecksums(sum, Number(d.checksum)), 0);
      expect(await checksum(cp2)).toMatchObject({ checksum: expected, count: 4 });
    }));

  test('partial checksums after compacting (2): a cached checksum plus a range holding a CLEAR', () =>
    scenario(ALL_YAML, async ({ storage, writer, t, read, checksum }) => {
      await writer.save(put(t, { id: 't1' }));
      await writer.save(upd(t, { id: 't1' }));
      await writer.commit('1/1');
      const cp1 = (await storage.getCheckpoint()).checkpoint;
      const first = flat(await read(cp1));
      await checksum(cp1); // populates the cache at cp1
      await writer.save(del(t, 't1'));
      await writer.commit('2/1');
      const cp2 = (await storage.getCheckpoint()).checkpoint;
      const second = flat(await read(cp2, 'global[]', cp1));
      await storage.compact({ clearBatchLimit: 20, moveBatchLimit: 10, moveBatchQueryLimit: 10 });
      const expected = [...first, ...second].reduce((sum, d) => addChecksums(sum, Number(d.checksum)), 0);
      // Not double-counted: the range (cp1, cp2] now holds a CLEAR, which replaces the cached value.
      expect(await checksum(cp2)).toMatchObject({ checksum: expected, count: 1 });
    }));

  test('maxOpId defaults to the current checkpoint (flushed but uncommitted ops are left alone)', () =>
    scenario(ALL_YAML, async ({ storage, writer, t, read }) => {
      await writer.save(put(t, { id: 't1' }));
      await writer.commit('1/1');
      const cp1 = (await storage.getCheckpoint()).checkpoint;
      await writer.save(upd(t, { id: 't1' }));
      await writer.flush();
      const flushed = writer.last_flushed_op!;
      expect((await storage.getCheckpoint()).checkpoint).toBe(cp1);
      await storage.compact({ moveBatchLimit: 1, moveBatchQueryLimit: 1 });
      expect(flat(await read(flushed)).map((d) => [d.op_id, d.op])).toEqual([
        [cp1.toString(), 'PUT'],
        [flushed.toString(), 'PUT'],
      ]);
      // Once committed, the same call compacts it.
      await writer.commit('2/1');
      await storage.compact({ moveBatchLimit: 1, moveBatchQueryLimit: 1 });
      expect(flat(await read(flushed)).map((d) => d.op)).toEqual(['MOVE', 'PUT']);
    }));

  test('a client mid-sync converges: old ops up to X, compacted ops after X, same rows and checksum', () =>
    scenario(ALL_YAML, async ({ storage, writer, t, read, checksum }) => {
      // Deterministic churn over 40 rows: inserts, updates, deletes, re-inserts.
      let seed = 7;
      const rand = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      const live = new Set<string>();
      for (let i = 0; i < 1200; i++) {
        const id = `r${rand(40)}`;
        if (live.has(id) && rand(4) === 0) {
          await writer.save(del(t, id));
          live.delete(id);
        } else {
          await writer.save((live.has(id) ? upd : put)(t, { id, v: String(i) }));
          live.add(id);
        }
        if (i % 100 === 99) await writer.commit(`1/${i}`);
      }
      await writer.commit('2/0');
      const cp = (await storage.getCheckpoint()).checkpoint;
      const before = flat(await read(cp));
      const truth = replay(before);
      expect(truth.rows.size).toBe(live.size);
      const fullChecksum = await checksum(cp);
      expect(truth.checksum).toBe(fullChecksum.checksum);
      // Clients that stopped at various points before compaction.
      const stops = [0, 1, 50, 300, 700, before.length - 1].map((i) => BigInt(before[i]!.op_id));

      // Tight batches and a tiny memory limit: many pages, many update batches, seen-map cap hit.
      const result = await storage.compactWithResult({
        moveBatchQueryLimit: 37,
        moveBatchLimit: 5,
        clearBatchLimit: 11,
        memoryLimitMB: 0.002,
      });
      expect(result.moved).toBeGreaterThan(0);

      const after = flat(await read(cp));
      expect(after.filter((d) => d.op === 'MOVE').length).toBe(result.moved);
      expect(after.filter((d) => d.op === 'PUT').length).toBeGreaterThan(truth.rows.size); // the cap left some
      expect(replay(after)).toEqual({ rows: truth.rows, checksum: truth.checksum });
      storage.clearChecksumCache();
      expect((await checksum(cp)).checksum).toBe(fullChecksum.checksum);
      for (const stop of stops) {
        const had = replay(before.filter((d) => BigInt(d.op_id) <= stop));
        const chunks = await read(cp, 'global[]', stop);
        for (const c of chunks) expect(c.targetOp ?? 0n).toBeLessThanOrEqual(cp);
        const now = replay(flat(chunks), had);
        expect(now.rows).toEqual(truth.rows);
        expect(now.checksum).toBe(truth.checksum);
      }
      // Without the memory cap, a second run finds the rest; a third has nothing left to do.
      await storage.compactWithResult({});
      const second = flat(await read(cp));
      expect(replay(second)).toEqual({ rows: truth.rows, checksum: truth.checksum });
      expect(second.filter((d) => d.op === 'PUT').length).toBe(truth.rows.size);
      const third = await storage.compactWithResult({});
      expect(third).toMatchObject({ moved: 0, cleared: 0 });
      expect(flat(await read(cp))).toEqual(second);
    }));
});
