import { PgStateError } from '@pgstate/core';
import { JSONBig } from '@powersync/service-jsonbig';
import type {
  HydratedSyncConfig,
  ParameterLookupRows,
  ScopedParameterLookup,
  SqliteJsonRow,
} from '@powersync/service-sync-rules';
import { PgStateBucketBatch } from './batch/bucket-batch.js';
import { watchUserCheckpoints } from './checkpoint-notifications.js';
import { ChecksumCache } from './checksum-cache.js';
import { type ClearStreamOptions, clearReplicationStream } from './clear.js';
import { type CompactResult, compactReplicationStream } from './compact.js';
import type { StorageDb } from './db.js';
import { lookupKey, maxLsn, subkeyOfStoredKey } from './encoding.js';
import type { PgStateBucketStorageFactory } from './factory.js';
import { Observers } from './observers.js';
import type { PgStateReplicationStream, SyncRulesRow } from './persisted.js';
import {
  type BucketChecksumOptions,
  type BucketChecksumRequest,
  type BucketDataBatchOptions,
  type BucketDataRequest,
  type BucketStorageBatch,
  CHECKPOINT_INVALIDATE_ALL,
  type CheckpointChanges,
  type ChecksumMap,
  type ClearStorageOptions,
  type CompactOptions,
  type CreateWriterOptions,
  DEFAULT_DOCUMENT_BATCH_LIMIT,
  DEFAULT_DOCUMENT_CHUNK_LIMIT_BYTES,
  type FetchPartialBucketChecksum,
  type FlushedResult,
  type GetCheckpointChangesOptions,
  type InternalOpId,
  type Logger,
  type ManagedWriteCheckpointOptions,
  type OplogEntry,
  type ParsedSyncConfigSet,
  type ParseSyncConfigOptions,
  type PartialChecksumMap,
  type PopulateChecksumCacheOptions,
  type PopulateChecksumCacheResults,
  type ReplicationCheckpoint,
  type ReplicationStreamStatus,
  type StorageCheckpointUpdate,
  type StorageVersionConfig,
  type SyncBucketData,
  type SyncBucketDataChunk,
  SyncRuleState,
  type SyncRulesBucketStorage,
  type SyncRulesBucketStorageListener,
  type SyncStorageLastWriteCheckpointFilters,
  type TerminateOptions,
  type WatchWriteCheckpointOptions,
  WriteCheckpointMode,
} from './types.js';
import { assertManagedMode, createManagedWriteCheckpoints, lastWriteCheckpoint } from './write-checkpoints.js';

/** Thrown by `getParameterSets` when lookups resolve to more rows than allowed (upstream's class of that name). */
export class ParameterSetLimitExceededError extends Error {
  constructor(
    readonly limit: number,
    readonly breakdown?: unknown[],
  ) {
    super(`Too many parameter results (limit was ${limit})`);
    this.name = 'ParameterSetLimitExceededError';
  }
}

export interface SyncRulesStorageOptions {
  factory: PgStateBucketStorageFactory;
  db: StorageDb;
  replicationStream: PgStateReplicationStream;
  /** Default: the replication stream's logger (prefixed with its slot name), as upstream. */
  logger?: Logger;
  checksumCacheTtlMs?: number;
}

