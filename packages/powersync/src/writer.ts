import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { PgStateError } from '@pgstate/core';
import { JSONBig } from '@powersync/service-jsonbig';
import type {
  EvaluatedParameters,
  EvaluatedRow,
  HydratedSyncConfig,
  SqlEventDescriptor,
  SqliteRow,
} from '@powersync/service-sync-rules';
import type pg from 'pg';
import type { BatchLimits } from './config.js';
import type { Queryable, StorageDb } from './db.js';
import {
  deserializeReplicaId,
  deserializeRow,
  EMPTY_ROW,
  estimateRowSize,
  hashData,
  hashDelete as hashDeleteOf,
  hasToastedValues,
  lookupKey,
  mergeToast,
  replicaIdEquals,
  replicaIdToSubkey,
  serializeReplicaId,
  serializeRow,
} from './encoding.js';
import { Observers } from './observers.js';
import { SourceTable, type TableSnapshotStatus } from './source-table.js';
import {
  type BatchedCustomWriteCheckpointOptions,
  type BucketBatchCommitOptions,
  type BucketBatchStorageListener,
  type BucketStorageBatch,
  type BucketStorageMarkRecordUnavailable,
  type CheckpointResult,
  type ColumnDescriptor,
  type FlushedResult,
  type InternalOpId,
  type Logger,
  type ReplicaId,
  type ResolveTablesOptions,
  type ResolveTablesResult,
  type SaveOptions,
  type SaveUpdate,
  type StorageHooks,
  SyncRuleState,
} from './types.js';

/** Rows larger than this are replaced by an all-TOAST placeholder (upstream's limit, matching MongoDB's). */
const MAX_ROW_SIZE = 15 * 1024 * 1024;
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
  batchLimits: BatchLimits;
  markRecordUnavailable: BucketStorageMarkRecordUnavailable | undefined;
  hooks: StorageHooks | undefined;
}

interface CurrentBucket {
  bucket: string;
  table: string;
  id: string;
}

interface CurrentRow {
  buckets: CurrentBucket[];
  /** Undefined when only the key was loaded (skipExistingRows). */
  data?: Buffer;
  lookups: Buffer[];
}

/** One queued `save()` with its keys precomputed. */
class RecordOperation {
  readonly beforeId: ReplicaId;
  readonly afterId: ReplicaId | null;
  readonly tableId: string;
  readonly beforeKey: Buffer;
  readonly afterKey: Buffer | null;
  readonly estimatedSize: number;

  constructor(readonly record: SaveOptions) {
    this.afterId = record.afterReplicaId ?? null;
    this.beforeId = record.beforeReplicaId ?? record.afterReplicaId;
    this.tableId = record.sourceTable.id;
    this.beforeKey = serializeReplicaId(this.beforeId);
    this.afterKey = this.afterId == null ? null : serializeReplicaId(this.afterId);
    this.estimatedSize =
      estimateRowSize(record.before as Record<string, unknown> | undefined) +
      estimateRowSize(record.after as Record<string, unknown> | undefined);
  }
}

const cacheKey = (tableId: string, key: Buffer) => `${tableId}.${key.toString('base64')}`;

/** Everything one transaction writes, accumulated in memory and sent as a few set-based statements. */
class PendingWrites {
  readonly bucketOps: {
    bucket: string[];
    op: string[];
    sourceTable: string[];
    sourceKey: Buffer[];
    tableName: string[];
    rowId: string[];
    checksum: string[];
    data: (string | null)[];
  } = { bucket: [], op: [], sourceTable: [], sourceKey: [], tableName: [], rowId: [], checksum: [], data: [] };
  readonly params: { sourceTable: string[]; sourceKey: Buffer[]; lookup: Buffer[]; parameters: string[] } = {
    sourceTable: [],
    sourceKey: [],
    lookup: [],
    parameters: [],
  };
  readonly upserts = new Map<
    string,
    { sourceTable: string; key: Buffer; buckets: string; data: Buffer; lookups: string }
  >();
  readonly deletes = new Map<string, { sourceTable: string; key: Buffer }>();
  size = 0;

