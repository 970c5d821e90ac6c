import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { type BucketStorageFactory, pgstateTestSetup, SaveOperationTag, type TestStorageConfig } from '../src/index.js';
import { all, bucket, checkpointAt, deploy, GLOBAL_YAML, ops, rid, table, WRITER } from './helpers.js';

// Checksum vectors from PowerSync's own storage test suite (row "test1" in table "test").
const PUT_TEST1 = 2871785649;
const REMOVE_TEST1 = 2872534815;

let drop: () => Promise<void>;
let url: string;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_data');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

describe.each([1, 2])('storage version %i', (storageVersion) => {
  let setup: TestStorageConfig;
  beforeAll(() => {
    setup = pgstateTestSetup({ url, schema: `ps_data_v${storageVersion}`, storageVersion });
  });

  async function withFactory(fn: (factory: BucketStorageFactory) => Promise<void>) {
    const factory = await setup.factory();
    try {
      await fn(factory);
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  }

  test('removing row', () =>
    withFactory(async (factory) => {
      const { stream } = await deploy(factory, GLOBAL_YAML, storageVersion);
      const storage = factory.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      const t = await table(writer, 'test');
      await writer.markAllSnapshotDone('1/1');
      await writer.save({
        sourceTable: t,
        tag: SaveOperationTag.INSERT,
        after: { id: 'test1', description: 'test1' },
        afterReplicaId: rid('test1'),
      });
      await writer.save({ sourceTable: t, tag: SaveOperationTag.DELETE, beforeReplicaId: rid('test1') });
      await writer.commit('1/1');

      const { checkpoint } = await storage.getCheckpoint();
      const request = bucket(stream, 'global[]');
      const batch = await all(storage.getBucketDataBatch(checkpointAt(checkpoint), [request]));
      expect(ops(batch)).toEqual([
        { op: 'PUT', object_id: 'test1', checksum: PUT_TEST1 },
        { op: 'REMOVE', object_id: 'test1', checksum: REMOVE_TEST1 },
      ]);
      const checksums = [...(await storage.getChecksums(checkpointAt(checkpoint), [request])).values()];
      expect(checksums).toEqual([
        { bucket: request.bucket, checksum: (PUT_TEST1 + REMOVE_TEST1) & 0xffffffff, count: 2 },
      ]);
    }));
});
