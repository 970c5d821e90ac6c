// Behaviours of PowerSync's storage data suite, written from its description (clean-room), on storage v1, v2 and v3.
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  type BucketDataBatchOptions,
  type BucketStorageBatch,
  type BucketStorageFactory,
  pgstateTestSetup,
  type ReplicaId,
  SaveOperationTag,
  type SourceTable,
  type SyncRulesBucketStorage,
  type TestStorageConfig,
  uuidForRow,
} from '../src/index.js';
import { all, bucket, checkpointAt, deploy, GLOBAL_YAML, ops, rid, table, WRITER } from './helpers.js';

// Checksum vectors from PowerSync's storage test suite.
const PUT_TEST1 = 2871785649;
const REMOVE_TEST1 = 2872534815;
const PUT = { test2: 730027011, test3: 1359888332, test4: 2049153252, test5: 3686902721, test6: 1974820016 };

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_data');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

const insert = (sourceTable: SourceTable, after: Record<string, string>, afterReplicaId: ReplicaId = rid(after.id!)) =>
  ({ sourceTable, tag: SaveOperationTag.INSERT, after, afterReplicaId }) as const;
const update = (
  sourceTable: SourceTable,
  after: Record<string, string | undefined>,
  afterReplicaId: ReplicaId = rid(after.id!),
  before?: { row: Record<string, string>; id: ReplicaId },
) =>
  ({
    sourceTable,
    tag: SaveOperationTag.UPDATE,
    after,
    afterReplicaId,
    before: before?.row,
    beforeReplicaId: before?.id,
  }) as const;
const remove = (sourceTable: SourceTable, beforeReplicaId: ReplicaId, before?: Record<string, string>) =>
  ({ sourceTable, tag: SaveOperationTag.DELETE, beforeReplicaId, before }) as const;

