/**
 * Compaction of a replication stream's operation log and parameter lookups.
 *
 * Bucket data: walking a bucket from its newest op down, a PUT or REMOVE whose row appears again later becomes a
 * MOVE pointing at that later op (`target_op`); its data is dropped but its checksum kept. Afterwards the bucket's
 * oldest ops, up to its first remaining PUT, collapse into one CLEAR at the highest of their op ids carrying the
 * sum of their checksums. Bucket checksums (full and partial) are therefore the same before and after, and clients
 * that synced part of a bucket before compaction see `targetOp` above their checkpoint and wait for the next one.
 *
 * Parameter data (which PowerSync's own Postgres storage does not compact, upstream #761): for every source row
 * and lookup, rows superseded by a newer row at or below `maxOpId` are deleted, and so is a newest row that is a
 * tombstone. Lookups at any checkpoint >= `maxOpId` return exactly what they returned before.
 *
 * Memory stays bounded: buckets are discovered and scanned in keyset pages (by name, then by op id), updates are
 * written in batches, and the per-bucket "seen rows" map stops growing at `memoryLimitMB` (beyond that, older
 * duplicates of rows not yet seen are simply left uncompacted until the next run).
 */
import type { StorageDb } from './db.js';
import { addChecksums } from './encoding.js';
import type { CompactOptions, InternalOpId, Logger } from './types.js';

const DEFAULT_MEMORY_LIMIT_MB = 64;
const DEFAULT_MOVE_BATCH_LIMIT = 2000;
const DEFAULT_MOVE_BATCH_QUERY_LIMIT = 10_000;
const DEFAULT_CLEAR_BATCH_LIMIT = 5000;
const BUCKET_DISCOVERY_BATCH = 200;
const PARAMETER_LOOKUP_BATCH = 500;

export interface CompactResult {
  /** Buckets examined. */
  buckets: number;
  /** PUT/REMOVE ops turned into MOVE. */
  moved: number;
  /** Ops removed by collapsing leading runs into CLEAR ops. */
  cleared: number;
  /** Parameter rows deleted. */
  parameterRowsDeleted: number;
}

export interface CompactStreamOptions extends CompactOptions {
  /** Required here; `PgStateSyncRulesStorage.compact` defaults it to the current checkpoint. */
  maxOpId: InternalOpId;
  logger?: Logger;
}

interface ScannedOp {
  op_id: bigint;
  op: 'PUT' | 'REMOVE' | 'MOVE' | 'CLEAR';
  row_key: string | null;
}

class Aborted extends Error {}

/** Compacts the buckets (all, or `compactBuckets`) and, unless `compactParameterData === false`, the parameters. */
export async function compactReplicationStream(
  db: StorageDb,
  groupId: number,
  options: CompactStreamOptions,
): Promise<CompactResult> {
  const result: CompactResult = { buckets: 0, moved: 0, cleared: 0, parameterRowsDeleted: 0 };
  if (options.maxOpId <= 0n) return result; // no checkpoint yet: nothing any client could have synced
  const compactor = new BucketCompactor(db, groupId, options, result);
  try {
    if (options.compactBuckets) {
      for (const bucket of options.compactBuckets) await compactor.compactBucket(bucket);
    } else {
      await compactor.compactAll();
    }
    if (options.compactParameterData !== false && options.compactBuckets == null) {
      result.parameterRowsDeleted = await compactParameters(db, groupId, options.maxOpId, options.signal);
    }
  } catch (error) {
    if (error instanceof Aborted) return result;
    throw error;
  }
  return result;
}

function checkSignal(signal: AbortSignal | undefined) {
  if (signal?.aborted) throw new Aborted();
}

class BucketCompactor {
  private readonly memoryLimitBytes: number;
  private readonly moveBatchLimit: number;
  private readonly queryLimit: number;
  private readonly clearBatchLimit: number;
  private readonly logger: Logger | undefined;

  constructor(
    private readonly db: StorageDb,
    private readonly groupId: number,
    private readonly options: CompactStreamOptions,
    private readonly result: CompactResult,
  ) {
    this.memoryLimitBytes = (options.memoryLimitMB ?? DEFAULT_MEMORY_LIMIT_MB) * 1024 * 1024;
    this.moveBatchLimit = options.moveBatchLimit ?? DEFAULT_MOVE_BATCH_LIMIT;
    this.queryLimit = options.moveBatchQueryLimit ?? DEFAULT_MOVE_BATCH_QUERY_LIMIT;
    this.clearBatchLimit = options.clearBatchLimit ?? DEFAULT_CLEAR_BATCH_LIMIT;
    this.logger = options.logger;
  }

