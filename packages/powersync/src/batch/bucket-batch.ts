// The replication writer of one stream (service-core's BucketStorageBatch): queues saved rows, flushes them in
// bounded transactions (see PendingWrites) and commits checkpoints (see checkpoints.ts).
import { PgStateError } from '@pgstate/core';
import type { HydratedSyncConfig, SqlEventDescriptor, SqliteRow } from '@powersync/service-sync-rules';
import type pg from 'pg';
import type { BatchLimits } from '../config.js';
import type { Queryable, StorageDb } from '../db.js';
import {
  deserializeReplicaId,
  deserializeRow,
  EMPTY_ROW,
  hasToastedValues,
  mergeToast,
  replicaIdEquals,
} from '../encoding.js';
import { Observers } from '../observers.js';
import type { SourceTable, TableSnapshotStatus } from '../source-table.js';
import {
  type BatchedCustomWriteCheckpointOptions,
  type BucketBatchCommitOptions,
  type BucketBatchStorageListener,
  type BucketStorageBatch,
  type BucketStorageMarkRecordUnavailable,
  type CheckpointResult,
  type FlushedResult,
  type InternalOpId,
  type Logger,
  type ResolveTablesOptions,
  type ResolveTablesResult,
  type SaveOptions,
  type SaveUpdate,
  type StorageHooks,
  SyncRuleState,
} from '../types.js';
import { activateIfReady, checkpointChannel, commitCheckpoint, raiseNoCheckpointBefore } from './checkpoints.js';
import { assertOwnRowValues, evaluateRow } from './evaluate.js';
import { PendingWrites } from './pending-writes.js';
import {
  byCacheKey,
  type CurrentBucket,
  type CurrentRow,
  cacheKey,
  type EvaluatedAfter,
  RecordOperation,
  tableIdString,
} from './record-operation.js';
import { loadSourceTable, resolveSourceTables } from './source-tables.js';

const TRUNCATE_BATCH = 2000;

export interface BucketBatchOptions {
  db: StorageDb;
  logger: Logger;
  syncRules: HydratedSyncConfig;
  groupId: number;
  lastCheckpointLsn: string | null;
  keepaliveOp: bigint | null;
  resumeFromLsn: string | null;
  storeCurrentData: boolean;
  skipExistingRows: boolean;
  /** Storage version 3: deletes leave a tombstone in current_data until a checkpoint passes it. */
  softDeleteCurrentData: boolean;
  batchLimits: BatchLimits;
  markRecordUnavailable: BucketStorageMarkRecordUnavailable | undefined;
  hooks: StorageHooks | undefined;
}

/**
 * The replication writer for one stream. `save()` queues (and evaluates complete rows against the sync rules right
 * away); `flush()` diffs the queued rows against their previous state (current_data) and writes PUT/REMOVE ops,
 * parameter rows and the new current state in REPEATABLE READ transactions of bounded size; `commit()` makes
 * flushed ops visible.
 *
 * When the queue is full, `save()` starts that flush in the background and returns, so the caller's next rows are
 * evaluated while the database writes the previous batch. At most one flush runs at a time (each waits for the one
 * before, so every batch sees the previous one's current data), and every other method first waits for it; a
 * background flush that fails (after its retries) fails the next call, and the writer stays failed.
 */
export class PgStateBucketBatch extends Observers<BucketBatchStorageListener> implements BucketStorageBatch {
  last_flushed_op: InternalOpId | null = null;
  resumeFromLsn: string | null;
  readonly skipExistingRows: boolean;

  private readonly db: StorageDb;
  private readonly logger: Logger;
  private readonly groupId: number;
  private readonly syncRules: HydratedSyncConfig;
  private pending: RecordOperation[] = [];
  private pendingSize = 0;
  private persistedOp: InternalOpId | null;
  private needsActivation = true;
  private clearedError = false;
  private customWriteCheckpoints: BatchedCustomWriteCheckpointOptions[] = [];
  /** The flush `save()` started in the background (at most one), and the error it ended with. */
  private inflight: Promise<void> | null = null;
  private failure: { error: unknown } | null = null;