  constructor(private readonly limits: BatchLimits) {}

  get any(): boolean {
    return (
      this.bucketOps.bucket.length > 0 ||
      this.params.lookup.length > 0 ||
      this.upserts.size > 0 ||
      this.deletes.size > 0
    );
  }

  full(): boolean {
    return (
      this.size >= this.limits.max_estimated_size ||
      this.bucketOps.bucket.length >= this.limits.max_record_count ||
      this.params.lookup.length >= this.limits.max_record_count ||
      this.upserts.size >= this.limits.max_record_count ||
      this.deletes.size >= this.limits.max_record_count
    );
  }

  /** PUT for every evaluated row, REMOVE for every bucket the row was in before and is not in now. */
  saveBucketData(tableId: string, sourceKey: ReplicaId, before: CurrentBucket[], evaluated: EvaluatedRow[]): void {
    const remaining = new Map(before.map((b) => [`${b.bucket}/${b.table}/${b.id}`, b]));
    const key = serializeReplicaId(sourceKey);
    for (const e of evaluated) {
      remaining.delete(`${e.bucket}/${e.table}/${e.id}`);
      const data = JSONBig.stringify(e.data);
      this.pushOp(e.bucket, 'PUT', tableId, key, e.table, e.id, hashData(e.table, e.id, data), data);
    }
    if (remaining.size > 0) {
      const checksum = hashDelete(tableId, sourceKey);
      for (const b of remaining.values()) this.pushOp(b.bucket, 'REMOVE', tableId, key, b.table, b.id, checksum, null);
    }
  }

  /** A row per lookup now produced, and a `'[]'` tombstone per lookup the row no longer produces. */
  saveParameterData(tableId: string, sourceKey: ReplicaId, evaluated: EvaluatedParameters[], before: Buffer[]): void {
    const remaining = new Map(before.map((l) => [l.toString('base64'), l]));
    const key = serializeReplicaId(sourceKey);
    for (const result of evaluated) {
      const lookup = lookupKey(result.lookup);
      remaining.delete(lookup.toString('base64'));
      this.pushParam(tableId, key, lookup, JSONBig.stringify(result.bucketParameters));
    }
    for (const lookup of remaining.values()) this.pushParam(tableId, key, lookup, '[]');
  }

  upsertCurrent(tableId: string, key: Buffer, row: { buckets: CurrentBucket[]; data: Buffer; lookups: Buffer[] }) {
    const k = cacheKey(tableId, key);
    this.deletes.delete(k);
    this.upserts.set(k, {
      sourceTable: tableId,
      key,
      buckets: JSON.stringify(row.buckets),
      data: row.data,
      lookups: JSON.stringify(row.lookups.map((l) => l.toString('hex'))),
    });
    this.size += row.data.byteLength + key.byteLength + row.lookups.reduce((n, l) => n + l.byteLength, 0) + 100;
  }

  deleteCurrent(tableId: string, key: Buffer) {
    const k = cacheKey(tableId, key);
    this.upserts.delete(k);
    this.deletes.set(k, { sourceTable: tableId, key });
    this.size += key.byteLength + 100;
  }

  private pushOp(
    bucket: string,
    op: string,
    tableId: string,
    key: Buffer,
    table: string,
    id: string,
    checksum: number,
    data: string | null,
  ) {
    const o = this.bucketOps;
    o.bucket.push(bucket);
    o.op.push(op);
    o.sourceTable.push(tableId);
    o.sourceKey.push(key);
    o.tableName.push(table);
    o.rowId.push(id);
    o.checksum.push(String(checksum));
    o.data.push(data);
    this.size += bucket.length + (data?.length ?? 0) + key.byteLength + 100;
  }

  private pushParam(tableId: string, key: Buffer, lookup: Buffer, parameters: string) {
    this.params.sourceTable.push(tableId);
    this.params.sourceKey.push(key);
    this.params.lookup.push(lookup);
    this.params.parameters.push(parameters);
    this.size += lookup.byteLength + parameters.length + key.byteLength + 100;
  }

