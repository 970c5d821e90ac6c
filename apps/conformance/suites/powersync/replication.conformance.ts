// @pgstate/powersync driven the way PowerSync's Postgres replicator drives a storage (service 06b4092fc, WalStream):
// initial replication (status -> resolve tables -> per-table progress, rows, flush, table snapshot done -> snapshot
// done -> commit at the zero LSN), then streaming (relation -> resolve again -> transactions: save, flush, commit,
// keepalive), then a restart on a new storage instance that resumes from the stream's resumeLsn and re-receives what
// the source had not seen acknowledged. After each step: what a client would receive at the checkpoint (bucket data
// reduced as the client applies it, and the checksums it verifies it against) must equal the source table.
import {
  addChecksums,
  type BucketStorageBatch,
  type BucketStorageFactory,
  type CreateWriterOptions,
  type FlushedResult,
  type OplogEntry,
  type PersistedReplicationStream,
  SaveOperationTag,
  type SourceTable,
  STORAGE_VERSION_CONFIG,
  type SyncRulesBucketStorage,
  syncRulesFromYaml,
  uuidForRow,
} from '@pgstate/powersync';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance } from '../../src/kit.js';
import { factoryFor, lsn, POWERSYNC_SCHEMA, TODOS } from '../../src/powersync-fixtures.js';

const SCHEMA = POWERSYNC_SCHEMA;
const ZERO_LSN = lsn(0);
/** What the replicator passes to startBatch for the snapshot and for streaming. */
const SNAPSHOT_BATCH: CreateWriterOptions = {
  zeroLSN: ZERO_LSN,
  defaultSchema: 'public',
  storeCurrentData: true,
  skipExistingRows: true,
};
const STREAM_BATCH: CreateWriterOptions = {
  ...SNAPSHOT_BATCH,
  skipExistingRows: false,
  markRecordUnavailable: () => {},
};

type Row = { id: string; description: string; done: bigint };
type Change = { op: 'insert' | 'update' | 'delete'; row: Row };

/** The source table: rows as the replicator decodes them (booleans become 0n/1n) and the changes applied to it. */
class SourceModel {
  readonly rows = new Map<string, Row>();
  apply(changes: Change[]) {
    for (const c of changes) {
      if (c.op === 'delete') this.rows.delete(c.row.id);
      else this.rows.set(c.row.id, c.row);
    }
  }
  /** As a client stores it: `{id: JSON of the columns}`. */
  expected(): Record<string, unknown> {
    return Object.fromEntries(
      [...this.rows.values()].map((r) => [r.id, { id: r.id, description: r.description, done: Number(r.done) }]),
    );
  }
}

const row = (id: string, description: string, done = 0n): Row => ({ id, description, done });
/** The replica id the replicator derives from the identity columns (`id`). */
const rid = (r: Row) => uuidForRow({ id: r.id });

/** WalStream.initialReplication, step for step, for one table. Returns what startBatch returned. */
async function initialReplication(
  storage: SyncRulesBucketStorage,
  rows: Row[],
  lsns: { tableDone: string; snapshotDone: string },
): Promise<{ resolved: SourceTable; flushed: FlushedResult | null }> {
  let resolved: SourceTable | undefined;
  const flushed = await storage.startBatch(SNAPSHOT_BATCH, async (batch) => {
    const result = await batch.resolveTables({ connection_id: 1, source: TODOS });
    await batch.drop(result.dropTables);
    let table = result.tables[0]!;
    resolved = table;
    if (table.snapshotComplete) return; // what the replicator does ("snapshot already done"): the rows are skipped
    table = await batch.updateTableProgress(table, { totalEstimatedCount: rows.length });
    for (const r of rows) {
      await batch.save({ tag: SaveOperationTag.INSERT, sourceTable: table, after: r, afterReplicaId: rid(r) });
    }
    await batch.flush();
    table = await batch.updateTableProgress(table, {
      lastKey: new TextEncoder().encode(rows.at(-1)?.id ?? ''),
      replicatedCount: rows.length,
      totalEstimatedCount: rows.length,
    });
    await batch.markTableSnapshotDone([table], lsns.tableDone);
    await batch.markSnapshotDone(lsns.snapshotDone);
    await batch.commit(ZERO_LSN);
  });
  if (flushed?.flushed_op != null) await storage.populatePersistentChecksumCache({ maxOpId: flushed.flushed_op });
  return { resolved: resolved!, flushed };
}

