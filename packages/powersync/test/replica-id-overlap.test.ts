// A change whose new replica id is already stored (found with upstream's replication test "mid-stream ALTER REPLICA
// IDENTITY DEFAULT->FULL"): after a replica identity change the table is snapshotted while later changes stream in,
// so the snapshot can already hold the row an UPDATE moves to. The flush must update that row, not insert it twice.
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { pgstateTestSetup, SaveOperationTag, uuidForRow } from '../src/index.js';
import { all, bucket, deploy, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_replica_overlap');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

test('an UPDATE to a replica id the snapshot already stored updates that row', async () => {
  const factory = await pgstateTestSetup({ url, schema: 'ps_overlap' }).factory();
  try {
    const { stream } = await deploy(
      factory,
      'bucket_definitions:\n  global:\n    data:\n      - SELECT id, description, value FROM t\n',
    );
    const storage = factory.getInstance(stream);
    const writer = await storage.createWriter(WRITER);
    // REPLICA IDENTITY FULL: the replica id is the whole row.
    const { tables } = await writer.resolveTables({
      connection_id: 1,
      source: {
        connectionTag: 'default',
        objectId: 42,
        schema: 'public',
        name: 't',
        replicaIdColumns: ['id', 'description', 'value'].map((name) => ({ name })),
        sendsCompleteRows: true,
      },
    });
    const table = tables[0]!;
    const full = (r: Record<string, unknown>) => uuidForRow({ id: r.id, description: r.description, value: r.value });
    const inserted = { id: 'i2', description: 'after', value: 2n };
    const updated = { ...inserted, value: 20n };
    // The snapshot ran after the UPDATE committed: it copied the updated row.
    await writer.save({
      sourceTable: table,
      tag: SaveOperationTag.INSERT,
      after: updated,
      afterReplicaId: full(updated),
    });
    await writer.flush();
    await writer.markAllSnapshotDone('0/1');
    // Then the stream delivers the INSERT and the UPDATE, in one flush.
    await writer.save({
      sourceTable: table,
      tag: SaveOperationTag.INSERT,
      after: inserted,
      afterReplicaId: full(inserted),
    });
    await writer.save({
      sourceTable: table,
      tag: SaveOperationTag.UPDATE,
      before: inserted,
      beforeReplicaId: full(inserted),
      after: updated,
      afterReplicaId: full(updated),
    });
    await writer.commit('0/2');
    await writer.dispose();

    const chunks = await all(storage.getBucketDataBatch(await storage.getCheckpoint(), [bucket(stream, 'global[]')]));
    const data = chunks.flatMap((c) => c.chunkData.data);
    const last = new Map(data.map((d) => [d.subkey, d]));
    expect([...last.values()].filter((d) => d.op === 'PUT').map((d) => JSON.parse(d.data!))).toEqual([
      { id: 'i2', description: 'after', value: 20 },
    ]);
  } finally {
    await factory[Symbol.asyncDispose]();
  }
}, 120_000);
