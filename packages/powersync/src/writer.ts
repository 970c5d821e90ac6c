import { randomUUID } from 'node:crypto';
import { PgStateError } from '@pgstate/core';
import { JSONBig } from '@powersync/service-jsonbig';
import {
  CustomSqliteValue,
  type HydratedSyncConfig,
  type SqlEventDescriptor,
  type SqliteRow,
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
  /** Storage version 3: deletes leave a tombstone in current_data until a checkpoint passes it. */
  softDeleteCurrentData: boolean;
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
  /** Undefined until loaded (or when only the key was loaded, for skipExistingRows). */
  data?: Buffer;
  /** Stored size of `data`, to load it in size-bounded chunks. */
  size: number;
  lookups: Buffer[];
}

/** A PUT computed from an evaluated row: JSON data and its checksum. */
interface PutOp {
  bucket: string;
  table: string;
  id: string;
  data: string;
  checksum: number;
}

interface ParameterOp {
  lookup: Buffer;
  parameters: string;
}

/** What a complete row turns into: its stored current data, and (unless it is incomplete) its ops. */
interface EvaluatedAfter {
  data: Buffer;
  /** False when the row is incomplete (TOASTed values, or too large): current data is kept, no ops are emitted. */
  complete: boolean;
  puts: PutOp[];
  parameters: ParameterOp[];
}

/** In-memory map key of a stored replica id (never persisted). */
const cacheKey = (tableId: string, key: Buffer) => `${tableId}\u0000${key.toString('latin1')}`;

/** One queued `save()` with its keys precomputed, and its evaluation when it does not depend on stored data. */
class RecordOperation {
  readonly beforeId: ReplicaId;
  readonly afterId: ReplicaId | null;
  readonly tableId: string;
  readonly beforeKey: Buffer;
  readonly afterKey: Buffer | null;
  readonly beforeCacheKey: string;
  readonly afterCacheKey: string | null;
  readonly estimatedSize: number;
  /** Set by `save()` when `after` is complete: the evaluation is then the same whatever the stored row is. */
  evaluated: EvaluatedAfter | undefined;

  constructor(readonly record: SaveOptions) {
    this.afterId = record.afterReplicaId ?? null;
    this.beforeId = record.beforeReplicaId ?? record.afterReplicaId;
    this.tableId = tableIdString(record.sourceTable.id);
    this.afterKey = this.afterId == null ? null : serializeReplicaId(this.afterId);
    this.beforeKey =
      this.afterKey != null && (record.beforeReplicaId == null || record.beforeReplicaId === record.afterReplicaId)
        ? this.afterKey
        : serializeReplicaId(this.beforeId);
    this.beforeCacheKey = cacheKey(this.tableId, this.beforeKey);
    this.afterCacheKey =
      this.afterKey == null
        ? null
        : this.afterKey === this.beforeKey
          ? this.beforeCacheKey
          : cacheKey(this.tableId, this.afterKey);
    this.estimatedSize =
      estimateRowSize(record.before as Record<string, unknown> | undefined) +
      estimateRowSize(record.after as Record<string, unknown> | undefined);
  }
}