/** WalStream.writeChange for each change of a transaction. */
async function saveChanges(batch: BucketStorageBatch, table: SourceTable, changes: Change[]) {
  for (const { op, row: r } of changes) {
    const replicaId = rid(r);
    if (op === 'insert') {
      await batch.save({ tag: SaveOperationTag.INSERT, sourceTable: table, after: r, afterReplicaId: replicaId });
    } else if (op === 'update') {
      await batch.save({
        tag: SaveOperationTag.UPDATE,
        sourceTable: table,
        before: undefined, // replica id unchanged: pgoutput sends no old tuple
        beforeReplicaId: undefined,
        after: r,
        afterReplicaId: replicaId,
      });
    } else {
      await batch.save({
        tag: SaveOperationTag.DELETE,
        sourceTable: table,
        before: { id: r.id },
        beforeReplicaId: replicaId,
      });
    }
  }
}

/** One source transaction: its changes, then the replicator's flush + commit at the transaction's commit LSN. */
async function replicateTransaction(batch: BucketStorageBatch, table: SourceTable, at: string, changes: Change[]) {
  await saveChanges(batch, table, changes);
  await batch.flush({ oldestUncommittedChange: null });
  return batch.commit(at, { createEmptyCheckpoints: true, oldestUncommittedChange: null });
}

/**
 * What a client holds after syncing to the current checkpoint: every op of the `global[]` bucket applied in order
 * (PUT/REMOVE per subkey, CLEAR empties), checked against getChecksums exactly as the client checks it.
 */
async function clientView(storage: SyncRulesBucketStorage, stream: PersistedReplicationStream) {
  const checkpoint = await storage.getCheckpoint();
  const parsed = stream.parsed({ defaultSchema: 'public' });
  const source = parsed.syncConfigs[0]!.config.bucketDataSources[0]!;
  const name = `${parsed.hydrationState.getBucketSourceScope(source).bucketPrefix}[]`;
  const ops: OplogEntry[] = [];
  let start = 0n;
  for (;;) {
    let more = false;
    for await (const { chunkData } of storage.getBucketDataBatch(checkpoint, [{ bucket: name, start, source }])) {
      ops.push(...chunkData.data);
      more = chunkData.has_more;
      start = BigInt(chunkData.next_after);
    }
    if (!more) break;
  }
  const bySubkey = new Map<string, OplogEntry>();
  let checksum = 0;
  for (const op of ops) {
    checksum = addChecksums(checksum, Number(op.checksum));
    if (op.op === 'CLEAR') bySubkey.clear();
    else if (op.op === 'PUT') bySubkey.set(`${op.object_type}/${op.object_id}/${op.subkey}`, op);
    else if (op.op === 'REMOVE') bySubkey.delete(`${op.object_type}/${op.object_id}/${op.subkey}`);
  }
  const rows: Record<string, unknown> = {};
  const copies = new Map<string, number>();
  for (const op of bySubkey.values()) {
    rows[op.object_id!] = JSON.parse(op.data!);
    copies.set(op.object_id!, (copies.get(op.object_id!) ?? 0) + 1);
  }
  const sums = await storage.getChecksums(checkpoint, [{ bucket: name, source }]);
  return {
    checkpoint: checkpoint.checkpoint,
    lsn: checkpoint.lsn,
    rows,
    /** Rows live under more than one subkey: a later delete would leave a copy behind on the client. */
    duplicated: [...copies].filter(([, n]) => n > 1).map(([id]) => id),
    /** What the client verifies: the server's checksum and count equal those of the ops it received. */
    checksumMatches: ops.length === 0 ? sums.get(name) == null : sums.get(name)?.checksum === (checksum | 0),
    countMatches: (sums.get(name)?.count ?? 0) === ops.length,
  };
}