  constructor(private readonly options: BucketBatchOptions) {
    super();
    this.db = options.db;
    this.logger = options.logger;
    this.groupId = options.groupId;
    this.syncRules = options.syncRules;
    this.resumeFromLsn = options.resumeFromLsn;
    this.skipExistingRows = options.skipExistingRows;
    this.persistedOp = options.keepaliveOp ?? null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.inflight;
    if (this.pending.length > 0 || this.customWriteCheckpoints.length > 0) {
      this.logger.warn('Disposing writer with unflushed changes');
    }
    this.clearListeners();
  }

  /** Waits for a background flush and rethrows its failure (then and on every later call). */
  private async settle(): Promise<void> {
    if (this.inflight != null) await this.inflight;
    if (this.failure != null) throw this.failure.error;
  }

  dispose(): Promise<void> {
    return this[Symbol.asyncDispose]();
  }

  // ---- Source tables ------------------------------------------------------------------------------------

  async resolveTables(options: ResolveTablesOptions): Promise<ResolveTablesResult> {
    await this.settle();
    const syncRules = options.parsedSyncConfig?.hydratedSyncConfig ?? this.syncRules;
    return resolveSourceTables(this.db, this.groupId, syncRules, options);
  }

  async getSourceTableStatus(table: SourceTable): Promise<SourceTable | null> {
    await this.settle();
    return loadSourceTable(this.db, this.groupId, this.syncRules, table);
  }

  // ---- Rows ---------------------------------------------------------------------------------------------

  async save(record: SaveOptions): Promise<FlushedResult | null> {
    if (this.failure != null) throw this.failure.error;
    const { sourceTable, tag, before, after } = record;
    const storeCurrentData = this.options.storeCurrentData && sourceTable.storeCurrentData;
    if (sourceTable.syncEvent) {
      for (const event of this.tableEvents(sourceTable)) {
        const complete = (row: Record<string, unknown> | undefined) =>
          row != null && (!storeCurrentData || !hasToastedValues(row)) ? (row as SqliteRow) : undefined;
        this.emit((l) =>
          l.replicationEvent?.({
            batch: this,
            table: sourceTable,
            data: { op: tag, after: complete(after), before: complete(before) },
            event,
          }),
        );
      }
    }
    if (!sourceTable.syncData && !sourceTable.syncParameters) return null;
    assertOwnRowValues(sourceTable, after);
    assertOwnRowValues(sourceTable, before);

    const op = new RecordOperation(record);
    // A complete row evaluates the same whatever its stored state is: do it now, while a flush may be running.
    if (op.afterId != null && after != null && (!storeCurrentData || !hasToastedValues(after))) {
      op.evaluated = this.evaluateAfter(sourceTable, after as Record<string, unknown>, storeCurrentData);
    }
    this.pending.push(op);
    this.pendingSize += op.estimatedSize;
    // `await save()` alone never reaches the event loop's I/O phase: yield now and then so the background flush's
    // replies are handled while the caller keeps saving.
    if (this.inflight != null && this.pending.length % 32 === 0) await new Promise<void>((r) => setImmediate(r));
    const limits = this.options.batchLimits;
    if (this.pending.length >= limits.max_record_count || this.pendingSize > limits.max_current_data_batch_size) {
      const waited = this.inflight != null;
      await this.settle();
      const batch = this.pending;
      this.pending = [];
      this.pendingSize = 0;
      this.inflight = this.flushOps(batch).then(
        () => {
          this.inflight = null;
        },
        (error) => {
          this.inflight = null;
          this.failure ??= { error };
        },
      );
      return waited && this.last_flushed_op != null ? { flushed_op: this.last_flushed_op } : null;
    }
    return null;
  }

  private tableEvents(table: SourceTable): SqlEventDescriptor[] {
    return this.syncRules.eventDescriptors.filter((event) =>
      [...event.getSourceTables()].some((pattern) => pattern.matches(table.ref)),
    );
  }

