// The writer's batching: background flushes, size-bounded current-data loads, failures, and paged reads.
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { subkeyOfStoredKey } from '../src/encoding.js';
import {
  type BatchLimitsInput,
  pgstateTestSetup,
  type ReplicaId,
  replicaIdToSubkey,
  SaveOperationTag,
  type SaveOptions,
  type SourceTable,
  serializeReplicaId,
  uuidForRow,
} from '../src/index.js';
import { all, bucket, deploy, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_writer');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

const BY_LIST = `
bucket_definitions:
  by_list:
    parameters: SELECT request.parameters() ->> 'list' AS list
    data:
      - SELECT id, list, body, note FROM items WHERE list = bucket.list
`;

const rid = (id: string): ReplicaId => uuidForRow({ id });
/** LSNs compare as text: fixed width. */
const lsnOf = (n: number) => `00000001/${n.toString(16).padStart(8, '0')}`;

/**
 * A replication script touching every writer path: inserts, updates with TOASTed (undefined) columns merged from
 * current data, moves between buckets, replica-id changes, deletes, re-inserts -- many times over the same rows,
 * so consecutive flushes depend on each other's current data.
 */
function script(t: SourceTable): SaveOptions[] {
  const out: SaveOptions[] = [];
  const body = (i: number, v: number) => `body ${i} v${v} ${'x'.repeat(200 + ((i * 37) % 300))}`;
  for (let i = 0; i < 60; i++) {
    out.push({
      sourceTable: t,
      tag: SaveOperationTag.INSERT,
      after: { id: `r${i}`, list: `l${i % 4}`, body: body(i, 0), note: 'n0' },
      afterReplicaId: rid(`r${i}`),
    });
  }
  for (let v = 1; v <= 4; v++) {
    for (let i = 0; i < 60; i += 1 + (v % 2)) {
      // body TOASTed: must come from current data, as written by an earlier flush.
      out.push({
        sourceTable: t,
        tag: SaveOperationTag.UPDATE,
        after: { id: `r${i}`, list: `l${(i + v) % 4}`, body: undefined, note: `n${v}` },
        afterReplicaId: rid(`r${i}`),
      });
    }
    for (let i = v; i < 60; i += 7) {
      out.push({ sourceTable: t, tag: SaveOperationTag.DELETE, beforeReplicaId: rid(`r${i}`) });
      out.push({
        sourceTable: t,
        tag: SaveOperationTag.INSERT,
        after: { id: `r${i}`, list: `l${i % 4}`, body: body(i, v), note: `re${v}` },
        afterReplicaId: rid(`r${i}`),
      });
    }
    // A replica-id change with a TOASTed column.
    out.push({
      sourceTable: t,
      tag: SaveOperationTag.UPDATE,
      before: { id: `r${v}` },
      beforeReplicaId: rid(`r${v}`),
      after: { id: `r${v}`, list: 'l0', body: undefined, note: `moved${v}` },
      afterReplicaId: rid(`r${v}-new`),
    });
  }
  return out;
}

/** Runs the script with the given limits; returns every op in every bucket and the checksums. */
async function run(schema: string, batchLimits: BatchLimitsInput, options: { commitEvery?: number } = {}) {
  const factory = await pgstateTestSetup({ url, schema, batchLimits }).factory();
  try {
    const { stream } = await deploy(factory, BY_LIST);
    const storage = factory.getInstance(stream);
    const writer = await storage.createWriter(WRITER);
    const t = await table(writer, 'items');
    await writer.markAllSnapshotDone(lsnOf(1));
    const saves = script(t);
    let lsn = 2;
    for (const [i, s] of saves.entries()) {
      await writer.save(s);
      if (options.commitEvery && i % options.commitEvery === 0) await writer.commit(lsnOf(lsn++));
    }
    await writer.commit(lsnOf(lsn++));
    const checkpoint = await storage.getCheckpoint();
    const requests = [0, 1, 2, 3].map((l) => bucket(stream, `by_list["l${l}"]`));
    const chunks = await all(storage.getBucketDataBatch(checkpoint, requests, { limit: 100_000 }));
    const ops = chunks.flatMap((c) =>
      c.chunkData.data.map((d) => ({
        bucket: c.chunkData.bucket.replace(/^\d+#/, ''),
        op: d.op,
        id: d.object_id,
        subkey: d.subkey,
        data: d.data,
        checksum: d.checksum,
      })),
    );
    const checksums = [...(await storage.getChecksums(checkpoint, requests)).values()].map((c) => ({
      ...c,
      bucket: c.bucket.replace(/^\d+#/, ''),
    }));
    await writer[Symbol.asyncDispose]();
    return { ops, checksums };
  } finally {
    await factory[Symbol.asyncDispose]();
  }
}

describe('writer batching', () => {
  test('background flushes of 7 records give exactly the ops and checksums of one large flush', async () => {
    const reference = await run('ps_w_ref', { max_record_count: 100_000 });
    const small = await run('ps_w_small', { max_record_count: 7 });
    // The script really exercises TOAST merges: every merged op carries the body written by an earlier flush.
    expect(reference.ops.filter((o) => o.op === 'PUT' && o.data?.includes('"note":"n2"')).length).toBeGreaterThan(20);
    expect(reference.ops.every((o) => o.op !== 'PUT' || /"body":"body /.test(o.data ?? ''))).toBe(true);
    expect(small.ops).toEqual(reference.ops);
    expect(small.checksums).toEqual(reference.checksums);
    const interleaved = await run('ps_w_commits', { max_record_count: 5 }, { commitEvery: 13 });
    expect(interleaved.ops).toEqual(reference.ops);
  });

  test('current data is loaded in chunks of max_current_data_batch_size (here: one row each) with the same result', async () => {
    const reference = await run('ps_w_ref2', { max_record_count: 50 });
    const tiny = await run('ps_w_tiny', { max_record_count: 50, max_current_data_batch_size: 1 });
    expect(tiny.ops).toEqual(reference.ops);
    expect(tiny.checksums).toEqual(reference.checksums);
  });

  test('a background flush that fails fails the next call, commits nothing, and the writer stays failed', async () => {
    const factory = await pgstateTestSetup({
      url,
      schema: 'ps_w_fail',
      batchLimits: { max_record_count: 5 },
    }).factory();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const { stream } = await deploy(factory, BY_LIST);
      const storage = factory.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      const t = await table(writer, 'items');
      await writer.markAllSnapshotDone('1/1');
      const save = (i: number) =>
        writer.save({
          sourceTable: t,
          tag: SaveOperationTag.INSERT,
          after: { id: `f${i}`, list: 'l0', body: 'b', note: 'n' },
          afterReplicaId: rid(`f${i}`),
        });
      for (let i = 0; i < 4; i++) await save(i);
      await writer.commit('1/2');
      const before = await storage.getCheckpoint();
      await admin.query('ALTER TABLE ps_w_fail.bucket_data RENAME TO bucket_data_away');
      // The 5th save starts a background flush, which fails on the missing table.
      for (let i = 4; i < 10; i++) await save(i);
      const failed = await save(10).then(
        () => null,
        (error: unknown) => error,
      );
      if (failed == null) {
        // The flush had not finished yet: the next call that waits for it must fail.
        await expect(writer.flush()).rejects.toThrow(/bucket_data/);
      } else {
        expect(String(failed)).toMatch(/bucket_data/);
      }
      await admin.query('ALTER TABLE ps_w_fail.bucket_data_away RENAME TO bucket_data');
      await expect(writer.commit('1/3')).rejects.toThrow(/bucket_data/);
      await expect(save(11)).rejects.toThrow(/bucket_data/);
      expect(await storage.getCheckpoint()).toMatchObject({ checkpoint: before.checkpoint, lsn: before.lsn });
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ps_w_fail.current_data WHERE group_id = $1`, [
        stream.replicationStreamId,
      ]);
      expect(rows[0].n).toBe(4);
      await writer[Symbol.asyncDispose]();
    } finally {
      await admin.end();
      await factory[Symbol.asyncDispose]();
    }
  });
});

describe('reads', () => {
  test('getBucketDataBatch pages by chunkLimitBytes: no query returns more than a chunk of data', async () => {
    const factory = await pgstateTestSetup({ url, schema: 'ps_w_pages' }).factory();
    try {
      const { stream } = await deploy(factory, BY_LIST);
      const storage = factory.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      const t = await table(writer, 'items');
      await writer.markAllSnapshotDone('1/1');
      const big = 'y'.repeat(50_000);
      for (let i = 0; i < 40; i++) {
        await writer.save({
          sourceTable: t,
          tag: SaveOperationTag.INSERT,
          after: { id: `p${i}`, list: `l${i % 2}`, body: big, note: String(i) },
          afterReplicaId: rid(`p${i}`),
        });
      }
      await writer.commit('1/2');
      const checkpoint = await storage.getCheckpoint();
      // Spy on what each query hands back.
      const db = (storage as unknown as { db: { query: (...args: unknown[]) => Promise<{ data?: string }[]> } }).db;
      const original = db.query.bind(db);
      const pageBytes: number[] = [];
      db.query = async (...args: unknown[]) => {
        const rows = await original(...args);
        pageBytes.push(rows.reduce((n, r) => n + (typeof r.data === 'string' ? r.data.length : 0), 0));
        return rows;
      };
      const requests = [bucket(stream, 'by_list["l0"]'), bucket(stream, 'by_list["l1"]')];
      const chunks = await all(storage.getBucketDataBatch(checkpoint, requests, { chunkLimitBytes: 120_000 }));
      db.query = original;
      const row = Buffer.byteLength(JSON.stringify({ id: 'p10', list: 'l0', body: big, note: '10' }));
      expect(Math.max(...pageBytes)).toBeLessThanOrEqual(120_000 + row);
      expect(pageBytes.length).toBeGreaterThan(10);
      // Same chunks as ever: 2 ops per chunk (a third would cross the limit), has_more until each bucket ends.
      expect(
        chunks.map((c) => [c.chunkData.bucket.replace(/^\d+#/, ''), c.chunkData.data.length, c.chunkData.has_more]),
      ).toEqual([
        ...Array.from({ length: 9 }, () => ['by_list["l0"]', 2, true]),
        ['by_list["l0"]', 2, false],
        ...Array.from({ length: 9 }, () => ['by_list["l1"]', 2, true]),
        ['by_list["l1"]', 2, false],
      ]);
      const ids = chunks.flatMap((c) => c.chunkData.data.map((d) => d.object_id));
      expect(new Set(ids).size).toBe(40);
      for (const c of chunks.slice(1)) {
        const previous = chunks[chunks.indexOf(c) - 1]!.chunkData;
        if (previous.bucket === c.chunkData.bucket) expect(c.chunkData.after).toBe(previous.next_after);
      }
      await writer[Symbol.asyncDispose]();
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });

  test('subkeys read from stored keys equal replicaIdToSubkey for UUID and other replica ids', () => {
    const ids: ReplicaId[] = [uuidForRow({ id: 'a' }), uuidForRow({ id: 42 }), 'plain-string', { k: 1, v: 'x' }];
    for (const id of ids) {
      expect(subkeyOfStoredKey('t1', serializeReplicaId(id))).toBe(replicaIdToSubkey('t1', id));
    }
  });
});
