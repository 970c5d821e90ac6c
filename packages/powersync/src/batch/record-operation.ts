// What the writer keeps in memory per queued row: the queued `save()` with its keys precomputed, and the shapes of
// the stored row (current_data) and of an evaluated row that the flush diffs against each other.
import { estimateRowSize, serializeReplicaId } from '../encoding.js';
import type { ReplicaId, SaveOptions } from '../types.js';

export interface CurrentBucket {
  bucket: string;
  table: string;
  id: string;
}

export interface CurrentRow {
  buckets: CurrentBucket[];
  /** Undefined until loaded (or when only the key was loaded, for skipExistingRows). */
  data?: Buffer;
  /** Stored size of `data`, to load it in size-bounded chunks. */
  size: number;
  lookups: Buffer[];
}

/** A PUT computed from an evaluated row: JSON data and its checksum. */
export interface PutOp {
  bucket: string;
  table: string;
  id: string;
  data: string;
  checksum: number;
}

export interface ParameterOp {
  lookup: Buffer;
  parameters: string;
}

/** What a complete row turns into: its stored current data, and (unless it is incomplete) its ops. */
export interface EvaluatedAfter {
  data: Buffer;
  /** False when the row is incomplete (TOASTed values, or too large): current data is kept, no ops are emitted. */
  complete: boolean;
  puts: PutOp[];
  parameters: ParameterOp[];
}

/** In-memory map key of a stored replica id (never persisted). */
export const cacheKey = (tableId: string, key: Buffer) => `${tableId}\u0000${key.toString('latin1')}`;

/** One queued `save()` with its keys precomputed, and its evaluation when it does not depend on stored data. */
export class RecordOperation {
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

/** Orders in-memory keys (table id, then key bytes: latin1 strings compare byte-wise); lock order for writers. */
export const byCacheKey = (a: [string, unknown], b: [string, unknown]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** A source table id as stored (ids may be ObjectId-like objects from the caller's id generator). */
export function tableIdString(id: unknown): string {
  if (typeof id === 'string') return id;
  const v = id as { toHexString?: () => string };
  return typeof v?.toHexString === 'function' ? v.toHexString() : String(id);
}