  async flush(): Promise<FlushedResult | null> {
    const waited = this.inflight != null;
    await this.settle();
    const ops = this.pending;
    this.pending = [];
    this.pendingSize = 0;
    const result = await this.flushOps(ops);
    if (this.customWriteCheckpoints.length > 0) {
      const checkpoints = this.customWriteCheckpoints;
      await this.db.query(
        `INSERT INTO ${this.db.names.customWriteCheckpoints} AS c (user_id, write_checkpoint, sync_rules_id)
         SELECT u.user_id, u.cp, $1 FROM unnest($2::text[], $3::int8[]) AS u(user_id, cp)
         ON CONFLICT (user_id, sync_rules_id) DO UPDATE SET write_checkpoint = EXCLUDED.write_checkpoint`,
        [this.groupId, checkpoints.map((c) => c.user_id), checkpoints.map((c) => c.checkpoint.toString())],
      );
      this.customWriteCheckpoints = [];
    }
    return result ?? (waited && this.last_flushed_op != null ? { flushed_op: this.last_flushed_op } : null);
  }

  /** Flushes `ops` in as many bounded transactions as needed; what is not written goes back to the queue's head. */
  private async flushOps(ops: RecordOperation[]): Promise<FlushedResult | null> {
    let result: FlushedResult | null = null;
    let remaining = ops;
    try {
      while (remaining.length > 0) {
        await this.options.hooks?.beforeBatchFlush?.(this);
        const batch = remaining;
        const { consumed, lastOp, clearedError } = await this.db.retryingTransaction(
          (client) => this.flushTransaction(client, batch),
          {
            // A plain INSERT of a row another writer just created: retried, it becomes an update.
            alsoRetry: ['23505'],
            onRetry: (error, attempt) =>
              this.logger.warn(
                `Serialization failure during replication transaction (attempt ${attempt + 1}), retrying`,
                error,
              ),
          },
        );
        remaining = batch.slice(consumed);
        if (clearedError) this.clearedError = true;
        this.persistedOp = lastOp;
        this.last_flushed_op = lastOp;
        result = { flushed_op: lastOp };
        await this.options.hooks?.afterBatchFlush?.(this);
      }
    } finally {
      if (remaining.length > 0) {
        this.pending = remaining.concat(this.pending);
        this.pendingSize = this.pending.reduce((n, op) => n + op.estimatedSize, 0);
      }
    }
    return result;
  }

  /**
   * One transaction: as many queued ops as fit the batch limits. Pure with respect to writer state (retried).
   * Round trips: the row lookup (which also locks the rows), more lookups only when the stored rows exceed
   * `max_current_data_batch_size`, and one write statement.
   */
  private async flushTransaction(
    client: pg.PoolClient,
    ops: RecordOperation[],
  ): Promise<{ consumed: number; lastOp: bigint; clearedError: boolean }> {
    const current = await this.loadCurrent(client, ops);
    const stored = new Set(current.keys());
    const writes = new PendingWrites(this.options.batchLimits);
    let consumed = 0;
    for (const op of ops) {
      let row = current.get(op.beforeCacheKey) ?? null;
      if (row != null && row.data === undefined && !this.skipExistingRows) {
        await this.loadCurrentData(client, ops, consumed, current);
        row = current.get(op.beforeCacheKey) ?? null;
      }
      const next = this.applyOperation(writes, op, row, stored);
      current.delete(op.beforeCacheKey);
      if (next != null && op.afterKey != null) current.set(op.afterCacheKey!, next);
      consumed++;
      if (writes.full()) break;
    }
    const clearedError = writes.any && !this.clearedError;
    const lastOp = await writes.write(this.db, client, this.groupId, clearedError);
    return { consumed, lastOp, clearedError };
  }