  async compactAll(): Promise<void> {
    let after: string | null = null;
    for (;;) {
      checkSignal(this.options.signal);
      // The next few distinct bucket names after the last one, one index probe each (a loose index scan: a plain
      // DISTINCT would read every op of a huge bucket just to skip past it).
      const t = this.db.names.bucketData;
      const rows: { bucket_name: string }[] = await this.db.query<{ bucket_name: string }>(
        `WITH RECURSIVE names(bucket_name) AS (
           (SELECT bucket_name FROM ${t} WHERE group_id = $1 AND ($2::text IS NULL OR bucket_name > $2)
            ORDER BY bucket_name LIMIT 1)
           UNION ALL
           SELECT (SELECT b.bucket_name FROM ${t} b WHERE b.group_id = $1 AND b.bucket_name > names.bucket_name
                   ORDER BY b.bucket_name LIMIT 1)
           FROM names WHERE names.bucket_name IS NOT NULL
         )
         SELECT bucket_name FROM names WHERE bucket_name IS NOT NULL LIMIT $3`,
        [this.groupId, after, BUCKET_DISCOVERY_BATCH],
      );
      if (rows.length === 0) return;
      for (const row of rows) await this.compactBucket(row.bucket_name);
      after = rows[rows.length - 1]!.bucket_name;
    }
  }

  async compactBucket(bucket: string): Promise<void> {
    const { maxOpId, signal } = this.options;
    this.result.buckets++;
    // Newest op id per row (only rows seen at or below maxOpId), bounded by memoryLimitBytes.
    const seen = new Map<string, bigint>();
    let seenBytes = 0;
    let moves: { opId: bigint; target: bigint }[] = [];
    // The run of non-PUT ops at the bottom of the bucket: its highest op id and how many MOVE/REMOVE it has.
    let runTop: bigint | null = null;
    let runOps = 0;
    let upper: bigint = maxOpId + 1n;

    const flushMoves = async () => {
      if (moves.length === 0) return;
      const batch = moves;
      moves = [];
      // Only PUT/REMOVE rows change: a concurrent compactor that got there first leaves nothing to redo.
      const updated = await this.db.query<{ op_id: bigint }>(
        `UPDATE ${this.db.names.bucketData} b SET op = 'MOVE', target_op = m.target, data = NULL, table_name = NULL,
           row_id = NULL, source_table = NULL, source_key = NULL
         FROM unnest($3::int8[], $4::int8[]) AS m(op_id, target)
         WHERE b.group_id = $1 AND b.bucket_name = $2 AND b.op_id = m.op_id AND b.op IN ('PUT', 'REMOVE')
         RETURNING b.op_id`,
        [this.groupId, bucket, batch.map((m) => m.opId.toString()), batch.map((m) => m.target.toString())],
      );
      this.result.moved += updated.length;
    };

    for (;;) {
      checkSignal(signal);
      const page = await this.db.query<ScannedOp>(
        `SELECT op_id, op,
           CASE WHEN op IN ('PUT', 'REMOVE')
             THEN coalesce(table_name, '') || '/' || coalesce(row_id, '') || '/' || coalesce(source_table, '') || '/'
               || encode(coalesce(source_key, ''::bytea), 'base64')
           END AS row_key
         FROM ${this.db.names.bucketData}
         WHERE group_id = $1 AND bucket_name = $2 AND op_id < $3
         ORDER BY op_id DESC
         LIMIT $4`,
        [this.groupId, bucket, upper, this.queryLimit],
      );
      if (page.length === 0) break;
      upper = page[page.length - 1]!.op_id;
      for (const op of page) {
        let persistentPut = op.op === 'PUT';
        if (op.row_key != null) {
          const target = seen.get(op.row_key);
          if (target != null) {
            persistentPut = false;
            moves.push({ opId: op.op_id, target });
          } else if (seenBytes < this.memoryLimitBytes) {
            seen.set(op.row_key, op.op_id);
            // String payload (2 bytes/char) + bigint + Map entry overhead.
            seenBytes += op.row_key.length * 2 + 120;
          }
        }
        if (persistentPut) {
          runTop = null;
          runOps = 0;
        } else if (op.op !== 'CLEAR') {
          runTop ??= op.op_id;
          runOps++;
        }
        if (moves.length >= this.moveBatchLimit) await flushMoves();
      }
    }
    await flushMoves();
    seen.clear();
    // A lone REMOVE/MOVE at the bottom is not worth a CLEAR (it would replace one op by one op).
    if (runTop != null && runOps > 1) await this.clearBucket(bucket, runTop);
  }