  /** current_data first (where lock conflicts show up), in key order to avoid deadlocks, then the op log. */
  async write(db: StorageDb, client: Queryable, groupId: number): Promise<void> {
    const n = db.names;
    const byKey = <T extends { sourceTable: string; key: Buffer }>(a: T, b: T) =>
      a.sourceTable < b.sourceTable ? -1 : a.sourceTable > b.sourceTable ? 1 : Buffer.compare(a.key, b.key);
    if (this.upserts.size > 0) {
      const rows = [...this.upserts.values()].sort(byKey);
      await db.query(
        `INSERT INTO ${n.currentData} AS c (group_id, source_table, source_key, buckets, data, lookups)
         SELECT $1, u.source_table, u.source_key, u.buckets::jsonb, u.data,
                ARRAY(SELECT decode(x, 'hex') FROM jsonb_array_elements_text(u.lookups::jsonb) AS x)
         FROM unnest($2::text[], $3::bytea[], $4::text[], $5::bytea[], $6::text[])
           AS u(source_table, source_key, buckets, data, lookups)
         ON CONFLICT (group_id, source_table, source_key)
         DO UPDATE SET buckets = EXCLUDED.buckets, data = EXCLUDED.data, lookups = EXCLUDED.lookups`,
        [
          groupId,
          rows.map((r) => r.sourceTable),
          rows.map((r) => r.key),
          rows.map((r) => r.buckets),
          rows.map((r) => r.data),
          rows.map((r) => r.lookups),
        ],
        client,
      );
    }
    if (this.deletes.size > 0) {
      const rows = [...this.deletes.values()].sort(byKey);
      await db.query(
        `DELETE FROM ${n.currentData} c USING unnest($2::text[], $3::bytea[]) AS d(source_table, source_key)
         WHERE c.group_id = $1 AND c.source_table = d.source_table AND c.source_key = d.source_key`,
        [groupId, rows.map((r) => r.sourceTable), rows.map((r) => r.key)],
        client,
      );
    }
    const o = this.bucketOps;
    if (o.bucket.length > 0) {
      // Op ids are taken in array order (volatile target lists are evaluated after ORDER BY).
      await db.query(
        `INSERT INTO ${n.bucketData}
           (group_id, bucket_name, op_id, op, source_table, source_key, table_name, row_id, checksum, data)
         SELECT $1, u.bucket, nextval(${n.opIdSequenceLiteral}::regclass), u.op, u.source_table, u.source_key,
                u.table_name, u.row_id, u.checksum, u.data
         FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[], $8::int8[], $9::text[])
           WITH ORDINALITY AS u(bucket, op, source_table, source_key, table_name, row_id, checksum, data, ord)
         ORDER BY u.ord`,
        [groupId, o.bucket, o.op, o.sourceTable, o.sourceKey, o.tableName, o.rowId, o.checksum, o.data],
        client,
      );
    }
    const p = this.params;
    if (p.lookup.length > 0) {
      await db.query(
        `INSERT INTO ${n.bucketParameters} (id, group_id, source_table, source_key, lookup, bucket_parameters)
         SELECT nextval(${n.opIdSequenceLiteral}::regclass), $1, u.source_table, u.source_key, u.lookup, u.parameters
         FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::text[])
           WITH ORDINALITY AS u(source_table, source_key, lookup, parameters, ord)
         ORDER BY u.ord`,
        [groupId, p.sourceTable, p.sourceKey, p.lookup, p.parameters],
        client,
      );
    }
  }
}

function hashDelete(tableId: string, sourceKey: ReplicaId): number {
  return hashDeleteOf(replicaIdToSubkey(tableId, sourceKey));
}

interface SourceTableRow {
  id: string;
  group_id: number;
  connection_id: number;
  relation_id: { object_id?: number | string } | null;
  schema_name: string;
  table_name: string;
  replica_id_columns: { name: string; type?: string; type_oid?: number }[] | null;
  snapshot_done: boolean;
  snapshot_total_estimated_count: bigint | null;
  snapshot_replicated_count: bigint | null;
  snapshot_last_key: Buffer | null;
}