  /**
   * Locks the batch's stored rows (in key order, one index probe per key: a join could scan the whole table) and
   * returns their buckets and lookups, and their data up to `max_current_data_batch_size` bytes in batch order
   * (upstream's current-data sub-batching); the rest is loaded by `loadCurrentData` when the batch reaches it.
   */
  private async loadCurrent(client: Queryable, ops: RecordOperation[]): Promise<Map<string, CurrentRow>> {
    const n = this.db.names;
    const keys = new Map<string, { tableId: string; key: Buffer }>();
    for (const op of ops) {
      if (!keys.has(op.beforeCacheKey)) keys.set(op.beforeCacheKey, { tableId: op.tableId, key: op.beforeKey });
      // A new replica id may already be stored (a snapshot taken while the change streamed in, e.g. after a replica
      // identity change): look it up too, so the row is updated instead of inserted twice.
      if (op.afterCacheKey != null && op.afterKey != null && !keys.has(op.afterCacheKey)) {
        keys.set(op.afterCacheKey, { tableId: op.tableId, key: op.afterKey });
      }
    }
    const sorted = [...keys.entries()].sort(byCacheKey).map((e) => e[1]);
    const withData = !this.skipExistingRows;
    const rows = await this.db.query<{
      source_table: string;
      source_key: Buffer;
      buckets: CurrentBucket[] | null;
      lookups: Buffer[] | null;
      size: number;
      data: Buffer | null;
    }>(
      `WITH locked AS MATERIALIZED (
         SELECT k.ord, c.source_table, c.source_key, c.buckets, c.lookups, c.data
         FROM ROWS FROM (json_array_elements_text($2::json), json_array_elements_text($3::json)) WITH ORDINALITY
           AS k(source_table, source_key, ord)
         CROSS JOIN LATERAL (
           SELECT * FROM ${n.currentData} c
           WHERE c.group_id = $1 AND c.source_table = k.source_table AND c.source_key = decode(k.source_key, 'hex')
           FOR NO KEY UPDATE
         ) c
       )
       SELECT source_table, source_key,
              CASE WHEN $5 THEN buckets END AS buckets, CASE WHEN $5 THEN lookups END AS lookups,
              octet_length(data)::int4 AS size,
              CASE WHEN $5 AND sum(octet_length(data)) OVER (ORDER BY ord) <= $4 THEN data END AS data
       FROM locked`,
      [
        this.groupId,
        JSON.stringify(sorted.map((o) => o.tableId)),
        JSON.stringify(sorted.map((o) => o.key.toString('hex'))),
        this.options.batchLimits.max_current_data_batch_size,
        withData,
      ],
      client,
    );
    const current = new Map<string, CurrentRow>();
    for (const row of rows) {
      current.set(cacheKey(row.source_table, row.source_key), {
        buckets: row.buckets ?? [],
        data: row.data ?? undefined,
        size: row.size,
        lookups: row.lookups ?? [],
      });
    }
    // Sizes are in key order there; here the batch order decides what is loaded first.
    if (withData && rows.some((r) => r.data == null)) {
      for (const row of current.values()) row.data = undefined;
      await this.loadCurrentData(client, ops, 0, current);
    }
    return current;
  }

  /** Loads stored data for the not-yet-loaded rows from `ops[from]` on, up to the size limit (at least one row). */
  private async loadCurrentData(
    client: Queryable,
    ops: RecordOperation[],
    from: number,
    current: Map<string, CurrentRow>,
  ): Promise<void> {
    const limit = this.options.batchLimits.max_current_data_batch_size;
    const tables: string[] = [];
    const keys: Buffer[] = [];
    const chosen = new Set<string>();
    let total = 0;
    for (let i = from; i < ops.length; i++) {
      const op = ops[i]!;
      const row = current.get(op.beforeCacheKey);
      if (row == null || row.data !== undefined || chosen.has(op.beforeCacheKey)) continue;
      if (keys.length > 0 && total + row.size > limit) break;
      chosen.add(op.beforeCacheKey);
      total += row.size;
      tables.push(op.tableId);
      keys.push(op.beforeKey);
    }
    if (keys.length === 0) return;
    // Rows of the earlier chunk that were applied are gone from `current`; these are already locked.
    const rows = await this.db.query<{ source_table: string; source_key: Buffer; data: Buffer }>(
      `SELECT c.source_table, c.source_key, c.data
       FROM unnest($2::text[], $3::bytea[]) AS k(source_table, source_key)
       CROSS JOIN LATERAL (
         SELECT * FROM ${this.db.names.currentData} c
         WHERE c.group_id = $1 AND c.source_table = k.source_table AND c.source_key = k.source_key
       ) c`,
      [this.groupId, tables, keys],
      client,
    );
    for (const row of rows) {
      const entry = current.get(cacheKey(row.source_table, row.source_key));
      if (entry != null) entry.data = row.data;
    }
  }

  private evaluateAfter(table: SourceTable, after: Record<string, unknown>, storeCurrentData: boolean): EvaluatedAfter {
    return evaluateRow(this.syncRules, this.logger, table, after, storeCurrentData);
  }

