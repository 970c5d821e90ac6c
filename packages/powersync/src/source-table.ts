import type {
  BucketDataSource,
  BucketDefinitionId,
  ParameterIndexId,
  ParameterIndexLookupCreator,
  SourceTableRef,
} from '@powersync/service-sync-rules';
import type { ObjectId } from 'bson';
import type { ColumnDescriptor } from './types.js';

/**
 * As service-core: the id's format is the storage's. This storage's ids are strings (like PowerSync's own Postgres
 * storage); an ObjectId (what a caller's `idGenerator` may produce) is stored as its hex string.
 */
export type SourceTableId = string | ObjectId;

export interface SourceTableOptions {
  id: SourceTableId;
  ref: SourceTableRef;
  objectId: number | string | undefined;
  replicaIdColumns: ColumnDescriptor[];
  snapshotComplete: boolean;
  bucketDataSources: BucketDataSource[];
  parameterLookupSources: ParameterIndexLookupCreator[];
  bucketDataSourceIds?: Set<BucketDefinitionId>;
  parameterLookupSourceIds?: Set<ParameterIndexId>;
}

export interface TableSnapshotStatus {
  totalEstimatedCount: number;
  replicatedCount: number;
  lastKey: Uint8Array | null;
}

function escapeIdentifier(identifier: string): string {
  return `"${identifier.replace(/"/g, '""').replace(/\./g, '"."')}"`;
}

/** A resolved source table (same shape and defaults as service-core's `SourceTable`). */
export class SourceTable {
  static readonly DEFAULT_TAG = 'default';

  syncData = true;
  syncParameters = true;
  syncEvent = true;
  storeCurrentData = true;
  snapshotStatus: TableSnapshotStatus | undefined = undefined;
  snapshotComplete: boolean;

  constructor(readonly options: SourceTableOptions) {
    this.snapshotComplete = options.snapshotComplete;
  }

  get id(): SourceTableId {
    return this.options.id;
  }
  get objectId() {
    return this.options.objectId;
  }
  get schema() {
    return this.options.ref.schema;
  }
  get name() {
    return this.options.ref.name;
  }
  get ref() {
    return this.options.ref;
  }
  get replicaIdColumns() {
    return this.options.replicaIdColumns;
  }
  get bucketDataSources() {
    return this.options.bucketDataSources;
  }
  get parameterLookupSources() {
    return this.options.parameterLookupSources;
  }
  get bucketDataSourceIds() {
    return this.options.bucketDataSourceIds;
  }
  get parameterLookupSourceIds() {
    return this.options.parameterLookupSourceIds;
  }
  /** `"schema"."name"`, for logs. */
  get qualifiedName() {
    return `${escapeIdentifier(this.ref.schema)}.${escapeIdentifier(this.ref.name)}`;
  }
  get syncAny() {
    return this.syncData || this.syncParameters || this.syncEvent;
  }

  clone(): SourceTable {
    const copy = new SourceTable({
      ...this.options,
      snapshotComplete: this.snapshotComplete,
      bucketDataSourceIds: this.bucketDataSourceIds == null ? undefined : new Set(this.bucketDataSourceIds),
      parameterLookupSourceIds:
        this.parameterLookupSourceIds == null ? undefined : new Set(this.parameterLookupSourceIds),
    });
    copy.syncData = this.syncData;
    copy.syncParameters = this.syncParameters;
    copy.syncEvent = this.syncEvent;
    copy.storeCurrentData = this.storeCurrentData;
    copy.snapshotStatus = this.snapshotStatus;
    return copy;
  }

  formatSnapshotProgress(): string {
    if (this.snapshotComplete || this.snapshotStatus == null) return '-';
    if (this.snapshotStatus.totalEstimatedCount < 0) return `${this.snapshotStatus.replicatedCount}/?`;
    return `${this.snapshotStatus.replicatedCount}/~${this.snapshotStatus.totalEstimatedCount}`;
  }
}
