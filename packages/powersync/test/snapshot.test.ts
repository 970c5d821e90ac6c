// Snapshot status of source tables, as PowerSync's replicator reads it: a table it has just resolved must report its
// snapshot as NOT done, or the replicator skips copying the rows that existed before replication started (issue 14:
// clients got a complete checkpoint with 0 rows).
import { createTestDatabase } from '@pgstate/core/testing';
import { migrate } from '@pgstate/schema';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { pgstateTestSetup, SaveOperationTag } from '../src/index.js';
import { all, bucket, deploy, GLOBAL_YAML, rid, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_snapshot');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

describe('source table snapshot status', () => {
  test('resolveTables -> not done (with progress) until markTableSnapshotDone; markSnapshotDone waits for it', async () => {
    await using factory = await pgstateTestSetup({ url, schema: 'ps_snap' }).factory();
    const { stream } = await deploy(factory, GLOBAL_YAML);
    const storage = factory.getInstance(stream);
    expect(await storage.getStatus()).toMatchObject({ snapshotDone: false });
    await using writer = await storage.createWriter(WRITER);

    const resolved = await table(writer, 'test');
    expect(resolved.snapshotComplete).toBe(false);
    expect(resolved.snapshotStatus).toEqual({ totalEstimatedCount: -1, replicatedCount: 0, lastKey: null });
    expect((await writer.getSourceTableStatus(resolved))?.snapshotComplete).toBe(false);
    // Resolving the same table again (a restart) still says not done.
    expect((await table(writer, 'test')).snapshotComplete).toBe(false);

    await expect(writer.markSnapshotDone('1/1')).rejects.toMatchObject({ code: 'CONFLICT' });
    await writer.markSnapshotDone('1/1', { throwOnConflict: false });
    expect(await storage.getStatus()).toMatchObject({ snapshotDone: false });

    const progressed = await writer.updateTableProgress(resolved, { totalEstimatedCount: 3, replicatedCount: 2 });
    expect((await writer.getSourceTableStatus(progressed))?.snapshotStatus).toMatchObject({
      totalEstimatedCount: 3,
      replicatedCount: 2,
    });

    const [done] = await writer.markTableSnapshotDone([progressed]);
    expect(done!.snapshotComplete).toBe(true);
    expect((await writer.getSourceTableStatus(resolved))?.snapshotComplete).toBe(true);
    expect((await table(writer, 'test')).snapshotComplete).toBe(true);
    await writer.markSnapshotDone('1/1');
    await writer.commit('1/1');
    expect(await storage.getStatus()).toMatchObject({ snapshotDone: true });
  });

  test("the replicator's sequence: rows copied because the table was not done reach a client's checkpoint", async () => {
    await using factory = await pgstateTestSetup({ url, schema: 'ps_snap_flow' }).factory();
    const { stream } = await deploy(factory, GLOBAL_YAML);
    const storage = factory.getInstance(stream);
    await using writer = await storage.createWriter({ ...WRITER, skipExistingRows: true });
    let sourceTable = await table(writer, 'test');
    // The replicator copies only tables that are not done.
    if (!sourceTable.snapshotComplete) {
      sourceTable = await writer.updateTableProgress(sourceTable, { totalEstimatedCount: 3 });
      for (const id of ['t1', 't2', 't3']) {
        await writer.save({
          sourceTable,
          tag: SaveOperationTag.INSERT,
          after: { id, description: id },
          afterReplicaId: rid(id),
        });
      }
      sourceTable = (await writer.markTableSnapshotDone([sourceTable]))[0]!;
    }
    await writer.markAllSnapshotDone('0/1');
    await writer.commit('0/1');
    const active = await factory.getActiveSyncConfig();
    expect(active?.content.replicationStreamId).toBe(stream.replicationStreamId);
    const checkpoint = await storage.getCheckpoint();
    const chunks = await all(storage.getBucketDataBatch(checkpoint, [bucket(stream, 'global[]')]));
    expect(chunks.flatMap((c) => c.chunkData.data.map((d) => d.object_id))).toEqual(['t1', 't2', 't3']);
  });

  test('upgrading marks tables resolved under the old default as not done, so they are copied', async () => {
    await using factory = await pgstateTestSetup({ url, schema: 'ps_snap_upgrade' }).factory();
    const { stream } = await deploy(factory, GLOBAL_YAML);
    await using writer = await factory.getInstance(stream).createWriter(WRITER);
    const resolved = await table(writer, 'test');
    const admin = new pg.Pool({ connectionString: url, max: 1 });
    try {
      // The state an earlier version left: the column defaulted to done, and 0003 not applied yet.
      await admin.query(`ALTER TABLE ps_snap_upgrade.source_tables ALTER COLUMN snapshot_done SET DEFAULT true`);
      await admin.query(`UPDATE ps_snap_upgrade.source_tables SET snapshot_done = true`);
      await admin.query(`DELETE FROM ps_snap_upgrade.migrations WHERE migration LIKE '0003_%'`);
      await migrate(admin, { adapter: 'powersync', schema: 'ps_snap_upgrade' });
      expect((await writer.getSourceTableStatus(resolved))?.snapshotComplete).toBe(false);
      const { rows } = await admin.query(
        `SELECT column_default FROM information_schema.columns
         WHERE table_schema = 'ps_snap_upgrade' AND table_name = 'source_tables' AND column_name = 'snapshot_done'`,
      );
      expect(rows[0].column_default).toBe('false');
    } finally {
      await admin.end();
    }
  });
});