const NEEDS_ESCAPE = /["\\]/g;

/**
 * A PostgreSQL text[] literal. The driver builds one element by element with two regex passes each; this is one
 * join over elements quoted with one pass, which matters at thousands of elements per statement.
 */
export function textArrayLiteral(values: readonly (string | number | null)[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    parts[i] = v == null ? 'NULL' : typeof v === 'number' ? String(v) : `"${v.replace(NEEDS_ESCAPE, '\\$&')}"`;
  }
  return `{${parts.join(',')}}`;
}

/** Orders in-memory keys (table id, then key bytes: latin1 strings compare byte-wise); lock order for writers. */
const byCacheKey = (a: [string, unknown], b: [string, unknown]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/**
 * Everything one transaction writes, accumulated in memory as columns and sent as one set-based statement. Columns
 * travel as JSON arrays (bytea as hex): `JSON.stringify` is native, where the driver's text-array literals escape
 * element by element in JavaScript, which dominated the writer's CPU time.
 */
class PendingWrites {
  readonly bucketOps: {
    bucket: string[];
    op: string[];
    sourceTable: string[];
    sourceKey: string[];
    tableName: string[];
    rowId: string[];
    checksum: number[];
    data: (string | null)[];
  } = { bucket: [], op: [], sourceTable: [], sourceKey: [], tableName: [], rowId: [], checksum: [], data: [] };
  readonly params: { sourceTable: string[]; sourceKey: string[]; lookup: string[]; parameters: string[] } = {
    sourceTable: [],
    sourceKey: [],
    lookup: [],
    parameters: [],
  };
  readonly upserts = new Map<
    string,
    {
      sourceTable: string;
      key: string;
      buckets: CurrentBucket[];
      data: string;
      lookups: string[];
      stored: boolean;
      pendingDelete: boolean;
    }
  >();
  readonly deletes = new Map<string, { sourceTable: string; key: string }>();
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
  saveBucketData(tableId: string, sourceKey: ReplicaId, key: Buffer, before: CurrentBucket[], puts: PutOp[]): void {
    if (puts.length === 0 && before.length === 0) return;
    const hex = key.toString('hex');
    let remaining: Map<string, CurrentBucket> | undefined;
    if (before.length > 0) remaining = new Map(before.map((b) => [`${b.bucket}/${b.table}/${b.id}`, b]));
    for (const e of puts) {
      remaining?.delete(`${e.bucket}/${e.table}/${e.id}`);
      this.pushOp(e.bucket, 'PUT', tableId, hex, e.table, e.id, e.checksum, e.data);
    }
    if (remaining != null && remaining.size > 0) {
      const checksum = hashDelete(tableId, sourceKey);
      for (const b of remaining.values()) this.pushOp(b.bucket, 'REMOVE', tableId, hex, b.table, b.id, checksum, null);
    }
  }

  /** A row per lookup now produced, and a `'[]'` tombstone per lookup the row no longer produces. */
  saveParameterData(tableId: string, key: Buffer, evaluated: ParameterOp[], before: Buffer[]): void {
    if (evaluated.length === 0 && before.length === 0) return;
    const hex = key.toString('hex');
    let remaining: Map<string, Buffer> | undefined;
    if (before.length > 0) remaining = new Map(before.map((l) => [l.toString('latin1'), l]));
    for (const result of evaluated) {
      remaining?.delete(result.lookup.toString('latin1'));
      this.pushParam(tableId, hex, result.lookup, result.parameters);
    }
    if (remaining != null) for (const lookup of remaining.values()) this.pushParam(tableId, hex, lookup, '[]');
  }

  /**
   * `stored`: the row is in the table now (else a plain INSERT, cheaper than ON CONFLICT's speculative one).
   * `pendingDelete`: a v3 tombstone, marked with a new op id when written.
   */
  upsertCurrent(
    tableId: string,
    key: Buffer,
    row: { buckets: CurrentBucket[]; data: Buffer; lookups: Buffer[] },
    stored: boolean,
    pendingDelete = false,
  ) {
    const k = cacheKey(tableId, key);
    this.deletes.delete(k);
    this.upserts.set(k, {
      sourceTable: tableId,
      key: key.toString('hex'),
      buckets: row.buckets,
      data: row.data.toString('hex'),
      lookups: row.lookups.map((l) => l.toString('hex')),
      stored,
      pendingDelete,
    });
    this.size += row.data.byteLength + key.byteLength + row.lookups.reduce((n, l) => n + l.byteLength, 0) + 100;
  }

  deleteCurrent(tableId: string, key: Buffer) {
    const k = cacheKey(tableId, key);
    this.upserts.delete(k);
    this.deletes.set(k, { sourceTable: tableId, key: key.toString('hex') });
    this.size += key.byteLength + 100;
  }

  private pushOp(
    bucket: string,
    op: string,
    tableId: string,
    keyHex: string,
    table: string,
    id: string,
    checksum: number,
    data: string | null,
  ) {
    const o = this.bucketOps;
    o.bucket.push(bucket);
    o.op.push(op);
    o.sourceTable.push(tableId);
    o.sourceKey.push(keyHex);
    o.tableName.push(table);
    o.rowId.push(id);
    o.checksum.push(checksum);
    o.data.push(data);
    this.size += bucket.length + (data?.length ?? 0) + keyHex.length / 2 + 100;
  }

  private pushParam(tableId: string, keyHex: string, lookup: Buffer, parameters: string) {
    this.params.sourceTable.push(tableId);
    this.params.sourceKey.push(keyHex);
    this.params.lookup.push(lookup.toString('hex'));
    this.params.parameters.push(parameters);
    this.size += lookup.byteLength + parameters.length + keyHex.length / 2 + 100;
  }

  /**
   * Writes everything in ONE statement (data-modifying CTEs: one round trip, one parse) and returns the checkpoint
   * candidate: the highest op id written, or, when no op was written, the sequence position (0 before the first
   * op), as upstream does. current_data rows are written in key order so concurrent writers cannot deadlock; the
   * upserted and deleted keys are disjoint (see upsertCurrent/deleteCurrent), so the CTEs never touch a row twice.
   */
  async write(db: StorageDb, client: Queryable, groupId: number, clearError: boolean): Promise<bigint> {
    const n = db.names;
    const values: unknown[] = [groupId];
    const json = (column: unknown[]) => {
      values.push(JSON.stringify(column));
      return `$${values.length}::json`;
    };
    /** A text-array parameter sent as one ready literal, expanded row-wise by `ROWS FROM (unnest(...))`. */
    const text = (column: readonly (string | number | null)[]) => {
      values.push(textArrayLiteral(column));
      return `unnest($${values.length}::text[])`;
    };
    const ctes: string[] = [];
    const sortedUpserts = [...this.upserts.entries()].sort(byCacheKey).map((e) => e[1]);
    for (const stored of [false, true]) {
      const rows = sortedUpserts.filter((r) => r.stored === stored);
      if (rows.length === 0) continue;
      ctes.push(`${stored ? 'updated' : 'inserted'} AS (
        INSERT INTO ${n.currentData} AS c (group_id, source_table, source_key, buckets, data, lookups, pending_delete)
        SELECT $1, u.source_table, decode(u.source_key, 'hex'), u.buckets::jsonb, decode(u.data, 'hex'),
               CASE WHEN json_array_length(u.lookups) = 0 THEN '{}'::bytea[]
                    ELSE ARRAY(SELECT decode(x, 'hex') FROM json_array_elements_text(u.lookups) AS x) END,
               CASE WHEN u.pending_delete = 't' THEN nextval(${n.opIdSequenceLiteral}::regclass) END
        FROM ROWS FROM (${text(rows.map((r) => r.sourceTable))}, ${text(rows.map((r) => r.key))},
                        json_array_elements(${json(rows.map((r) => r.buckets))}), ${text(rows.map((r) => r.data))},
                        json_array_elements(${json(rows.map((r) => r.lookups))}),
                        ${text(rows.map((r) => (r.pendingDelete ? 't' : 'f')))}) WITH ORDINALITY
          AS u(source_table, source_key, buckets, data, lookups, pending_delete, ord)
        ORDER BY u.ord
        ${
          stored
            ? 'ON CONFLICT (group_id, source_table, source_key) DO UPDATE SET buckets = EXCLUDED.buckets, data = EXCLUDED.data, lookups = EXCLUDED.lookups, pending_delete = EXCLUDED.pending_delete'
            : ''
        })`);
    }
    if (this.deletes.size > 0) {
      const rows = [...this.deletes.entries()].sort(byCacheKey).map((e) => e[1]);
      ctes.push(`deleted AS (
        DELETE FROM ${n.currentData} c
        USING ROWS FROM (${text(rows.map((r) => r.sourceTable))}, ${text(rows.map((r) => r.key))})
          AS d(source_table, source_key)
        WHERE c.group_id = $1 AND c.source_table = d.source_table AND c.source_key = decode(d.source_key, 'hex'))`);
    }
    const o = this.bucketOps;
    const maxes: string[] = [];
    if (o.bucket.length > 0) {
      // Op ids are taken in array order (volatile target lists are evaluated after ORDER BY).
      ctes.push(`ops AS (
        INSERT INTO ${n.bucketData}
          (group_id, bucket_name, op_id, op, source_table, source_key, table_name, row_id, checksum, data)
        SELECT $1, u.bucket, nextval(${n.opIdSequenceLiteral}::regclass), u.op, u.source_table,
               decode(u.source_key, 'hex'), u.table_name, u.row_id, u.checksum::int8, u.data
        FROM ROWS FROM (${text(o.bucket)}, ${text(o.op)}, ${text(o.sourceTable)}, ${text(o.sourceKey)},
                        ${text(o.tableName)}, ${text(o.rowId)}, ${text(o.checksum)}, ${text(o.data)})
          WITH ORDINALITY AS u(bucket, op, source_table, source_key, table_name, row_id, checksum, data, ord)
        ORDER BY u.ord
        RETURNING op_id)`);
      maxes.push('(SELECT max(op_id) FROM ops)');
    }
    const p = this.params;
    if (p.lookup.length > 0) {
      ctes.push(`params AS (
        INSERT INTO ${n.bucketParameters} (id, group_id, source_table, source_key, lookup, bucket_parameters)
        SELECT nextval(${n.opIdSequenceLiteral}::regclass), $1, u.source_table, decode(u.source_key, 'hex'),
               decode(u.lookup, 'hex'), u.parameters
        FROM ROWS FROM (${text(p.sourceTable)}, ${text(p.sourceKey)}, ${text(p.lookup)}, ${text(p.parameters)})
          WITH ORDINALITY AS u(source_table, source_key, lookup, parameters, ord)
        ORDER BY u.ord
        RETURNING id)`);
      maxes.push('(SELECT max(id) FROM params)');
    }
    ctes.push(`keepalive AS (
      UPDATE ${n.syncRules} SET last_keepalive_ts = now()${clearError ? ', last_fatal_error = NULL' : ''}
      WHERE id = $1)`);
    // COALESCE reads the sequence only when this statement took no op id (then its position is unaffected).
    const position = `(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${n.opIdSequence})`;
    const value =
      maxes.length === 0
        ? position
        : `COALESCE(${maxes.length === 1 ? maxes[0] : `GREATEST(${maxes.join(', ')})`}, ${position})`;
    const row = await db.first<{ value: bigint }>(
      `WITH ${ctes.join(',\n')} SELECT ${value}::int8 AS value`,
      values,
      client,
    );
    return row!.value;
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
/**
 * A row value the sync rules could not convert because another copy of @powersync/service-sync-rules made it (the
 * service's replicator builds timestamps and custom types with its own copy): it would be missing from every synced
 * row, silently. Refuse it instead (seen in the real service when the package had its own copy).
 */
function assertOwnRowValues(table: SourceTable, row: Record<string, unknown> | undefined): void {
  if (row == null) return;
  for (const key in row) {
    const value = row[key] as { toSqliteValue?: unknown } | null | undefined;
    if (typeof value !== 'object' || value == null || typeof value.toSqliteValue !== 'function') continue;
    if (value instanceof CustomSqliteValue) continue;
    throw new PgStateError(
      'BAD_SETTING',
      `Column ${key} of ${table.qualifiedName} holds a value made by another copy of @powersync/service-sync-rules ` +
        'than the one @pgstate/powersync evaluates rows with; it would be missing from synced rows.',
      {
        fix: "Load one copy in the service: point @pgstate/powersync's @powersync/service-sync-rules (and service-jsonbig) at the service's own (see the package README, Docker).",
      },
    );
  }
}

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
    const syncRules = options.parsedSyncConfig?.hydratedSyncConfig ?? this.syncRules;
    const { connection_id, source } = options;
    const columns = source.replicaIdColumns.map((c) => ({
      name: c.name,
      type: c.type,
      type_oid: c.typeId == null ? undefined : Number(c.typeId),
    }));
    const relation = { object_id: source.objectId };
    const n = this.db.names;
    await this.settle();
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
          // A new table is not snapshotted yet: the replicator copies its existing rows, then marks it done.
          `INSERT INTO ${n.sourceTables}
             (id, group_id, connection_id, relation_id, schema_name, table_name, replica_id_columns, snapshot_done)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7::jsonb, false) RETURNING *`,
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
    await this.settle();
    const row = await this.db.first<SourceTableRow>(
      `SELECT * FROM ${this.db.names.sourceTables} WHERE group_id = $1 AND id = $2`,
      [this.groupId, String(table.id)],
    );
    if (row == null) return null;
    return this.tableFromRow(row, table.ref.connectionTag, this.syncRules, row.relation_id?.object_id);
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

  /** Evaluates a complete (or to-be-stored-as-incomplete) row: its stored form, PUTs and parameter rows. */
  private evaluateAfter(table: SourceTable, after: Record<string, unknown>, storeCurrentData: boolean): EvaluatedAfter {
    let data: Buffer;
    if (!storeCurrentData) {
      data = EMPTY_ROW;
    } else {
      // BSON refuses a document past 16 MiB by throwing before the size check; like upstream, any row that cannot
      // be stored is kept as TOAST (all columns unknown) until a later change brings it back within limits.
      let serialized: Buffer | undefined;
      let tooLarge: string | undefined;
      try {
        serialized = serializeRow(after);
        if (serialized.byteLength > MAX_ROW_SIZE) tooLarge = `${serialized.byteLength} bytes`;
      } catch (error) {
        tooLarge = (error as Error).message;
      }
      if (serialized === undefined || tooLarge !== undefined) {
        this.logger.warn(`Row too large on ${table.qualifiedName} (${tooLarge}); stored as TOAST`);
        const placeholder = Object.fromEntries(Object.keys(after).map((k) => [k, undefined]));
        return { data: serializeRow(placeholder), complete: false, puts: [], parameters: [] };
      }
      data = serialized;
      // A re-applied transaction can leave a partial (TOASTed) row: keep current data, emit no ops until complete.
      if (hasToastedValues(after)) return { data, complete: false, puts: [], parameters: [] };
    }
    const row = after as SqliteRow;
    const puts: PutOp[] = [];
    const parameters: ParameterOp[] = [];
    if (table.syncData) {
      const { results, errors } = this.syncRules.evaluateRowWithErrors({
        record: row,
        sourceTable: table.ref,
        bucketDataSources: table.bucketDataSources,
      });
      for (const error of errors) {
        this.logger.error(`Failed to evaluate data query on ${table.qualifiedName}: ${error.error}`);
      }
      for (const e of results) {
        const json = JSONBig.stringify(e.data);
        puts.push({ bucket: e.bucket, table: e.table, id: e.id, data: json, checksum: hashData(e.table, e.id, json) });
      }
    }
    if (table.syncParameters) {
      const { results, errors } = this.syncRules.evaluateParameterRowWithErrors(table.ref, row, {
        parameterLookupSources: table.parameterLookupSources,
      });
      for (const error of errors) {
        this.logger.error(`Failed to evaluate parameter query on ${table.qualifiedName}: ${error.error}`);
      }
      for (const p of results) {
        parameters.push({ lookup: lookupKey(p.lookup), parameters: JSONBig.stringify(p.bucketParameters) });
      }
    }
    return { data, complete: true, puts, parameters };
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
    await this.settle();
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
    await this.settle();
    await this.raiseNoCheckpointBefore(noCheckpointBeforeLsn, undefined, true);
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
      await this.raiseNoCheckpointBefore(noCheckpointBeforeLsn, client, true);
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

/** NOTIFY channel carrying checkpoint events for one storage schema. */
export function checkpointChannel(schema: string): string {
  return `pgstate_powersync_${schema}`.slice(0, 63);
}

function tableIdString(id: unknown): string {
  if (typeof id === 'string') return id;
  const v = id as { toHexString?: () => string };
  return typeof v?.toHexString === 'function' ? v.toHexString() : String(id);
}