describe.each([1, 2, 3])('storage version %i', (storageVersion) => {
  let setup: TestStorageConfig;
  beforeAll(() => {
    setup = pgstateTestSetup({ url, schema: `ps_data_v${storageVersion}`, storageVersion });
  });

  /** A fresh factory, a deployed stream, a writer and table `test` with the snapshot done at 1/1. */
  async function scenario(
    yaml: string,
    fn: (s: {
      factory: BucketStorageFactory;
      storage: SyncRulesBucketStorage;
      writer: BucketStorageBatch;
      t: SourceTable;
      stream: Awaited<ReturnType<typeof deploy>>['stream'];
      read: (name?: string, start?: bigint, options?: BucketDataBatchOptions) => Promise<ReturnType<typeof ops>>;
      checksum: (name?: string) => Promise<{ bucket: string; checksum: number; count: number }[]>;
    }) => Promise<void>,
    replicaIdColumns = ['id'],
  ) {
    const factory = await setup.factory();
    try {
      const { stream } = await deploy(factory, yaml, storageVersion);
      const storage = factory.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      const t = await table(writer, 'test', 1, replicaIdColumns);
      await writer.markAllSnapshotDone('1/1');
      const read = async (name = 'global[]', start = 0n, options?: BucketDataBatchOptions) => {
        const { checkpoint } = await storage.getCheckpoint();
        return ops(
          await all(storage.getBucketDataBatch(checkpointAt(checkpoint), [bucket(stream, name, start)], options)),
        );
      };
      const checksum = async (name = 'global[]') => {
        const { checkpoint } = await storage.getCheckpoint();
        return [...(await storage.getChecksums(checkpointAt(checkpoint), [bucket(stream, name)])).values()];
      };
      await fn({ factory, storage, writer, t, stream, read, checksum });
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  }

  test('removing row', () =>
    scenario(GLOBAL_YAML, async ({ writer, t, read, checksum }) => {
      await writer.save(insert(t, { id: 'test1', description: 'test1' }));
      await writer.save(remove(t, rid('test1')));
      await writer.commit('1/1');
      expect(await read()).toEqual([
        { op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 },
        { op: 'REMOVE', object_id: 'test1', checksum: REMOVE_TEST1 },
      ]);
      expect((await checksum())[0]).toMatchObject({ checksum: (PUT_TEST1 + REMOVE_TEST1) & 0xffffffff, count: 2 });
    }));

  test('insert after delete in new batch', () =>
    scenario(GLOBAL_YAML, async ({ writer, t, read, checksum }) => {
      await writer.save(remove(t, rid('test1')));
      await writer.commit('0/1');
      await writer.save(insert(t, { id: 'test1', description: 'test1' }));
      await writer.commit('2/1');
      expect(await read()).toEqual([{ op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 }]);
      expect((await checksum())[0]).toMatchObject({ checksum: PUT_TEST1 & 0xffffffff, count: 1 });
    }));

  test('update after delete in new batch', () =>
    scenario(GLOBAL_YAML, async ({ writer, t, read }) => {
      await writer.save(remove(t, rid('test1')));
      await writer.commit('0/1');
      await writer.save(update(t, { id: 'test1', description: 'test1' }));
      await writer.commit('2/1');
      expect(await read()).toEqual([{ op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 }]);
    }));

  test('insert after delete in same batch', () =>
    scenario(GLOBAL_YAML, async ({ writer, t, read, checksum }) => {
      await writer.save(remove(t, rid('test1')));
      await writer.save(insert(t, { id: 'test1', description: 'test1' }));
      await writer.commit('1/1');
      expect(await read()).toEqual([{ op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 }]);
      expect((await checksum())[0]).toMatchObject({ checksum: PUT_TEST1 & 0xffffffff, count: 1 });
    }));

  test('(insert, delete, insert), (delete)', () =>
    scenario(GLOBAL_YAML, async ({ storage, writer, t, read }) => {
      await writer.save(insert(t, { id: 'test1', description: 'test1' }));
      await writer.save(remove(t, rid('test1')));
      await writer.save(insert(t, { id: 'test1', description: 'test1' }));
      await writer.commit('1/1');
      const second = await storage.createWriter(WRITER);
      await second.save(remove(t, rid('test1')));
      await second.commit('2/1');
      const data = await read();
      // The client ends without the row: every PUT is followed by a REMOVE.
      expect(data).toEqual([
        { op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 },
        { op: 'REMOVE', object_id: 'test1', checksum: REMOVE_TEST1 },
        { op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 },
        { op: 'REMOVE', object_id: 'test1', checksum: REMOVE_TEST1 },
      ]);
    }));

  test('changing client ids', () =>
    scenario(GLOBAL_YAML.replace('SELECT id,', 'SELECT client_id as id,'), async ({ writer, t, read }) => {
      await writer.save(insert(t, { id: 'test1', client_id: 'client1a', description: 'test1a' }));
      await writer.save(update(t, { id: 'test1', client_id: 'client1b', description: 'test1b' }));
      await writer.save(insert(t, { id: 'test2', client_id: 'client2', description: 'test2' }));
      await writer.commit('1/1');
      expect((await read()).map(({ op, object_id }) => ({ op, object_id }))).toEqual([
        { op: 'PUT', object_id: 'client1a' },
        { op: 'PUT', object_id: 'client1b' },
        { op: 'REMOVE', object_id: 'client1a' },
        { op: 'PUT', object_id: 'client2' },
      ]);
    }));

  test('re-apply delete', () =>
    scenario(GLOBAL_YAML, async ({ writer, t, read, checksum }) => {
      await writer.save(insert(t, { id: 'test1', description: 'test1' }));
      await writer.flush();
      await writer.save(remove(t, rid('test1')));
      await writer.commit('1/1');
      await writer.save(remove(t, rid('test1')));
      await writer.flush();
      expect(await read()).toEqual([
        { op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 },
        { op: 'REMOVE', object_id: 'test1', checksum: REMOVE_TEST1 },
      ]);
      expect((await checksum())[0]).toMatchObject({ checksum: (PUT_TEST1 + REMOVE_TEST1) & 0xffffffff, count: 2 });
    }));

  test('re-apply update + delete (TOAST merge)', () =>
    scenario(GLOBAL_YAML, async ({ writer, t, read, checksum }) => {
      await writer.save(insert(t, { id: 'test1', description: 'test1' }));
      await writer.flush();
      for (const lsn of ['1/1', '2/1']) {
        await writer.save(update(t, { id: 'test1', description: undefined }));
        await writer.save(update(t, { id: 'test1', description: undefined }));
        await writer.save(remove(t, rid('test1')));
        await writer.commit(lsn);
      }
      // Each TOASTed update merges the stored description; the re-applied ones find no row and emit nothing.
      expect(await read()).toEqual([
        { op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 },
        { op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 },
        { op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 },
        { op: 'REMOVE', object_id: 'test1', checksum: REMOVE_TEST1 },
      ]);
      expect((await checksum())[0]).toMatchObject({
        checksum: (PUT_TEST1 + PUT_TEST1 + PUT_TEST1 + REMOVE_TEST1) & 0xffffffff,
        count: 4,
      });
    }));

  test('batch with overlapping replica ids', () =>
    scenario(GLOBAL_YAML.replace('"%"', '"test"'), async ({ storage, stream, writer, t }) => {
      await writer.save(insert(t, { id: 'test1', description: 'test1a' }));
      await writer.save(insert(t, { id: 'test2', description: 'test2a' }));
      const first = (await writer.flush())?.flushed_op ?? 0n;
      const moved = (from: string, to: string, description: string) =>
        update(t, { id: to, description }, rid(to), { row: { id: from }, id: rid(from) });
      await writer.save(insert(t, { id: 'test1', description: 'test1b' }));
      await writer.save(moved('test1', 'test2', 'test2b'));
      await writer.save(moved('test2', 'test3', 'test3b'));
      await writer.save(update(t, { id: 'test2', description: 'test2c' }));
      await writer.save(insert(t, { id: 'test4', description: 'test4d' }));
      await writer.save(moved('test4', 'test5', 'test5d'));
      const second = (await writer.flush())!.flushed_op;
      const batch = await all(storage.getBucketDataBatch(checkpointAt(second), [bucket(stream, 'global[]', first)]));
      const data = batch[0]!.chunkData.data.map((d) => ({ op: d.op, object_id: d.object_id, data: d.data }));
      const put = (id: string, description: string) => ({
        op: 'PUT',
        object_id: id,
        data: JSON.stringify({ id, description }),
      });
      const rm = (id: string) => ({ op: 'REMOVE', object_id: id, data: null });
      expect(data).toEqual([
        put('test1', 'test1b'),
        rm('test1'),
        put('test2', 'test2b'),
        rm('test2'),
        put('test3', 'test3b'),
        put('test2', 'test2c'),
        put('test4', 'test4d'),
        rm('test4'),
        put('test5', 'test5d'),
      ]);
    }));

  const fullRid = (id: string, description: string) => uuidForRow({ id, description });

  test('changed data with replica identity full', () =>
    scenario(
      GLOBAL_YAML.replace('"%"', '"test"'),
      async ({ storage, stream, writer, t }) => {
        await writer.save(insert(t, { id: 'test1', description: 'test1a' }, fullRid('test1', 'test1a')));
        const first = (await writer.flush())?.flushed_op ?? 0n;
        await writer.save(
          update(t, { id: 'test1', description: 'test1b' }, fullRid('test1', 'test1b'), {
            row: { id: 'test1', description: 'test1a' },
            id: fullRid('test1', 'test1a'),
          }),
        );
        await writer.flush();
        await writer.save(remove(t, fullRid('test1', 'test1b'), { id: 'test1', description: 'test1b' }));
        const last = (await writer.flush())!.flushed_op;
        const batch = await all(storage.getBucketDataBatch(checkpointAt(last), [bucket(stream, 'global[]', first)]));
        const data = batch[0]!.chunkData.data.map((d) => ({ op: d.op, object_id: d.object_id, subkey: d.subkey }));
        // Subkeys: PowerSync's vectors for these replica identities in table 6544e3899293153fa7b38331.
        const a = '6544e3899293153fa7b38331/740ba9f2-8b0f-53e3-bb17-5f38a9616f0e';
        const b = '6544e3899293153fa7b38331/500e9b68-a2fd-51ff-9c00-313e2fb9f562';
        expect(data).toEqual([
          { op: 'REMOVE', object_id: 'test1', subkey: a },
          { op: 'PUT', object_id: 'test1', subkey: b },
          { op: 'REMOVE', object_id: 'test1', subkey: b },
        ]);
      },
      ['id', 'description'],
    ));

  test('unchanged data with replica identity full', () =>
    scenario(
      GLOBAL_YAML.replace('"%"', '"test"'),
      async ({ storage, stream, writer, t }) => {
        const id = fullRid('test1', 'test1a');
        const row = { id: 'test1', description: 'test1a' };
        await writer.save(insert(t, row, id));
        const first = (await writer.flush())?.flushed_op ?? 0n;
        await writer.save(update(t, row, id, { row, id }));
        await writer.flush();
        await writer.save(remove(t, id, row));
        const last = (await writer.flush())!.flushed_op;
        const batch = await all(storage.getBucketDataBatch(checkpointAt(last), [bucket(stream, 'global[]', first)]));
        const data = batch[0]!.chunkData.data.map((d) => ({ op: d.op, subkey: d.subkey }));
        const a = '6544e3899293153fa7b38331/740ba9f2-8b0f-53e3-bb17-5f38a9616f0e';
        expect(data).toEqual([
          { op: 'PUT', subkey: a },
          { op: 'REMOVE', subkey: a },
        ]);
      },
      ['id', 'description'],
    ));

  test('large batch: chunkLimitBytes splits and has_more / next_after continue', () =>
    scenario(GLOBAL_YAML, async ({ storage, stream, writer, t }) => {
      const large = '0123456789'.repeat(1_200_000);
      await writer.save(insert(t, { id: 'test1', description: 'test1' }));
      await writer.save(insert(t, { id: 'large1', description: large }));
      await writer.save(insert(t, { id: 'large2', description: large }));
      await writer.save(insert(t, { id: 'test3', description: 'test3' }));
      await writer.commit('1/1');
      const { checkpoint } = await storage.getCheckpoint();
      const options = { chunkLimitBytes: 16 * 1024 * 1024 };
      const page = async (start: bigint) =>
        all(storage.getBucketDataBatch(checkpointAt(checkpoint), [bucket(stream, 'global[]', start)], options));
      const meta = (c: Awaited<ReturnType<typeof page>>) =>
        c[0] && {
          after: c[0].chunkData.after,
          has_more: c[0].chunkData.has_more,
          next_after: c[0].chunkData.next_after,
        };
      const ids = (c: Awaited<ReturnType<typeof page>>) =>
        (c[0]?.chunkData.data ?? []).map((d) => ({ op_id: d.op_id, object_id: d.object_id, checksum: d.checksum }));
      const b1 = await page(0n);
      expect(ids(b1)).toEqual([
        { op_id: '1', object_id: 'test1', checksum: PUT_TEST1 },
        { op_id: '2', object_id: 'large1', checksum: 454746904 },
      ]);
      expect(meta(b1)).toEqual({ after: '0', has_more: true, next_after: '2' });
      const b2 = await page(2n);
      expect(ids(b2)).toEqual([
        { op_id: '3', object_id: 'large2', checksum: 1795508474 },
        { op_id: '4', object_id: 'test3', checksum: PUT.test3 },
      ]);
      expect(meta(b2)).toEqual({ after: '2', has_more: false, next_after: '4' });
      expect(await page(4n)).toEqual([]);
    }));

  test('long batch: the row limit pages through a bucket', () =>
    scenario(GLOBAL_YAML, async ({ storage, stream, writer, t }) => {
      for (let i = 1; i <= 6; i++)
        await writer.save(insert(t, { id: `test${i}`, description: `test${i}` }, `test${i}`));
      await writer.commit('1/1');
      const { checkpoint } = await storage.getCheckpoint();
      const page = async (start: bigint) =>
        all(storage.getBucketDataBatch(checkpointAt(checkpoint), [bucket(stream, 'global[]', start)], { limit: 4 }));
      const b1 = await page(0n);
      expect(b1).toHaveLength(1);
      expect(b1[0]!.chunkData.data.map((d) => [d.op_id, d.checksum])).toEqual([
        ['1', PUT_TEST1],
        ['2', PUT.test2],
        ['3', PUT.test3],
        ['4', PUT.test4],
      ]);
      expect(b1[0]!.chunkData).toMatchObject({ after: '0', has_more: true, next_after: '4' });
      const b2 = await page(4n);
      expect(b2[0]!.chunkData.data.map((d) => [d.op_id, d.checksum])).toEqual([
        ['5', PUT.test5],
        ['6', PUT.test6],
      ]);
      expect(b2[0]!.chunkData).toMatchObject({ after: '4', has_more: false, next_after: '6' });
      expect(await page(6n)).toEqual([]);
    }));

  describe('batch has_more', () => {
    const yaml = `
bucket_definitions:
  global1:
    data:
      - SELECT id, description FROM test WHERE bucket = 'global1'
  global2:
    data:
      - SELECT id, description FROM test WHERE bucket = 'global2'
`;
    async function fetch(options: BucketDataBatchOptions) {
      let result: { bucket: string; ids: string[]; after: string; has_more: boolean; next_after: string }[] = [];
      await scenario(yaml, async ({ storage, stream, writer, t }) => {
        for (let i = 1; i <= 10; i++) {
          await writer.save(
            insert(t, { id: `test${i}`, description: `test${i}`, bucket: i === 1 ? 'global1' : 'global2' }, `test${i}`),
          );
        }
        await writer.commit('1/1');
        const { checkpoint } = await storage.getCheckpoint();
        const g1 = bucket(stream, 'global1[]');
        const g2 = bucket(stream, 'global2[]');
        const chunks = await all(storage.getBucketDataBatch(checkpointAt(checkpoint), [g1, g2], options));
        result = chunks.map(({ chunkData: c }) => ({
          bucket: c.bucket === g1.bucket ? 'global1' : c.bucket === g2.bucket ? 'global2' : c.bucket,
          ids: c.data.map((d) => d.op_id),
          after: c.after,
          has_more: c.has_more,
          next_after: c.next_after,
        }));
      });
      return result;
    }

    test('batch has_more (1): the limit cuts the second bucket', async () => {
      expect(await fetch({ limit: 5 })).toEqual([
        { bucket: 'global1', ids: ['1'], after: '0', has_more: false, next_after: '1' },
        { bucket: 'global2', ids: ['2', '3', '4', '5'], after: '0', has_more: true, next_after: '5' },
      ]);
    });

    test('batch has_more (2): everything fits', async () => {
      expect(await fetch({ limit: 11 })).toEqual([
        { bucket: 'global1', ids: ['1'], after: '0', has_more: false, next_after: '1' },
        {
          bucket: 'global2',
          ids: ['2', '3', '4', '5', '6', '7', '8', '9', '10'],
          after: '0',
          has_more: false,
          next_after: '10',
        },
      ]);
    });

    test('batch has_more (3): chunkLimitBytes splits a bucket into chunks', async () => {
      expect(await fetch({ limit: 3, chunkLimitBytes: 50 })).toEqual([
        { bucket: 'global1', ids: ['1'], after: '0', has_more: false, next_after: '1' },
        { bucket: 'global2', ids: ['2'], after: '0', has_more: true, next_after: '2' },
        { bucket: 'global2', ids: ['3'], after: '2', has_more: true, next_after: '3' },
      ]);
    });
  });

  test('empty storage metrics', async () => {
    const factory = await setup.factory({ dropAll: true });
    try {
      expect(await factory.getStorageMetrics()).toEqual({
        operations_size_bytes: 0,
        parameters_size_bytes: 0,
        replication_size_bytes: 0,
      });
      const r = await factory.configureSyncRules(
        (await import('../src/index.js')).syncRulesFromYaml('bucket_definitions: {}', { storageVersion }),
      );
      const writer = await factory.getInstance(r.persisted_sync_rules!).createWriter(WRITER);
      await writer.markAllSnapshotDone('1/0');
      await writer.keepalive('1/0');
      const metrics = await factory.getStorageMetrics();
      expect(metrics.operations_size_bytes).toBeGreaterThan(0);
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });

  test('op_id initialization edge case', async () => {
    const yaml = `
bucket_definitions:
  global:
    data:
      - SELECT id FROM test
      - SELECT id FROM test_ignore WHERE false
`;
    await scenario(yaml, async ({ writer, t }) => {
      const ignored = await table(writer, 'test_ignore', 2);
      // Writes current_data but no op: the first flush must not claim an op id that a later op gets.
      await writer.save(insert(ignored, { id: 'test1' }));
      const first = (await writer.flush())!.flushed_op;
      await writer.save(insert(t, { id: 'test2' }));
      const second = (await writer.flush())!.flushed_op;
      expect(second).toBeGreaterThan(first);
    });
  });

  test('unchanged checksums (and checksums at a later checkpoint reuse the cache)', () =>
    scenario(GLOBAL_YAML.replace('SELECT id,', 'SELECT client_id as id,'), async ({ storage, stream, writer, t }) => {
      await writer.save(insert(t, { id: 'test1', description: 'test1a' }));
      await writer.commit('1/1');
      const { checkpoint } = await storage.getCheckpoint();
      const request = bucket(stream, 'global[]');
      const expected = [{ bucket: request.bucket, checksum: 1917136889, count: 1 }];
      expect([...(await storage.getChecksums(checkpointAt(checkpoint), [request])).values()]).toEqual(expected);
      expect([...(await storage.getChecksums(checkpointAt(checkpoint + 1n), [request])).values()]).toEqual(expected);
    }));

  test('empty checkpoints (1)', () =>
    scenario(GLOBAL_YAML, async ({ storage, writer }) => {
      await writer.commit('1/1');
      expect((await storage.getCheckpoint()).lsn).toBe('1/1');
      await writer.commit('2/1', { createEmptyCheckpoints: true });
      expect((await storage.getCheckpoint()).lsn).toBe('2/1');
      await writer.keepalive('3/1');
      expect((await storage.getCheckpoint()).lsn).toBe('3/1');
      await writer.commit('4/1', { createEmptyCheckpoints: false });
      expect((await storage.getCheckpoint()).lsn).toBe('3/1');
    }));

  test('empty checkpoints (2): an op parked by a blocked commit is checkpointed by a later empty commit', () =>
    scenario(GLOBAL_YAML, async ({ storage, writer: writer1, t }) => {
      const writer2 = await storage.createWriter(WRITER);
      await writer1.commit('1/1');
      await writer1.commit('2/1', { createEmptyCheckpoints: false });
      expect((await storage.getCheckpoint()).lsn).toBe('1/1');
      await writer2.save(insert(t, { id: 'test1', description: 'test1a' }));
      await writer2.commit('0/0');
      expect((await storage.getCheckpoint()).lsn).toBe('1/1');
      await writer1.commit('4/1', { createEmptyCheckpoints: false });
      expect((await storage.getCheckpoint()).lsn).toBe('4/1');
    }));

  test('empty checkpoints (sync rule activation)', async () => {
    const factory = await setup.factory();
    try {
      const { stream } = await deploy(factory, GLOBAL_YAML, storageVersion);
      const storage = factory.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      expect(await writer.commit('1/1', { createEmptyCheckpoints: false })).toEqual({
        checkpointBlocked: true,
        checkpointCreated: false,
      });
      await writer.markAllSnapshotDone('3/1');
      expect(await writer.commit('2/1', { createEmptyCheckpoints: false })).toEqual({
        checkpointBlocked: true,
        checkpointCreated: false,
      });
      expect((await storage.getCheckpoint()).lsn).toBe(null);
      expect(await factory.getActiveSyncConfig()).toBe(null);
      expect(await writer.commit('3/1', { createEmptyCheckpoints: false })).toEqual({
        checkpointBlocked: false,
        checkpointCreated: true,
      });
      expect((await storage.getCheckpoint()).lsn).toBe('3/1');
      expect((await factory.getActiveSyncConfig())?.content.replicationStreamId).toBe(stream.replicationStreamId);
      expect(await writer.commit('4/1', { createEmptyCheckpoints: false })).toEqual({
        checkpointBlocked: false,
        checkpointCreated: false,
      });
      expect((await storage.getCheckpoint()).lsn).toBe('3/1');
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });

  test('checksums for multiple buckets', () =>
    scenario(
      `
bucket_definitions:
  user:
    parameters: select request.user_id() as user_id
    data:
      - select id, description from test where user_id = bucket.user_id
`,
      async ({ storage, stream, writer, t }) => {
        for (const u of ['u1', 'u2', 'u3', 'u4']) {
          for (const x of ['t1', 't2', 't3', 't4']) {
            await writer.save(insert(t, { id: `${x}_${u}`, description: `${x} description`, user_id: u }));
          }
        }
        await writer.commit('1/1');
        const { checkpoint } = await storage.getCheckpoint();
        storage.clearChecksumCache();
        const requests = ['u1', 'u2', 'u3', 'u4'].map((u) => bucket(stream, `user["${u}"]`));
        const checksums = await storage.getChecksums(checkpointAt(checkpoint), requests);
        expect(requests.map((r) => checksums.get(r.bucket))).toEqual(
          [346204588, 5261081, 134760718, -302639724].map((checksum, i) => ({
            bucket: requests[i]!.bucket,
            count: 4,
            checksum,
          })),
        );
      },
    ));
});