/**
 * The replication writer for one stream. `save()` queues; `flush()` evaluates the queued rows against the
 * sync rules and the rows' previous state (current_data) and writes PUT/REMOVE ops, parameter rows and the new
 * current state in REPEATABLE READ transactions of bounded size; `commit()` makes flushed ops visible.
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
    if (this.pending.length > 0 || this.customWriteCheckpoints.length > 0) {
      this.logger.warn('Disposing writer with unflushed changes');
    }
    this.clearListeners();
  }

  dispose(): Promise<void> {
    return this[Symbol.asyncDispose]();
  }

  // ---- Source tables ------------------------------------------------------------------------------------

  async resolveTables(options: ResolveTablesOptions): Promise<ResolveTablesResult> {
    const syncRules = options.parsedSyncConfig?.hydratedSyncConfig ?? this.syncRules;
    const { connection_id, source } = options;
    const columns = source.replicaIdColumns.map((c) => ({
      name: c.name,
      type: c.type,
      type_oid: c.typeId == null ? undefined : Number(c.typeId),
    }));
    const relation = { object_id: source.objectId };
    const n = this.db.names;
    return this.db.transaction(async (client) => {
      const matchRelation = source.objectId != null;
      let row = await this.db.first<SourceTableRow>(
        `SELECT * FROM ${n.sourceTables}
         WHERE group_id = $1 AND connection_id = $2 AND schema_name = $3 AND table_name = $4
           AND replica_id_columns = $5::jsonb AND (NOT $7 OR relation_id = $6::jsonb)`,
        [this.groupId, connection_id, source.schema, source.name, JSON.stringify(columns), relation, matchRelation],
        client,
      );
      if (row == null) {
        const id = options.idGenerator ? tableIdString(options.idGenerator()) : randomUUID();
        row = await this.db.first<SourceTableRow>(
          `INSERT INTO ${n.sourceTables}
             (id, group_id, connection_id, relation_id, schema_name, table_name, replica_id_columns)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7::jsonb) RETURNING *`,
          [id, this.groupId, connection_id, relation, source.schema, source.name, JSON.stringify(columns)],
          client,
        );
      }
      const table = this.tableFromRow(row!, source.connectionTag, syncRules, source.objectId, source.replicaIdColumns);
      table.storeCurrentData = source.sendsCompleteRows !== true;
      // Older mappings of the same relation or name (renames, replica identity changes) are for the caller to drop.
      const stale = await this.db.query<SourceTableRow>(
        `SELECT * FROM ${n.sourceTables}
         WHERE group_id = $1 AND connection_id = $2 AND id <> $3
           AND ((schema_name = $4 AND table_name = $5) OR ($7 AND relation_id = $6::jsonb))`,
        [this.groupId, connection_id, row!.id, source.schema, source.name, relation, matchRelation],
        client,
      );
      return {
        tables: [table],
        dropTables: stale.map((r) =>
          this.tableFromRow(r, source.connectionTag, syncRules, r.relation_id?.object_id ?? 0),
        ),
      };
    });
  }

  private tableFromRow(
    row: SourceTableRow,
    connectionTag: string,
    syncRules: HydratedSyncConfig,
    objectId: number | string | undefined,
    replicaIdColumns?: ColumnDescriptor[],
  ): SourceTable {
    const ref = { connectionTag, schema: row.schema_name, name: row.table_name };
    const table = new SourceTable({
      id: row.id,
      ref,
      objectId,
      replicaIdColumns:
        replicaIdColumns ??
        (row.replica_id_columns ?? []).map((c) => ({ name: c.name, type: c.type, typeId: c.type_oid })),
      snapshotComplete: row.snapshot_done ?? true,
      ...syncRules.getMatchingSources(ref),
    });
    if (!table.snapshotComplete) {
      table.snapshotStatus = {
        totalEstimatedCount: Number(row.snapshot_total_estimated_count ?? -1n),
        replicatedCount: Number(row.snapshot_replicated_count ?? 0n),
        lastKey: row.snapshot_last_key,
      };
    }
    table.syncEvent = syncRules.tableTriggersEvent(ref);
    table.syncData = table.bucketDataSources.length > 0;
    table.syncParameters = table.parameterLookupSources.length > 0;
    return table;
  }

  async getSourceTableStatus(table: SourceTable): Promise<SourceTable | null> {
    const row = await this.db.first<SourceTableRow>(
      `SELECT * FROM ${this.db.names.sourceTables} WHERE group_id = $1 AND id = $2`,
      [this.groupId, String(table.id)],
    );
    if (row == null) return null;
    return this.tableFromRow(row, table.ref.connectionTag, this.syncRules, row.relation_id?.object_id);
  }

  // ---- Rows ---------------------------------------------------------------------------------------------

  async save(record: SaveOptions): Promise<FlushedResult | null> {
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

    const op = new RecordOperation(record);
    this.pending.push(op);
    this.pendingSize += op.estimatedSize;
    const limits = this.options.batchLimits;
    if (this.pending.length >= limits.max_record_count || this.pendingSize > limits.max_current_data_batch_size) {
      const result = await this.flush();
      // Let other streams' writers get a turn on the shared server.
      await sleep(5);
      return result;
    }
    return null;
  }

  private tableEvents(table: SourceTable): SqlEventDescriptor[] {
    return this.syncRules.eventDescriptors.filter((event) =>
      [...event.getSourceTables()].some((pattern) => pattern.matches(table.ref)),
    );
  }

  async flush(): Promise<FlushedResult | null> {
    let result: FlushedResult | null = null;
    while (this.pending.length > 0) {
      await this.options.hooks?.beforeBatchFlush?.(this);
      const ops = this.pending;
      const { consumed, lastOp, clearedError } = await this.db.retryingTransaction(
        (client) => this.flushTransaction(client, ops),
        {
          onRetry: (error, attempt) =>
            this.logger.warn(
              `Serialization failure during replication transaction (attempt ${attempt + 1}), retrying`,
              error,
            ),
        },
      );
      this.pending = ops.slice(consumed);
      this.pendingSize = this.pending.reduce((n, op) => n + op.estimatedSize, 0);
      if (clearedError) this.clearedError = true;
      this.persistedOp = lastOp;
      this.last_flushed_op = lastOp;
      result = { flushed_op: lastOp };
      await this.options.hooks?.afterBatchFlush?.(this);
    }
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
    return result;
  }

  /** One transaction: as many queued ops as fit the batch limits. Pure with respect to writer state (retried). */
  private async flushTransaction(
    client: pg.PoolClient,
    ops: RecordOperation[],
  ): Promise<{ consumed: number; lastOp: bigint; clearedError: boolean }> {
    const n = this.db.names;
    const tables: string[] = [];
    const keys: Buffer[] = [];
    const seen = new Set<string>();
    for (const op of ops) {
      const k = cacheKey(op.tableId, op.beforeKey);
      if (!seen.has(k)) {
        seen.add(k);
        tables.push(op.tableId);
        keys.push(op.beforeKey);
      }
    }
    const columns = this.skipExistingRows
      ? 'c.source_table, c.source_key'
      : 'c.source_table, c.source_key, c.buckets, c.data, c.lookups';
    const existing = await this.db.query<{
      source_table: string;
      source_key: Buffer;
      buckets?: CurrentBucket[];
      data?: Buffer;
      lookups?: Buffer[];
    }>(
      `SELECT ${columns} FROM ${n.currentData} c
       JOIN unnest($2::text[], $3::bytea[]) AS k(source_table, source_key)
         ON c.source_table = k.source_table AND c.source_key = k.source_key
       WHERE c.group_id = $1
       ORDER BY c.source_table, c.source_key
       FOR NO KEY UPDATE OF c`,
      [this.groupId, tables, keys],
      client,
    );
    const current = new Map<string, CurrentRow>();
    for (const row of existing) {
      current.set(cacheKey(row.source_table, row.source_key), {
        buckets: row.buckets ?? [],
        data: row.data,
        lookups: row.lookups ?? [],
      });
    }

    const writes = new PendingWrites(this.options.batchLimits);
    let consumed = 0;
    for (const op of ops) {
      const beforeKey = cacheKey(op.tableId, op.beforeKey);
      const next = this.applyOperation(writes, op, current.get(beforeKey) ?? null);
      current.delete(beforeKey);
      if (next != null && op.afterKey != null) current.set(cacheKey(op.tableId, op.afterKey), next);
      consumed++;
      if (writes.full()) break;
    }
    await writes.write(this.db, client, this.groupId);
    const clearedError = writes.any && !this.clearedError;
    await this.db.query(
      `UPDATE ${n.syncRules} SET last_keepalive_ts = now()${clearedError ? ', last_fatal_error = NULL' : ''} WHERE id = $1`,
      [this.groupId],
      client,
    );
    // As upstream: the sequence position (0 before the first op) is the checkpoint candidate, even when this
    // flush wrote no ops (only current_data).
    const seq = await this.db.first<{ value: bigint }>(
      `SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS value FROM ${n.opIdSequence}`,
      [],
      client,
    );
    return { consumed, lastOp: seq!.value, clearedError };
  }

  /** Evaluates one queued op against the row's previous state; returns the row's new state (or null if gone). */
  private applyOperation(writes: PendingWrites, op: RecordOperation, currentRow: CurrentRow | null): CurrentRow | null {
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
        if (storeCurrentData && currentRow.data) {
          after = mergeToast(after ?? {}, deserializeRow(currentRow.data));
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

    let afterData: Buffer | undefined;
    if (op.afterId != null) {
      if (!storeCurrentData) {
        afterData = EMPTY_ROW;
      } else {
        afterData = serializeRow(after ?? {});
        if (afterData.byteLength > MAX_ROW_SIZE) {
          this.logger.warn(`Row too large on ${table.qualifiedName}: ${afterData.byteLength} bytes; stored as TOAST`);
          after = Object.fromEntries(Object.keys(after ?? {}).map((k) => [k, undefined]));
          afterData = serializeRow(after);
        }
      }
    }

    const idChanged = op.afterId == null || !replicaIdEquals(op.beforeId, op.afterId);
    if (op.beforeId != null && idChanged) {
      // The row left its old replica id: remove it from its old buckets and lookups.
      if (table.syncData) {
        writes.saveBucketData(op.tableId, op.beforeId, existingBuckets, []);
        existingBuckets = [];
      }
      if (table.syncParameters) {
        writes.saveParameterData(op.tableId, op.beforeId, [], existingLookups);
        existingLookups = [];
      }
    }

    let newBuckets: CurrentBucket[] = [];
    let newLookups: Buffer[] = [];
    // A re-applied transaction can leave a partial (TOASTed) row: keep current data, emit no ops until complete.
    if (op.afterId != null && after != null && (!storeCurrentData || !hasToastedValues(after))) {
      const row = after as SqliteRow;
      if (table.syncData) {
        const { results, errors } = this.syncRules.evaluateRowWithErrors({
          record: row,
          sourceTable: table.ref,
          bucketDataSources: table.bucketDataSources,
        });
        for (const error of errors) {
          this.logger.error(`Failed to evaluate data query on ${table.qualifiedName}: ${error.error}`);
        }
        writes.saveBucketData(op.tableId, op.afterId, existingBuckets, results);
        newBuckets = results.map((e) => ({ bucket: e.bucket, table: e.table, id: e.id }));
      }
      if (table.syncParameters) {
        const { results, errors } = this.syncRules.evaluateParameterRowWithErrors(table.ref, row, {
          parameterLookupSources: table.parameterLookupSources,
        });
        for (const error of errors) {
          this.logger.error(`Failed to evaluate parameter query on ${table.qualifiedName}: ${error.error}`);
        }
        writes.saveParameterData(op.tableId, op.afterId, results, existingLookups);
        newLookups = results.map((p) => lookupKey(p.lookup));
      }
    }

    let next: CurrentRow | null = null;
    if (op.afterId != null && op.afterKey != null) {
      next = { buckets: newBuckets, data: afterData!, lookups: newLookups };
      writes.upsertCurrent(op.tableId, op.afterKey, { buckets: newBuckets, data: afterData!, lookups: newLookups });
    }
    if (idChanged) writes.deleteCurrent(op.tableId, op.beforeKey);
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
          `SELECT source_key, buckets, lookups FROM ${n.currentData}
           WHERE group_id = $1 AND source_table = $2 LIMIT $3 FOR NO KEY UPDATE`,
          [this.groupId, table.id, TRUNCATE_BATCH],
          client,
        );
        const writes = new PendingWrites(this.options.batchLimits);
        for (const row of rows) {
          const sourceKey = deserializeReplicaId(row.source_key);
          writes.saveBucketData(table.id, sourceKey, row.buckets, []);
          writes.saveParameterData(table.id, sourceKey, [], row.lookups);
          writes.deleteCurrent(table.id, row.source_key);
        }
        await writes.write(this.db, client, this.groupId);
        const seq = await this.db.first<{ value: bigint }>(
          `SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS value FROM ${n.opIdSequence}`,
          [],
          client,
        );
        return { count: rows.length, op: seq!.value };
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
    // One statement, row-locked: checkpoint only when the snapshot is done and this LSN is not behind the last
    // checkpoint nor `no_checkpoint_before`; otherwise park the flushed op in keepalive_op for a later commit.
    const result = await this.db.first<{
      id: number;
      state: SyncRuleState;
      last_checkpoint: bigint | null;
      last_checkpoint_lsn: string | null;
      can_checkpoint: boolean;
      created: boolean;
    }>(
      `WITH selected AS (
         SELECT id, state, last_checkpoint, keepalive_op,
           (snapshot_done
             AND (last_checkpoint_lsn IS NULL OR last_checkpoint_lsn COLLATE "C" <= $2::text COLLATE "C")
             AND (no_checkpoint_before IS NULL OR no_checkpoint_before COLLATE "C" <= $2::text COLLATE "C")
           ) AS can_checkpoint
         FROM ${n.syncRules} WHERE id = $1 FOR UPDATE
       ), computed AS (
         SELECT s.*,
           CASE WHEN s.can_checkpoint THEN GREATEST(s.last_checkpoint, $3::int8, s.keepalive_op, 0)
                ELSE s.last_checkpoint END AS new_last_checkpoint,
           CASE WHEN s.can_checkpoint THEN NULL
                ELSE GREATEST(s.keepalive_op, $3::int8, 0) END AS new_keepalive_op
         FROM selected s
       ), updated AS (
         UPDATE ${n.syncRules} sr SET
           last_checkpoint_lsn = CASE WHEN c.can_checkpoint THEN $2 ELSE sr.last_checkpoint_lsn END,
           last_checkpoint_ts = CASE WHEN c.can_checkpoint THEN now() ELSE sr.last_checkpoint_ts END,
           last_keepalive_ts = now(),
           last_fatal_error = CASE WHEN c.can_checkpoint THEN NULL ELSE sr.last_fatal_error END,
           keepalive_op = c.new_keepalive_op,
           last_checkpoint = c.new_last_checkpoint,
           snapshot_lsn = CASE WHEN c.can_checkpoint THEN NULL ELSE sr.snapshot_lsn END
         FROM computed c
         WHERE sr.id = c.id
           AND (sr.keepalive_op IS DISTINCT FROM c.new_keepalive_op
             OR sr.last_checkpoint IS DISTINCT FROM c.new_last_checkpoint
             OR $4::boolean)
         RETURNING sr.id, sr.last_checkpoint_lsn
       )
       SELECT c.id, c.state, c.new_last_checkpoint AS last_checkpoint, u.last_checkpoint_lsn, c.can_checkpoint,
              u.id IS NOT NULL AS created
       FROM computed c LEFT JOIN updated u ON u.id = c.id`,
      [this.groupId, lsn, this.persistedOp, createEmptyCheckpoints],
    );
    if (result == null) {
      throw new PgStateError('NOT_FOUND', `Replication stream ${this.groupId} no longer exists.`, {
        fix: 'It was removed while replicating; restart replication.',
      });
    }
    if (!result.can_checkpoint) return { checkpointBlocked: true, checkpointCreated: false };

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

  /** PROCESSING -> ACTIVE once the snapshot is done; the previously serving stream becomes STOP. */
  private async autoActivate(state: SyncRuleState): Promise<SyncRuleState> {
    if (!this.needsActivation) return state;
    const n = this.db.names;
    return this.db.transaction(async (client) => {
      const row = await this.db.first<{ state: SyncRuleState; snapshot_done: boolean }>(
        `SELECT state, snapshot_done FROM ${n.syncRules} WHERE id = $1 FOR NO KEY UPDATE`,
        [this.groupId],
        client,
      );
      if (row?.state === SyncRuleState.PROCESSING && row.snapshot_done) {
        await this.db.query(`UPDATE ${n.syncRules} SET state = 'ACTIVE' WHERE id = $1`, [this.groupId], client);
        await this.db.query(
          `UPDATE ${n.syncRules} SET state = 'STOP' WHERE state IN ('ACTIVE', 'ERRORED') AND id <> $1`,
          [this.groupId],
          client,
        );
        this.needsActivation = false;
        this.logger.info(`Activated replication stream ${this.groupId}`);
        return SyncRuleState.ACTIVE;
      }
      if (row?.state !== SyncRuleState.PROCESSING) this.needsActivation = false;
      return row?.state ?? state;
    });
  }

  async setResumeLsn(lsn: string): Promise<void> {
    await this.db.query(`UPDATE ${this.db.names.syncRules} SET snapshot_lsn = $2 WHERE id = $1`, [this.groupId, lsn]);
  }

  private raiseNoCheckpointBefore(lsn: string, client?: Queryable, markDone = false) {
    return this.db.query(
      `UPDATE ${this.db.names.syncRules} SET
         ${markDone ? 'snapshot_done = true,' : ''}
         last_keepalive_ts = now(),
         no_checkpoint_before = CASE
           WHEN no_checkpoint_before IS NULL OR no_checkpoint_before COLLATE "C" < $2::text COLLATE "C" THEN $2
           ELSE no_checkpoint_before END
       WHERE id = $1`,
      [this.groupId, lsn],
      client,
    );
  }

  async markAllSnapshotDone(noCheckpointBeforeLsn: string): Promise<void> {
    await this.raiseNoCheckpointBefore(noCheckpointBeforeLsn, undefined, true);
  }

  async markSnapshotDone(noCheckpointBeforeLsn: string, options?: { throwOnConflict?: boolean }): Promise<void> {
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
      await this.raiseNoCheckpointBefore(noCheckpointBeforeLsn, client, true);
    });
  }

  async markTableSnapshotRequired(_table: SourceTable): Promise<void> {
    await this.db.query(`UPDATE ${this.db.names.syncRules} SET snapshot_done = false WHERE id = $1`, [this.groupId]);
  }

  async markTableSnapshotDone(tables: SourceTable[], noCheckpointBeforeLsn?: string): Promise<SourceTable[]> {
    await this.db.transaction(async (client) => {
      await this.db.query(
        `UPDATE ${this.db.names.sourceTables} SET snapshot_done = true, snapshot_total_estimated_count = NULL,
           snapshot_replicated_count = NULL, snapshot_last_key = NULL
         WHERE group_id = $1 AND id = ANY($2::text[])`,
        [this.groupId, tables.map((t) => String(t.id))],
        client,
      );
      if (noCheckpointBeforeLsn != null) await this.raiseNoCheckpointBefore(noCheckpointBeforeLsn, client);
    });
    return tables.map((t) => {
      const copy = t.clone();
      copy.snapshotComplete = true;
      copy.snapshotStatus = undefined;
      return copy;
    });
  }

  async updateTableProgress(table: SourceTable, progress: Partial<TableSnapshotStatus>): Promise<SourceTable> {
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

/** NOTIFY channel carrying checkpoint events for one storage schema. */
export function checkpointChannel(schema: string): string {
  return `pgstate_powersync_${schema}`.slice(0, 63);
}

function tableIdString(id: unknown): string {
  if (typeof id === 'string') return id;
  const v = id as { toHexString?: () => string };
  return typeof v?.toHexString === 'function' ? v.toHexString() : String(id);
}