  /**
   * Replaces every op up to `through` (all of them MOVE/REMOVE/CLEAR) by one CLEAR, `clearBatchLimit` ops per
   * transaction: each step folds the oldest ops (including the CLEAR of the previous step) into a new CLEAR.
   */
  private async clearBucket(bucket: string, through: bigint): Promise<void> {
    const n = this.db.names;
    for (;;) {
      checkSignal(this.options.signal);
      const step = await this.db.retryingTransaction(async (client) => {
        const ops = await this.db.query<{
          op_id: bigint;
          op: string;
          checksum: bigint;
          target_op: bigint | null;
        }>(
          `SELECT op_id, op, checksum, target_op FROM ${n.bucketData}
           WHERE group_id = $1 AND bucket_name = $2 AND op_id <= $3
           ORDER BY op_id LIMIT $4`,
          [this.groupId, bucket, through, this.clearBatchLimit],
          client,
        );
        let checksum = 0;
        let top: bigint | null = null;
        let targetOp: bigint | null = null;
        let replaced = 0;
        for (const op of ops) {
          if (op.op === 'PUT') {
            // Cannot happen unless something rewrote history below the checkpoint: refuse rather than lose a row.
            throw new Error(`Unexpected PUT at ${this.groupId}:${bucket}:${op.op_id} while compacting`);
          }
          // Stored as upstream does: PUT/REMOVE unsigned, CLEAR as the signed 32-bit sum (same value mod 2^32).
          checksum = addChecksums(checksum, Number(BigInt(op.checksum) & 0xffffffffn));
          top = op.op_id;
          if (op.op !== 'CLEAR') replaced++;
          if (op.target_op != null && (targetOp == null || op.target_op > targetOp)) targetOp = op.target_op;
        }
        if (replaced === 0 || top == null) return { done: true, removed: 0 };
        const deleted = await this.db.query<{ n: bigint }>(
          `WITH d AS (DELETE FROM ${n.bucketData} WHERE group_id = $1 AND bucket_name = $2 AND op_id <= $3 RETURNING 1)
           SELECT count(*)::int8 AS n FROM d`,
          [this.groupId, bucket, top],
          client,
        );
        await this.db.query(
          `INSERT INTO ${n.bucketData} (group_id, bucket_name, op_id, op, checksum, target_op)
           VALUES ($1, $2, $3, 'CLEAR', $4, $5)`,
          [this.groupId, bucket, top, checksum, targetOp],
          client,
        );
        return { done: ops.length < this.clearBatchLimit, removed: Number(deleted[0]?.n ?? 0n) - 1 };
      });
      this.result.cleared += Math.max(0, step.removed);
      if (step.done) return;
    }
  }
}

/** See the file comment. Returns the number of parameter rows deleted. */
export async function compactParameters(
  db: StorageDb,
  groupId: number,
  maxOpId: InternalOpId,
  signal?: AbortSignal,
): Promise<number> {
  const table = db.names.bucketParameters;
  let after: Buffer | null = null;
  let deleted = 0;
  for (;;) {
    checkSignal(signal);
    // Loose index scan over (group_id, lookup, id DESC), as for bucket names.
    const lookups: { lookup: Buffer }[] = await db.query<{ lookup: Buffer }>(
      `WITH RECURSIVE l(lookup) AS (
         (SELECT lookup FROM ${table} WHERE group_id = $1 AND ($2::bytea IS NULL OR lookup > $2)
          ORDER BY lookup LIMIT 1)
         UNION ALL
         SELECT (SELECT p.lookup FROM ${table} p WHERE p.group_id = $1 AND p.lookup > l.lookup
                 ORDER BY p.lookup LIMIT 1)
         FROM l WHERE l.lookup IS NOT NULL
       )
       SELECT lookup FROM l WHERE lookup IS NOT NULL LIMIT $3`,
      [groupId, after, PARAMETER_LOOKUP_BATCH],
    );
    if (lookups.length === 0) return deleted;
    after = lookups[lookups.length - 1]!.lookup;
    const rows = await db.query<{ n: bigint }>(
      `WITH ranked AS (
         SELECT id, bucket_parameters,
           row_number() OVER (PARTITION BY lookup, source_table, source_key ORDER BY id DESC) AS rn
         FROM ${table}
         WHERE group_id = $1 AND lookup = ANY($2::bytea[]) AND id <= $3
       ), d AS (
         DELETE FROM ${table} p USING ranked r
         WHERE p.id = r.id AND (r.rn > 1 OR r.bucket_parameters = '[]')
         RETURNING 1
       )
       SELECT count(*)::int8 AS n FROM d`,
      [groupId, lookups.map((l) => l.lookup), maxOpId],
    );
    deleted += Number(rows[0]?.n ?? 0n);
  }
}
