// A row too large to store (found with the real service: upstream's "record too large" replication test). BSON
// refuses documents past 16 MiB by throwing; the row must be kept as TOAST like upstream, not fail replication,
// and a later change that fits brings it back.
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { pgstateTestSetup, SaveOperationTag } from '../src/index.js';
import { all, bucket, deploy, rid, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_large_row');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

test('an 18 MB row is kept as TOAST without failing the writer; the next change that fits is a PUT', async () => {
  const factory = await pgstateTestSetup({ url, schema: 'ps_large_row' }).factory();
  try {
    const { stream } = await deploy(
      factory,
      'bucket_definitions:\n  global:\n    data:\n      - SELECT id, description, other FROM test_data\n',
    );
    const storage = factory.getInstance(stream);
    const writer = await storage.createWriter(WRITER);
    const sourceTable = await table(writer, 'test_data');
    await writer.markAllSnapshotDone('1/1');
    const tooLarge = 'x'.repeat(18_000_000);
    await writer.save({
      sourceTable,
      tag: SaveOperationTag.INSERT,
      after: { id: 't1', description: tooLarge, other: 'foo' },
      afterReplicaId: rid('t1'),
    });
    await writer.save({
      sourceTable,
      tag: SaveOperationTag.UPDATE,
      after: { id: 't1', description: 'fits', other: 'foo' },
      afterReplicaId: rid('t1'),
    });
    await writer.commit('1/2');
    await writer.dispose();

    const checkpoint = await storage.getCheckpoint();
    const chunks = await all(storage.getBucketDataBatch(checkpoint, [bucket(stream, 'global[]')]));
    const data = chunks.flatMap((c) => c.chunkData.data);
    expect(data.map((d) => [d.op, d.object_id, d.data])).toEqual([
      ['PUT', 't1', JSON.stringify({ id: 't1', description: 'fits', other: 'foo' })],
    ]);
  } finally {
    await factory[Symbol.asyncDispose]();
  }
});
