// The set-based write of one flush transaction: PUT/REMOVE ops, parameter rows and the new current_data state,
// collected as columns and sent as one statement.
import type { BatchLimits } from '../config.js';
import type { Queryable, StorageDb } from '../db.js';
import { hashDelete as hashDeleteOf, replicaIdToSubkey } from '../encoding.js';
import type { ReplicaId } from '../types.js';
import { byCacheKey, type CurrentBucket, cacheKey, type ParameterOp, type PutOp } from './record-operation.js';

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

/**
 * Everything one transaction writes, accumulated in memory as columns and sent as one set-based statement. Columns
 * travel as JSON arrays (bytea as hex): `JSON.stringify` is native, where the driver's text-array literals escape
 * element by element in JavaScript, which dominated the writer's CPU time.
 */
export class PendingWrites {
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
