// clear()/terminate() in bounded, cancellable batches, and parameter-lookup compaction (upstream #729, #761).
import { createTestDatabase } from '@pgstate/core/testing';
import { RequestParameters } from '@powersync/service-sync-rules';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  type ClearProgress,
  type PgStateBucketStorageFactory,
  type PgStateSyncRulesStorage,
  pgstateTestSetup,
  SaveOperationTag,
} from '../src/index.js';
import { deploy, GLOBAL_YAML, rid, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_maintenance');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

async function twoStreams(schema: string) {
  const factory = (await pgstateTestSetup({ url, schema }).factory()) as PgStateBucketStorageFactory;
  const a = factory.getInstance((await deploy(factory, GLOBAL_YAML)).stream) as PgStateSyncRulesStorage;
  const b = factory.getInstance((await deploy(factory, `${GLOBAL_YAML}\n# b\n`)).stream) as PgStateSyncRulesStorage;
  return { factory, a, b };
}

/** Fills a stream's tables directly (faster than replicating): `ops` bucket ops over 50 buckets, params, rows. */
async function fill(factory: PgStateBucketStorageFactory, groupId: number, ops: number) {
  const n = factory.db.names;
  await factory.db.query(
    `INSERT INTO ${n.bucketData} (group_id, bucket_name, op_id, op, checksum, data, table_name, row_id)
     SELECT $1, 'b' || (g % 50), g, 'PUT', g, '{}', 'test', 'r' || g FROM generate_series(1, $2) g`,
    [groupId, ops],
  );
  await factory.db.query(
    `INSERT INTO ${n.bucketParameters} (id, group_id, source_table, source_key, lookup, bucket_parameters)
     SELECT $2::int8 * 10 + g, $1, 't', int8send(g), int8send(g % 7), '[]' FROM generate_series(1, $2) g`,
    [groupId, Math.floor(ops / 10)],
  );
  await factory.db.query(
    `INSERT INTO ${n.currentData} (group_id, source_table, source_key, buckets, data, lookups)
     SELECT $1, 't' || (g % 3), int8send(g), '[]', '\\x00', '{}' FROM generate_series(1, $2) g`,
    [groupId, Math.floor(ops / 5)],
  );
}

async function counts(factory: PgStateBucketStorageFactory, groupId: number) {
  const n = factory.db.names;
  const row = await factory.db.first<{ d: bigint; p: bigint; c: bigint }>(
    `SELECT (SELECT count(*) FROM ${n.bucketData} WHERE group_id = $1)::int8 AS d,
            (SELECT count(*) FROM ${n.bucketParameters} WHERE group_id = $1)::int8 AS p,
            (SELECT count(*) FROM ${n.currentData} WHERE group_id = $1)::int8 AS c`,
    [groupId],
  );
  return { bucketData: Number(row!.d), bucketParameters: Number(row!.p), currentData: Number(row!.c) };
}

describe('clear', () => {
  test('deletes one stream in batches, can be cancelled between batches and resumed; other streams untouched', async () => {
    const { factory, a, b } = await twoStreams('ps_clear');
    try {
      await fill(factory, a.replicationStreamId, 20_000);
      await fill(factory, b.replicationStreamId, 3_000);
      const n = factory.db.names;
      await factory.db.query(`UPDATE ${n.syncRules} SET last_checkpoint = 20000, last_checkpoint_lsn = '1/0'`);
      const bBefore = await counts(factory, b.replicationStreamId);

      const abort = new AbortController();
      const progress: ClearProgress[] = [];
      await expect(
        a.clear({
          signal: abort.signal,
          batchSize: 1000,
          onProgress: (p) => {
            progress.push(p);
            if (progress.length === 5) abort.abort();
          },
        }),
      ).rejects.toMatchObject({ code: 'QUERY_FAILED' });
      // Cancelled after exactly 5 batches of 1000; the stream no longer serves a checkpoint.
      expect(progress.map((p) => p.deleted)).toEqual([1000, 2000, 3000, 4000, 5000]);
      expect((await counts(factory, a.replicationStreamId)).bucketData).toBe(15_000);
      expect((await a.getCheckpoint()).checkpoint).toBe(0n);

      await a.clear({ batchSize: 1000 });
      expect(await counts(factory, a.replicationStreamId)).toEqual({
        bucketData: 0,
        bucketParameters: 0,
        currentData: 0,
      });
      expect(await counts(factory, b.replicationStreamId)).toEqual(bBefore);
      expect((await b.getCheckpoint()).checkpoint).toBe(20000n);
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });

  test('terminate({clearStorage}) clears and marks the stream TERMINATED', async () => {
    const { factory, a, b } = await twoStreams('ps_terminate');
    try {
      await fill(factory, a.replicationStreamId, 2_500);
      await a.terminate({ clearStorage: true });
      expect(await counts(factory, a.replicationStreamId)).toEqual({
        bucketData: 0,
        bucketParameters: 0,
        currentData: 0,
      });
      const state = await factory.db.first<{ state: string }>(
        `SELECT state FROM ${factory.db.names.syncRules} WHERE id = $1`,
        [a.replicationStreamId],
      );
      expect(state?.state).toBe('TERMINATED');
      expect(b.replicationStreamId).not.toBe(a.replicationStreamId);
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });
});

describe('parameter compaction', () => {
  test('superseded lookups and tombstones go; lookups at the checkpoint return the same rows', async () => {
    const factory = (await pgstateTestSetup({
      url,
      schema: 'ps_param_compact',
    }).factory()) as PgStateBucketStorageFactory;
    try {
      const { stream } = await deploy(
        factory,
        `
bucket_definitions:
  by_owner:
    parameters: SELECT id AS list_id FROM lists WHERE owner_id = request.user_id()
    data: []
`,
      );
      const storage = factory.getInstance(stream) as PgStateSyncRulesStorage;
      const writer = await storage.createWriter(WRITER);
      const lists = await table(writer, 'lists', 1);
      await writer.markAllSnapshotDone('00000000/00000001');
      const save = (id: string, owner: string | null) =>
        owner == null
          ? writer.save({ sourceTable: lists, tag: SaveOperationTag.DELETE, before: { id }, beforeReplicaId: rid(id) })
          : writer.save({
              sourceTable: lists,
              tag: SaveOperationTag.UPDATE,
              after: { id, owner_id: owner },
              afterReplicaId: rid(id),
            });
      // L1 changes owner back and forth, L2 is created then deleted, L3 stays.
      for (let i = 0; i < 10; i++) {
        await save('L1', i % 2 === 0 ? 'u1' : 'u2');
        await writer.commit(`00000000/${(i + 2).toString(16).toUpperCase().padStart(8, '0')}`);
      }
      await save('L2', 'u1');
      await save('L3', 'u2');
      await writer.commit('00000000/00000020');
      await save('L2', null);
      await writer.commit('00000000/00000021');

      const hydrated = storage.getParsedSyncRules({ defaultSchema: 'public' });
      const lookupsFor = async (user: string) => {
        const { querier } = hydrated.getBucketParameterQuerier({
          globalParameters: new RequestParameters({ userIdJson: user, parsedPayload: { sub: user } }, {}),
          hasDefaultStreams: true,
          streams: {},
        });
        const cp = await storage.getCheckpoint();
        const buckets = await querier.queryDynamicBucketDescriptions({
          getParameterSets: (l) => cp.getParameterSets(l, 1000),
        });
        return buckets.map((b) => b.bucket).sort();
      };
      const before = { u1: await lookupsFor('u1'), u2: await lookupsFor('u2') };
      expect(before.u1).toEqual([]); // L1 ended with u2, L2 was deleted
      expect(before.u2.length).toBe(2);
      const rowsBefore = Number(
        (await factory.db.first<{ n: bigint }>(`SELECT count(*)::int8 AS n FROM ${factory.db.names.bucketParameters}`))!
          .n,
      );

      const result = await storage.compactWithResult();
      expect(result.parameterRowsDeleted).toBeGreaterThan(0);
      const rowsAfter = await factory.db.query<{ bucket_parameters: string }>(
        `SELECT bucket_parameters FROM ${factory.db.names.bucketParameters}`,
      );
      expect(rowsAfter.length).toBe(rowsBefore - result.parameterRowsDeleted);
      // Left: the live rows only (L1 -> u2, L3 -> u2), no tombstones, no superseded versions.
      expect(rowsAfter.every((r) => r.bucket_parameters !== '[]')).toBe(true);
      expect(rowsAfter.length).toBe(2);
      expect({ u1: await lookupsFor('u1'), u2: await lookupsFor('u2') }).toEqual(before);
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });
});