  /** Diffs one queued op against the row's previous state; returns the row's new state (or null if gone). */
  private applyOperation(
    writes: PendingWrites,
    op: RecordOperation,
    currentRow: CurrentRow | null,
    stored: Set<string>,
  ): CurrentRow | null {
    const { record } = op;
    const table = record.sourceTable;
    const storeCurrentData = this.options.storeCurrentData && table.storeCurrentData;
    let after = record.after as Record<string, unknown> | undefined;
    let existingBuckets: CurrentBucket[] = [];
    let existingLookups: Buffer[] = [];

    if (this.skipExistingRows) {
      if (record.tag !== 'insert') {
        throw new PgStateError('INVALID_INPUT', `${record.tag} is not supported with skipExistingRows: true.`, {
          fix: 'Use a writer without skipExistingRows for streamed changes.',
        });
      }
      // Initial replication and we already have the row: streaming replication brings it up to date.
      if (currentRow != null) return currentRow;
    }

    let merged = false;
    if (record.tag === 'update') {
      if (currentRow == null) {
        // Not an error when a transaction is re-applied.
        if (storeCurrentData) {
          if (this.options.markRecordUnavailable) this.options.markRecordUnavailable(record as SaveUpdate);
          else this.logger.warn(`Cannot find previous record for update on ${table.qualifiedName}`);
        }
      } else {
        existingBuckets = currentRow.buckets;
        existingLookups = currentRow.lookups;
        if (storeCurrentData && currentRow.data && op.evaluated == null) {
          after = mergeToast(after ?? {}, deserializeRow(currentRow.data));
          merged = true;
        }
      }
    } else if (record.tag === 'delete') {
      if (currentRow != null) {
        existingBuckets = currentRow.buckets;
        existingLookups = currentRow.lookups;
      } else if (this.options.storeCurrentData && this.options.markRecordUnavailable == null) {
        this.logger.warn(`Cannot find previous record for delete on ${table.qualifiedName}`);
      }
    }

    let evaluated: EvaluatedAfter | undefined;
    if (op.afterId != null) {
      if (after == null) evaluated = { data: EMPTY_ROW, complete: false, puts: [], parameters: [] };
      else if (!merged && op.evaluated != null) evaluated = op.evaluated;
      else evaluated = this.evaluateAfter(table, after, storeCurrentData);
    }

    const idChanged = op.afterId == null || !replicaIdEquals(op.beforeId, op.afterId);
    if (op.beforeId != null && idChanged) {
      // The row left its old replica id: remove it from its old buckets and lookups.
      if (table.syncData) {
        writes.saveBucketData(op.tableId, op.beforeId, op.beforeKey, existingBuckets, []);
        existingBuckets = [];
      }
      if (table.syncParameters) {
        writes.saveParameterData(op.tableId, op.beforeKey, [], existingLookups);
        existingLookups = [];
      }
    }

    let newBuckets: CurrentBucket[] = [];
    let newLookups: Buffer[] = [];
    if (op.afterId != null && op.afterKey != null && evaluated?.complete) {
      if (table.syncData) {
        writes.saveBucketData(op.tableId, op.afterId, op.afterKey, existingBuckets, evaluated.puts);
        newBuckets = evaluated.puts.map((e) => ({ bucket: e.bucket, table: e.table, id: e.id }));
      }
      if (table.syncParameters) {
        writes.saveParameterData(op.tableId, op.afterKey, evaluated.parameters, existingLookups);
        newLookups = evaluated.parameters.map((p) => p.lookup);
      }
    }

    let next: CurrentRow | null = null;
    if (op.afterId != null && op.afterKey != null && evaluated != null) {
      next = { buckets: newBuckets, data: evaluated.data, size: evaluated.data.byteLength, lookups: newLookups };
      writes.upsertCurrent(
        op.tableId,
        op.afterKey,
        { buckets: newBuckets, data: evaluated.data, lookups: newLookups },
        stored.has(op.afterCacheKey!),
      );
    }
    if (idChanged) {
      if (this.options.softDeleteCurrentData) {
        // v3: keep a tombstone so a snapshot writer that read the row earlier skips it (see skipExistingRows).
        const tombstone = { buckets: [], data: EMPTY_ROW, lookups: [] };
        writes.upsertCurrent(op.tableId, op.beforeKey, tombstone, stored.has(op.beforeCacheKey), true);
      } else {
        writes.deleteCurrent(op.tableId, op.beforeKey);
      }
    }
    return next;
  }