defineConformance({
  adapter: '@pgstate/powersync',
  lanes: ['direct', 'pgbouncer', 'least-privilege'],
  async setup(_admin, lane) {
    const factory = factoryFor(lane.adminUrl);
    await factory.db.ensureMigrated();
    await factory[Symbol.asyncDispose]();
  },
  create: (lane) => factoryFor(lane.url),
  close: (factory) => factory[Symbol.asyncDispose](),
  probes: (admin: pg.Pool) => ({
    async counts(groupId: number) {
      const { rows } = await admin.query<{ source_tables: number; current_data: number }>(
        `SELECT (SELECT count(*)::int FROM ${SCHEMA}.source_tables WHERE group_id = $1) AS source_tables,
                (SELECT count(*)::int FROM ${SCHEMA}.current_data WHERE group_id = $1) AS current_data`,
        [groupId],
      );
      return rows[0]!;
    },
    async state(groupId: number) {
      const { rows } = await admin.query<{ state: string }>(`SELECT state FROM ${SCHEMA}.sync_rules WHERE id = $1`, [
        groupId,
      ]);
      return rows[0]?.state;
    },
  }),
  tests({ test }) {
    const versions = Object.keys(STORAGE_VERSION_CONFIG).map(Number);
    for (const storageVersion of versions) {
      test(`storage v${storageVersion}: the replicator's snapshot, streaming and a restart give a client exactly the source rows`, async (t) => {
        const yaml = `bucket_definitions:\n  global:\n    data:\n      - SELECT id, description, done FROM todos\n# v${storageVersion} ${Math.random()}\n`;
        const source = new SourceModel();
        source.apply(['a', 'b', 'c'].map((id) => ({ op: 'insert', row: row(id, `pre-existing ${id}`) })));

        // A freshly deployed stream: replication has not started, nothing is served.
        const factory: BucketStorageFactory = t.adapter;
        const stream = await factory.updateSyncRules(syncRulesFromYaml(yaml, { storageVersion }));
        const storage = factory.getInstance(stream);
        expect(await storage.getStatus()).toMatchObject({ snapshotDone: false });
        expect(await t.probes.state(stream.replicationStreamId)).toBe('PROCESSING');

        // Initial replication. A fresh table must not report its snapshot done, or the rows above are never copied.
        const { resolved, flushed } = await initialReplication(storage, [...source.rows.values()], {
          tableDone: lsn(0x100),
          snapshotDone: lsn(0x110),
        });
        expect(resolved.snapshotComplete).toBe(false);
        expect(flushed?.flushed_op).toBeTypeOf('bigint');
        // Committed at the zero LSN, below no_checkpoint_before: no checkpoint yet, the stream keeps PROCESSING.
        expect(await storage.getStatus()).toMatchObject({ snapshotDone: false });
        expect(await t.probes.state(stream.replicationStreamId)).toBe('PROCESSING');

        // Streaming. The relation message resolves the table again: same table, snapshot now done.
        const writer = await storage.createWriter(STREAM_BATCH);
        const again = await writer.resolveTables({ connection_id: 1, source: TODOS });
        expect(again.dropTables).toEqual([]);
        expect(again.tables.map((x) => [x.id, x.snapshotComplete])).toEqual([[resolved.id, true]]);
        const table = again.tables[0]!;
        // A change made while the snapshot ran (already in the copy) arrives below the snapshot LSN: blocked.
        const during: Change[] = [{ op: 'update', row: row('b', 'pre-existing b') }];
        expect(await replicateTransaction(writer, table, lsn(0x105), during)).toMatchObject({
          checkpointBlocked: true,
        });
        expect(await t.probes.state(stream.replicationStreamId)).toBe('PROCESSING');

        const t1: Change[] = [
          { op: 'insert', row: row('d', 'live insert') },
          { op: 'update', row: row('a', 'pre-existing a, edited', 1n) },
        ];
        expect(await replicateTransaction(writer, table, lsn(0x120), t1)).toEqual({
          checkpointBlocked: false,
          checkpointCreated: true,
        });
        source.apply(t1);
        expect(await t.probes.state(stream.replicationStreamId)).toBe('ACTIVE');
        expect(await storage.getStatus()).toEqual({ snapshotDone: true, resumeLsn: lsn(0x120) });
        let view = await clientView(storage, stream);
        expect(view).toMatchObject({
          rows: source.expected(),
          duplicated: [],
          checksumMatches: true,
          countMatches: true,
        });

        const t2: Change[] = [
          { op: 'delete', row: row('c', '') },
          { op: 'insert', row: row('e', 'live insert 2') },
        ];
        await replicateTransaction(writer, table, lsn(0x130), t2);
        source.apply(t2);
        await writer.keepalive(lsn(0x131));
        view = await clientView(storage, stream);
        expect(view).toMatchObject({ rows: source.expected(), duplicated: [], checksumMatches: true });
        expect(view.lsn).toBe(lsn(0x131));

        // The process dies in the middle of t3, after a flush but before its commit, and before the source learned
        // that t2 was committed: on restart the slot sends t2 again, then all of t3, then new work.
        const t3: Change[] = [
          { op: 'update', row: row('d', 'live insert, edited') },
          { op: 'insert', row: row('f', 'inserted across the restart') },
          { op: 'delete', row: row('b', '') },
        ];
        await saveChanges(writer, table, t3.slice(0, 2));
        await writer.flush();
        await writer.dispose();
        await factory[Symbol.asyncDispose]();
        const before = await t.probes.counts(stream.replicationStreamId);

        // Restart: a new storage instance finds the stream and resumes where its last checkpoint is.
        const restarted = await t.create();
        const [resumed] = await restarted.getReplicatingReplicationStreams();
        expect(resumed?.replicationStreamId).toBe(stream.replicationStreamId);
        const storage2 = restarted.getInstance(resumed!);
        expect(await storage2.getStatus()).toEqual({ snapshotDone: true, resumeLsn: lsn(0x131) });
        view = await clientView(storage2, resumed!);
        expect(view.rows).toEqual(source.expected()); // the uncommitted flush is not served
        const writer2 = await storage2.createWriter(STREAM_BATCH);
        const third = await writer2.resolveTables({ connection_id: 1, source: TODOS });
        expect(third.tables.map((x) => [x.id, x.snapshotComplete])).toEqual([[resolved.id, true]]);
        await replicateTransaction(writer2, third.tables[0]!, lsn(0x130), t2); // re-sent
        await replicateTransaction(writer2, third.tables[0]!, lsn(0x140), t3);
        source.apply(t3);
        const t4: Change[] = [{ op: 'insert', row: row('g', 'after restart') }];
        await replicateTransaction(writer2, third.tables[0]!, lsn(0x150), t4);
        source.apply(t4);
        await writer2.dispose();

        view = await clientView(storage2, resumed!);
        expect(view).toMatchObject({
          rows: source.expected(),
          lsn: lsn(0x150),
          duplicated: [],
          checksumMatches: true,
          countMatches: true,
        });
        // Nothing duplicated in storage either: one source table, one current row per source row.
        expect(before.source_tables).toBe(1);
        expect(await t.probes.counts(stream.replicationStreamId)).toEqual({
          source_tables: 1,
          current_data: source.rows.size,
        });
      });
    }
  },
});