/** Storage for one replication stream (one `sync_rules` row = `group_id`). */
export class PgStateSyncRulesStorage
  extends Observers<SyncRulesBucketStorageListener>
  implements SyncRulesBucketStorage
{
  readonly replicationStreamId: number;
  readonly replicationStreamName: string;
  readonly storageConfig: StorageVersionConfig;
  readonly factory: PgStateBucketStorageFactory;
  readonly logger: Logger;
  readonly replicationStream: PgStateReplicationStream;
  private readonly db: StorageDb;
  private readonly parsedSets = new Map<string, ParsedSyncConfigSet>();
  private readonly checksumCache: ChecksumCache;
  private mode: WriteCheckpointMode = WriteCheckpointMode.MANAGED;

  constructor(options: SyncRulesStorageOptions) {
    super();
    this.db = options.db;
    this.factory = options.factory;
    this.logger = options.logger ?? options.replicationStream.logger;
    this.replicationStream = options.replicationStream;
    this.replicationStreamId = options.replicationStream.replicationStreamId;
    this.replicationStreamName = options.replicationStream.replicationStreamName;
    this.storageConfig = options.replicationStream.getStorageConfig();
    this.checksumCache = new ChecksumCache({
      ttlMs: options.checksumCacheTtlMs,
      fetchChecksums: (batch) => this.fetchChecksums(batch),
    });
  }

  get writeCheckpointMode(): WriteCheckpointMode {
    return this.mode;
  }

  setWriteCheckpointMode(mode: WriteCheckpointMode): void {
    this.mode = mode;
  }

  async createManagedWriteCheckpoints(checkpoints: ManagedWriteCheckpointOptions[]): Promise<Map<string, bigint>> {
    assertManagedMode(this.mode);
    return createManagedWriteCheckpoints(this.db, checkpoints);
  }

  lastWriteCheckpoint(filters: SyncStorageLastWriteCheckpointFilters): Promise<bigint | null> {
    return lastWriteCheckpoint(this.db, this.mode, this.replicationStreamId, filters);
  }

  getParsedSyncConfigSet(options: ParseSyncConfigOptions): ParsedSyncConfigSet {
    let parsed = this.parsedSets.get(options.defaultSchema);
    if (parsed == null) {
      parsed = this.replicationStream.parsed(options);
      this.parsedSets.set(options.defaultSchema, parsed);
    }
    return parsed;
  }

  getParsedSyncRules(options: ParseSyncConfigOptions): HydratedSyncConfig {
    return this.getParsedSyncConfigSet(options).hydratedSyncConfig;
  }

  async createWriter(options: CreateWriterOptions): Promise<BucketStorageBatch> {
    const row = await this.row();
    const writer = new PgStateBucketBatch({
      db: this.db,
      logger: options.logger ?? this.logger,
      syncRules: this.getParsedSyncRules(options),
      groupId: this.replicationStreamId,
      lastCheckpointLsn: row.last_checkpoint_lsn,
      keepaliveOp: row.keepalive_op,
      resumeFromLsn: maxLsn(row.snapshot_lsn, row.last_checkpoint_lsn),
      storeCurrentData: options.storeCurrentData,
      skipExistingRows: options.skipExistingRows ?? false,
      softDeleteCurrentData: this.storageConfig.softDeleteCurrentData,
      batchLimits: this.db.config.batchLimits,
      markRecordUnavailable: options.markRecordUnavailable,
      hooks: options.hooks,
    });
    this.emit((l) => l.batchStarted?.(writer));
    return writer;
  }

  /** @deprecated upstream too: use `createWriter()` with `await using`. */
  async startBatch(
    options: CreateWriterOptions,
    callback: (batch: BucketStorageBatch) => Promise<void>,
  ): Promise<FlushedResult | null> {
    const writer = await this.createWriter(options);
    try {
      await callback(writer);
      await writer.flush();
      return writer.last_flushed_op != null ? { flushed_op: writer.last_flushed_op } : null;
    } finally {
      await writer.dispose();
    }
  }

  private async row(): Promise<SyncRulesRow> {
    const row = await this.db.first<SyncRulesRow>(`SELECT * FROM ${this.db.names.syncRules} WHERE id = $1`, [
      this.replicationStreamId,
    ]);
    if (row == null) {
      throw new PgStateError('NOT_FOUND', `Replication stream ${this.replicationStreamId} does not exist.`, {
        fix: 'Deploy sync rules again (updateSyncRules) and restart replication.',
      });
    }
    return row;
  }

  async reportError(e: unknown): Promise<void> {
    const message = String((e as { message?: unknown })?.message ?? 'Replication failure');
    await this.db.query(
      `UPDATE ${this.db.names.syncRules} SET last_fatal_error = $2, last_fatal_error_ts = now() WHERE id = $1`,
      [this.replicationStreamId, message],
    );
  }

  async compact(options?: CompactOptions): Promise<void> {
    await this.compactWithResult(options);
  }

  /** `compact()` returning what it did (see compact.ts); `maxOpId` defaults to the current checkpoint. */
  async compactWithResult(options?: CompactOptions): Promise<CompactResult> {
    const maxOpId = options?.maxOpId ?? (await this.getCheckpoint()).checkpoint;
    return compactReplicationStream(this.db, this.replicationStreamId, { ...options, maxOpId, logger: this.logger });
  }

  async populatePersistentChecksumCache(_options: PopulateChecksumCacheOptions): Promise<PopulateChecksumCacheResults> {
    // Same as upstream's Postgres storage: there is no persistent checksum cache.
    return { buckets: 0 };
  }

  async getCheckpoint(): Promise<ReplicationCheckpoint> {
    const row = await this.db.first<{ last_checkpoint: bigint | null; last_checkpoint_lsn: string | null }>(
      `SELECT last_checkpoint, last_checkpoint_lsn FROM ${this.db.names.syncRules} WHERE id = $1`,
      [this.replicationStreamId],
    );
    return this.checkpointOf(row?.last_checkpoint ?? 0n, row?.last_checkpoint_lsn ?? null);
  }

  checkpointOf(checkpoint: InternalOpId, lsn: string | null): ReplicationCheckpoint {
    return {
      checkpoint,
      lsn,
      getParameterSets: (lookups, limit) => this.getParameterSets(checkpoint, lookups, limit),
    };
  }

  async getParameterSets(
    checkpoint: InternalOpId,
    lookups: ScopedParameterLookup[],
    limit: number,
  ): Promise<ParameterLookupRows[]> {
    if (lookups.length === 0) return [];
    // A lookup requested twice is looked up once (its rows are returned once, under the first request).
    const firstIndex = new Map<string, number>();
    lookups.forEach((l, i) => {
      const key = lookupKey(l).toString('hex');
      if (!firstIndex.has(key)) firstIndex.set(key, i);
    });
    const keys = [...firstIndex.keys()];
    // Latest version per (lookup, source row) at the checkpoint; '[]' marks a removed row.
    const rows = await this.db.query<{ idx: string; bucket_parameters: string }>(
      `SELECT idx, bucket_parameters FROM (
         SELECT DISTINCT ON (r.idx, p.source_table, p.source_key) r.idx, p.bucket_parameters
         FROM unnest($2::text[]) WITH ORDINALITY AS r(lookup_hex, idx)
         JOIN ${this.db.names.bucketParameters} p
           ON p.group_id = $1 AND p.lookup = decode(r.lookup_hex, 'hex') AND p.id <= $3
         ORDER BY r.idx, p.source_table, p.source_key, p.id DESC
       ) latest
       WHERE bucket_parameters <> '[]'
       LIMIT $4`,
      [this.replicationStreamId, keys, checkpoint, limit + 1],
    );
    const byLookup = new Map<ScopedParameterLookup, SqliteJsonRow[]>();
    let total = 0;
    for (const row of rows) {
      const lookup = lookups[firstIndex.get(keys[Number(row.idx) - 1]!)!]!;
      const parsed = JSONBig.parse(row.bucket_parameters) as SqliteJsonRow[];
      total += parsed.length;
      const existing = byLookup.get(lookup);
      if (existing) existing.push(...parsed);
      else byLookup.set(lookup, parsed);
    }
    if (total > limit) throw new ParameterSetLimitExceededError(limit);
    return [...byLookup].map(([lookup, rows]) => ({ lookup, rows }));
  }

  /**
   * Ops of the requested buckets after their `start`, up to `checkpoint`, in bucket (byte order) then op order,
   * `limit` ops at most, as chunks of at most `chunkLimitBytes` of data (a chunk always holds at least one op).
   * Rows are read in pages bounded by the same byte limit (a running sum cut server-side), so memory holds one
   * chunk and one page, never `limit` large rows at once.
   */
  async *getBucketDataBatch(
    checkpoint: ReplicationCheckpoint,
    dataBuckets: BucketDataRequest[],
    options?: BucketDataBatchOptions,
  ): AsyncIterable<SyncBucketDataChunk> {
    if (dataBuckets.length === 0) return;
    const limit = options?.limit ?? DEFAULT_DOCUMENT_BATCH_LIMIT;
    const chunkLimitBytes = options?.chunkLimitBytes ?? DEFAULT_DOCUMENT_CHUNK_LIMIT_BYTES;
    const starts = new Map(dataBuckets.map((r) => [r.bucket, r.start]));
    // Where the next page starts: buckets in the order the query returns them, each from its last op.
    const cursor = [...starts].sort(([a], [b]) => compareBytes(a, b));

    let chunk: SyncBucketData | null = null;
    let chunkBytes = 0;
    let targetOp: InternalOpId | null = null;
    let count = 0;
    let exhausted = false;
    while (!exhausted && count < limit && cursor.length > 0) {
      const pageLimit = limit - count;
      const rows = await this.bucketDataPage(checkpoint.checkpoint, cursor, pageLimit, chunkLimitBytes);
      if (rows.length < pageLimit && !rows.cut) exhausted = true;
      for (const row of rows) {
        const size = row.data ? Buffer.byteLength(row.data) : 0;
        const full =
          chunk != null &&
          (chunkBytes >= chunkLimitBytes ||
            (chunk.data.length > 0 && chunkBytes + size > chunkLimitBytes) ||
            chunk.data.length >= limit);
        if (chunk == null || chunk.bucket !== row.bucket_name || full) {
          let after: string | undefined;
          if (chunk != null) {
            if (chunk.bucket === row.bucket_name) {
              chunk.has_more = true;
              after = chunk.next_after;
            }
            yield { chunkData: chunk, targetOp };
            chunk = null;
          }
          if (after == null) {
            const start = starts.get(row.bucket_name);
            if (start == null) throw new Error(`Unexpected data for bucket ${row.bucket_name}`);
            after = start.toString();
          }
          chunk = { bucket: row.bucket_name, after, has_more: false, data: [], next_after: after };
          chunkBytes = 0;
          targetOp = null;
        }
        const entry: OplogEntry = toOplogEntry(row);
        if (row.target_op != null && (targetOp == null || row.target_op > targetOp)) targetOp = row.target_op;
        chunk.data.push(entry);
        chunk.next_after = entry.op_id;
        chunkBytes += size;
        count++;
        // The next page continues after this op; buckets before it are done.
        while (cursor.length > 0 && cursor[0]![0] !== row.bucket_name) cursor.shift();
        if (cursor.length > 0) cursor[0]![1] = row.op_id;
      }
    }
    if (chunk != null) {
      // The last chunk may continue when the batch hit the row limit (true is safe when exactly at the limit).
      chunk.has_more = count >= limit;
      yield { chunkData: chunk, targetOp };
    }
  }

  /**
   * One page of ops: per-bucket index range scans (LATERAL ... LIMIT), one ordered, limited batch over all buckets,
   * cut after the op whose data reaches `maxBytes` (`cut` says the page ended there rather than at `limit`).
   */
  private async bucketDataPage(
    checkpoint: InternalOpId,
    cursor: [string, InternalOpId][],
    limit: number,
    maxBytes: number,
  ): Promise<BucketDataRow[] & { cut?: boolean }> {
    const rows: BucketDataRow[] & { cut?: boolean } = await this.db.query<BucketDataRow & { last: boolean }>(
      `SELECT * FROM (
         SELECT p.*, sum(octet_length(p.data)) OVER w - coalesce(octet_length(p.data), 0) AS before_bytes,
                row_number() OVER w AS n
         FROM (
           SELECT b.bucket_name, b.op_id, b.op, b.source_table, b.source_key, b.table_name, b.row_id, b.checksum,
                  b.data, b.target_op
           FROM unnest($2::text[], $3::int8[]) AS r(bucket, start_op)
           CROSS JOIN LATERAL (
             SELECT * FROM ${this.db.names.bucketData} d
             WHERE d.group_id = $1 AND d.bucket_name = r.bucket AND d.op_id > r.start_op AND d.op_id <= $4
             ORDER BY d.op_id
             LIMIT $5
           ) b
           ORDER BY b.bucket_name COLLATE "C", b.op_id
           LIMIT $5
         ) p
         WINDOW w AS (ORDER BY p.bucket_name COLLATE "C", p.op_id ROWS UNBOUNDED PRECEDING)
       ) q
       WHERE n = 1 OR coalesce(before_bytes, 0) < $6
       ORDER BY bucket_name COLLATE "C", op_id`,
      [
        this.replicationStreamId,
        cursor.map(([bucket]) => bucket),
        cursor.map(([, start]) => start.toString()),
        checkpoint,
        limit,
        maxBytes,
      ],
    );
    // Fewer rows than asked for and the last one not reaching the byte limit: the buckets are drained.
    const last = rows.at(-1) as (BucketDataRow & { before_bytes?: string | null }) | undefined;
    if (last != null && rows.length < limit) {
      const lastSize = last.data ? Buffer.byteLength(last.data) : 0;
      rows.cut = Number(last.before_bytes ?? 0) + lastSize >= maxBytes;
    }
    return rows;
  }

  async getChecksums(
    checkpoint: ReplicationCheckpoint,
    buckets: BucketChecksumRequest[],
    _options?: BucketChecksumOptions,
  ): Promise<ChecksumMap> {
    return this.checksumCache.getChecksumMap(
      checkpoint.checkpoint,
      buckets.map((b) => b.bucket),
    );
  }

  clearChecksumCache(): void {
    this.checksumCache.clear();
  }

  private async fetchChecksums(batch: FetchPartialBucketChecksum[]): Promise<PartialChecksumMap> {
    if (batch.length === 0) return new Map();
    const rows = await this.db.query<{ bucket: string; total: string; n: bigint; has_clear: boolean }>(
      `SELECT r.bucket, sum(b.checksum)::text AS total, count(*)::int8 AS n, bool_or(b.op = 'CLEAR') AS has_clear
       FROM unnest($2::text[], $3::int8[], $4::int8[]) AS r(bucket, start_op, end_op)
       JOIN ${this.db.names.bucketData} b
         ON b.group_id = $1 AND b.bucket_name = r.bucket AND b.op_id > r.start_op AND b.op_id <= r.end_op
       GROUP BY r.bucket`,
      [
        this.replicationStreamId,
        batch.map((b) => b.bucket),
        batch.map((b) => (b.start ?? 0n).toString()),
        batch.map((b) => b.end.toString()),
      ],
    );
    const result: PartialChecksumMap = new Map();
    for (const row of rows) {
      const checksum = Number(BigInt(row.total) & 0xffffffffn) & 0xffffffff;
      const count = Number(row.n);
      result.set(
        row.bucket,
        row.has_clear
          ? { bucket: row.bucket, checksum, count }
          : { bucket: row.bucket, partialChecksum: checksum, partialCount: count },
      );
    }
    return result;
  }

  async getCheckpointChanges(_options: GetCheckpointChangesOptions): Promise<CheckpointChanges> {
    // Individual changes are not tracked (as in upstream's Postgres storage): the sync layer re-evaluates all.
    return CHECKPOINT_INVALIDATE_ALL;
  }

  watchCheckpointChanges(options: WatchWriteCheckpointOptions): AsyncIterable<StorageCheckpointUpdate> {
    return watchUserCheckpoints({
      db: this.db,
      replicationStreamId: this.replicationStreamId,
      user_id: options.user_id,
      signal: options.signal,
      checkpointOf: (checkpoint, lsn) => this.checkpointOf(checkpoint, lsn),
      lastWriteCheckpoint: (filters) => this.lastWriteCheckpoint(filters),
    });
  }

  async terminate(options?: TerminateOptions): Promise<void> {
    if (!options || options.clearStorage) await this.clear(options);
    await this.db.query(`UPDATE ${this.db.names.syncRules} SET state = $2, snapshot_done = false WHERE id = $1`, [
      this.replicationStreamId,
      SyncRuleState.TERMINATED,
    ]);
  }

  async getStatus(): Promise<ReplicationStreamStatus> {
    const row = await this.row();
    return {
      snapshotDone: row.snapshot_done && row.last_checkpoint_lsn != null,
      resumeLsn: maxLsn(row.snapshot_lsn, row.last_checkpoint_lsn),
    };
  }

  /** Deletes this stream's data in bounded keyset batches, cancellable between batches (see clear.ts, upstream #729). */
  async clear(options?: ClearStorageOptions & ClearStreamOptions): Promise<void> {
    try {
      await clearReplicationStream(this.db, this.replicationStreamId, options);
    } finally {
      this.checksumCache.clear();
    }
  }
}

interface BucketDataRow {
  bucket_name: string;
  op_id: bigint;
  op: 'PUT' | 'REMOVE' | 'MOVE' | 'CLEAR';
  source_table: string | null;
  source_key: Buffer | null;
  table_name: string | null;
  row_id: string | null;
  checksum: bigint;
  data: string | null;
  target_op: bigint | null;
}

function toOplogEntry(row: BucketDataRow): OplogEntry {
  if (row.op === 'PUT' || row.op === 'REMOVE') {
    return {
      op_id: row.op_id.toString(),
      op: row.op,
      object_type: row.table_name ?? undefined,
      object_id: row.row_id ?? undefined,
      checksum: Number(row.checksum),
      subkey:
        row.source_table != null && row.source_key != null
          ? subkeyOfStoredKey(row.source_table, row.source_key)
          : undefined,
      data: row.data,
    };
  }
  return { op_id: row.op_id.toString(), op: row.op, checksum: Number(row.checksum) };
}

/** Byte-wise (UTF-8) string order, as `COLLATE "C"` sorts bucket names. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