  async truncate(sourceTables: SourceTable[]): Promise<FlushedResult | null> {
    await this.flush();
    let last: InternalOpId | null = null;
    for (const table of sourceTables) {
      const op = await this.truncateOne(table);
      if (op != null) last = op;
    }
    if (last == null) return null;
    this.persistedOp = last;
    return { flushed_op: last };
  }

  /** Removes a table's rows in transactions of at most TRUNCATE_BATCH rows. */
  private async truncateOne(table: SourceTable): Promise<InternalOpId | null> {
    const n = this.db.names;
    let processed = 0;
    let lastOp: InternalOpId | null = null;
    for (;;) {
      const { count, op } = await this.db.retryingTransaction(async (client) => {
        const rows = await this.db.query<{ source_key: Buffer; buckets: CurrentBucket[]; lookups: Buffer[] }>(
          // Live rows only: v3 tombstones have nothing to remove and go with the next checkpoint.
          `SELECT source_key, buckets, lookups FROM ${n.currentData}
           WHERE group_id = $1 AND source_table = $2 AND pending_delete IS NULL LIMIT $3 FOR NO KEY UPDATE`,
          [this.groupId, tableIdString(table.id), TRUNCATE_BATCH],
          client,
        );
        const writes = new PendingWrites(this.options.batchLimits);
        const tableId = tableIdString(table.id);
        for (const row of rows) {
          const sourceKey = deserializeReplicaId(row.source_key);
          writes.saveBucketData(tableId, sourceKey, row.source_key, row.buckets, []);
          writes.saveParameterData(tableId, row.source_key, [], row.lookups);
          writes.deleteCurrent(tableId, row.source_key);
        }
        const op = await writes.write(this.db, client, this.groupId, false);
        return { count: rows.length, op };
      });
      processed += count;
      lastOp = op;
      if (count < TRUNCATE_BATCH) break;
    }
    return processed === 0 ? null : lastOp;
  }

  async drop(sourceTables: SourceTable[]): Promise<FlushedResult | null> {
    await this.truncate(sourceTables);
    const result = await this.flush();
    await this.db.query(`DELETE FROM ${this.db.names.sourceTables} WHERE group_id = $1 AND id = ANY($2::text[])`, [
      this.groupId,
      sourceTables.map((t) => String(t.id)),
    ]);
    return result;
  }

  // ---- Checkpoints --------------------------------------------------------------------------------------

  async commit(lsn: string, options?: BucketBatchCommitOptions): Promise<CheckpointResult> {
    const createEmptyCheckpoints = options?.createEmptyCheckpoints ?? true;
    await this.flush();
    const n = this.db.names;
    const result = await commitCheckpoint(this.db, this.groupId, lsn, this.persistedOp, createEmptyCheckpoints);
    if (!result.can_checkpoint) return { checkpointBlocked: true, checkpointCreated: false };
    if (this.options.softDeleteCurrentData && result.created && result.last_checkpoint != null) {
      // v3 tombstones the new checkpoint covers are no longer needed.
      await this.db.query(
        `DELETE FROM ${n.currentData} WHERE group_id = $1 AND pending_delete IS NOT NULL AND pending_delete <= $2`,
        [this.groupId, result.last_checkpoint],
      );
    }

    const state = await this.autoActivate(result.state);
    if (state === SyncRuleState.ACTIVE && result.created) {
      await this.db.query('SELECT pg_notify($1, $2)', [
        checkpointChannel(this.db.config.schema),
        JSON.stringify({ id: result.id, checkpoint: String(result.last_checkpoint ?? 0n), lsn }),
      ]);
    }
    this.persistedOp = null;
    return { checkpointBlocked: false, checkpointCreated: result.created };
  }

  async keepalive(lsn: string): Promise<CheckpointResult> {
    return this.commit(lsn, { createEmptyCheckpoints: true });
  }

