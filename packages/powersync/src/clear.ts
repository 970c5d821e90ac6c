/**
 * Clearing a replication stream's data in bounded batches (upstream #729: one DELETE over 79M rows never finished).
 *
 * Each batch deletes a contiguous primary-key range found by a keyset probe that starts where the previous batch
 * ended, so no batch re-walks index entries of rows already deleted (a `LIMIT` probe from the start would, and
 * gets slower with every batch until vacuum runs). Batches are separate short transactions: the work can be
 * cancelled between batches with an AbortSignal and simply resumed by clearing again. The stream's checkpoint is
 * reset first, so a half-cleared stream never serves partial data.
 */
import { PgStateError } from '@pgstate/core';
import type { StorageDb } from './db.js';

export interface ClearProgress {
  table: 'bucket_data' | 'bucket_parameters' | 'current_data' | 'source_tables';
  deleted: number;
}

export interface ClearStreamOptions {
  signal?: AbortSignal;
  /** Rows per DELETE (default 10 000). */
  batchSize?: number;
  onProgress?: (progress: ClearProgress) => void;
}

export interface ClearResult {
  bucketData: number;
  bucketParameters: number;
  currentData: number;
  sourceTables: number;
}

function aborted(): PgStateError {
  return new PgStateError('QUERY_FAILED', 'Clearing PowerSync storage was cancelled.', {
    fix: 'Run clear again to finish; rows already deleted stay deleted and the stream serves nothing meanwhile.',
  });
}

/** Deletes all rows of one replication stream (`group_id`), batch by batch. */
export async function clearReplicationStream(
  db: StorageDb,
  groupId: number,
  options: ClearStreamOptions = {},
): Promise<ClearResult> {
  const n = db.names;
  const batch = options.batchSize ?? 10_000;
  if (options.signal?.aborted) throw aborted();
  await db.query(
    `UPDATE ${n.syncRules} SET snapshot_done = false, last_checkpoint_lsn = NULL, last_checkpoint = NULL,
       no_checkpoint_before = NULL WHERE id = $1`,
    [groupId],
  );
  const result: ClearResult = { bucketData: 0, bucketParameters: 0, currentData: 0, sourceTables: 0 };
  // Key columns after group_id, in primary-key (or leading index) order.
  const plans: {
    table: ClearProgress['table'];
    name: string;
    keys: string[];
    types: string[];
    field: keyof ClearResult;
  }[] = [
    {
      table: 'bucket_data',
      name: n.bucketData,
      keys: ['bucket_name', 'op_id'],
      types: ['text', 'int8'],
      field: 'bucketData',
    },
    { table: 'bucket_parameters', name: n.bucketParameters, keys: ['id'], types: ['int8'], field: 'bucketParameters' },
    {
      table: 'current_data',
      name: n.currentData,
      keys: ['source_table', 'source_key'],
      types: ['text', 'bytea'],
      field: 'currentData',
    },
    { table: 'source_tables', name: n.sourceTables, keys: ['id'], types: ['text'], field: 'sourceTables' },
  ];
  for (const plan of plans) {
    let after: unknown[] | null = null;
    for (;;) {
      if (options.signal?.aborted) throw aborted();
      const deleted = await deleteBatch(db, plan, groupId, after, batch);
      result[plan.field] += deleted.count;
      if (deleted.count > 0) options.onProgress?.({ table: plan.table, deleted: result[plan.field] });
      if (deleted.last == null) break;
      after = deleted.last;
    }
  }
  return result;
}

/**
 * Deletes the next `batch` rows (in key order) after `after`; returns how many and the last key deleted, or a null
 * key when the table has no more rows for this stream.
 */
async function deleteBatch(
  db: StorageDb,
  plan: { name: string; keys: string[]; types: string[] },
  groupId: number,
  after: unknown[] | null,
  batch: number,
): Promise<{ count: number; last: unknown[] | null }> {
  const cols = plan.keys.join(', ');
  const tuple = `(${cols})`;
  const descending = plan.keys.map((k) => `${k} DESC`).join(', ');
  const params = plan.keys.map((_, i) => `$${i + 3}::${plan.types[i]}`).join(', ');
  const lower = after == null ? 'true' : `${tuple} > (${params})`;
  // bucket_parameters is keyed by id alone (its group index leads with lookup); rows of other streams in the id
  // range are skipped by the group_id filter, and id order keeps the probe from revisiting deleted rows.
  // Victims by key order (index range scan from `after`), deleted by ctid (a TID scan: a join back on the key
  // columns gets planned as a hash join over the whole table, once per batch).
  // Right after a bulk load the table may have no statistics, and the planner would then read the whole table and
  // sort it for every batch. Only the index range scan keeps each batch proportional to its size, so insist on it
  // (SET LOCAL: this transaction only, fine behind PgBouncer in transaction mode).
  const rows = await db.transaction(async (client) => {
    await client.query('SET LOCAL enable_seqscan = off');
    await client.query('SET LOCAL enable_bitmapscan = off');
    return db.query<Record<string, unknown> & { n: bigint }>(
      `WITH victims AS (
       SELECT ctid AS row_ctid, ${cols} FROM ${plan.name}
       WHERE group_id = $1 AND ${lower}
       ORDER BY ${cols} LIMIT $2
     ), deleted AS (
       DELETE FROM ${plan.name} WHERE group_id = $1 AND ctid = ANY(ARRAY(SELECT row_ctid FROM victims))
       RETURNING 1
     ), last AS (
       SELECT ${cols} FROM victims ORDER BY ${descending} LIMIT 1
     )
     SELECT (SELECT count(*) FROM deleted)::int8 AS n, last.* FROM last`,
      [groupId, batch, ...(after ?? [])],
      client,
    );
  });
  const row = rows[0];
  const count = Number(row?.n ?? 0n);
  // No victims: the table has nothing left after `after` for this stream.
  if (row == null) return { count: 0, last: null };
  return { count, last: plan.keys.map((k) => row[k]) };
}