  /** PROCESSING -> ACTIVE once the snapshot is done (tried at each commit until the stream leaves PROCESSING). */
  private async autoActivate(state: SyncRuleState): Promise<SyncRuleState> {
    if (!this.needsActivation) return state;
    const now = await activateIfReady(this.db, this.groupId);
    if (now.activated) this.logger.info(`Activated replication stream ${this.groupId}`);
    if (now.state !== SyncRuleState.PROCESSING) this.needsActivation = false;
    return now.state ?? state;
  }

  async setResumeLsn(lsn: string): Promise<void> {
    await this.settle();
    await this.db.query(`UPDATE ${this.db.names.syncRules} SET snapshot_lsn = $2 WHERE id = $1`, [this.groupId, lsn]);
  }

  async markAllSnapshotDone(noCheckpointBeforeLsn: string): Promise<void> {
    await this.settle();
    await raiseNoCheckpointBefore(this.db, this.groupId, noCheckpointBeforeLsn, { markDone: true });
  }

  async markSnapshotDone(noCheckpointBeforeLsn: string, options?: { throwOnConflict?: boolean }): Promise<void> {
    await this.settle();
    await this.db.transaction(async (client) => {
      const blocking = await this.db.query<{ schema_name: string; table_name: string }>(
        `SELECT schema_name, table_name FROM ${this.db.names.sourceTables}
         WHERE group_id = $1 AND snapshot_done = false FOR SHARE`,
        [this.groupId],
        client,
      );
      if (blocking.length > 0) {
        if (options?.throwOnConflict ?? true) {
          throw new PgStateError(
            'CONFLICT',
            `Cannot mark snapshot done while source tables still require snapshotting: ${blocking
              .map((t) => `${t.schema_name}.${t.table_name}`)
              .join(', ')}.`,
            { fix: 'Finish those table snapshots (markTableSnapshotDone) first.' },
          );
        }
        return;
      }
      await raiseNoCheckpointBefore(this.db, this.groupId, noCheckpointBeforeLsn, { client, markDone: true });
    });
  }

  async markTableSnapshotRequired(_table: SourceTable): Promise<void> {
    await this.settle();
    await this.db.query(`UPDATE ${this.db.names.syncRules} SET snapshot_done = false WHERE id = $1`, [this.groupId]);
  }

  async markTableSnapshotDone(tables: SourceTable[], noCheckpointBeforeLsn?: string): Promise<SourceTable[]> {
    await this.settle();
    await this.db.transaction(async (client) => {
      await this.db.query(
        `UPDATE ${this.db.names.sourceTables} SET snapshot_done = true, snapshot_total_estimated_count = NULL,
           snapshot_replicated_count = NULL, snapshot_last_key = NULL
         WHERE group_id = $1 AND id = ANY($2::text[])`,
        [this.groupId, tables.map((t) => String(t.id))],
        client,
      );
      if (noCheckpointBeforeLsn != null)
        await raiseNoCheckpointBefore(this.db, this.groupId, noCheckpointBeforeLsn, { client });
    });
    return tables.map((t) => {
      const copy = t.clone();
      copy.snapshotComplete = true;
      copy.snapshotStatus = undefined;
      return copy;
    });
  }

  async updateTableProgress(table: SourceTable, progress: Partial<TableSnapshotStatus>): Promise<SourceTable> {
    await this.settle();
    const copy = table.clone();
    const status: TableSnapshotStatus = {
      totalEstimatedCount: progress.totalEstimatedCount ?? copy.snapshotStatus?.totalEstimatedCount ?? 0,
      replicatedCount: progress.replicatedCount ?? copy.snapshotStatus?.replicatedCount ?? 0,
      lastKey: progress.lastKey ?? copy.snapshotStatus?.lastKey ?? null,
    };
    copy.snapshotStatus = status;
    await this.db.query(
      `UPDATE ${this.db.names.sourceTables} SET snapshot_total_estimated_count = $3, snapshot_replicated_count = $4,
         snapshot_last_key = $5 WHERE group_id = $1 AND id = $2`,
      [
        this.groupId,
        String(table.id),
        status.totalEstimatedCount,
        status.replicatedCount,
        status.lastKey == null ? null : Buffer.from(status.lastKey),
      ],
    );
    return copy;
  }

  addCustomWriteCheckpoint(checkpoint: BatchedCustomWriteCheckpointOptions): void {
    this.customWriteCheckpoints.push(checkpoint);
  }
}
