/**
 * Storage contract types, structurally compatible with `@powersync/service-core`'s `storage` namespace at
 * upstream commit 06b4092fc (service-core 1.23.2). service-core is not published to npm, so we declare the
 * shapes here; names, argument and result shapes match so a service build can use this module unchanged.
 */
import type {
  BucketDataSource,
  EvaluatedParameters,
  EvaluatedRow,
  HydratedSyncConfig,
  HydrationState,
  ParameterLookupRows,
  ScopedParameterLookup,
  SerializedCompatibilityContext,
  SerializedSyncPlanV1,
  SourceTableRef,
  SqlEventDescriptor,
  SqliteInputRow,
  SqliteRow,
  SyncConfigWithErrors,
  ToastableSqliteRow,
} from '@powersync/service-sync-rules';
import type { SourceTable, TableSnapshotStatus } from './source-table.js';

export type { EvaluatedParameters, EvaluatedRow, ParameterLookupRows, ScopedParameterLookup };

/** op id as used internally; externally (JSON) a decimal string. */
export type InternalOpId = bigint;
export type ProtocolOpId = string;

export enum SyncRuleState {
  PROCESSING = 'PROCESSING',
  ACTIVE = 'ACTIVE',
  STOP = 'STOP',
  TERMINATED = 'TERMINATED',
  ERRORED = 'ERRORED',
}

export const DEFAULT_DOCUMENT_BATCH_LIMIT = 1000;
export const DEFAULT_DOCUMENT_CHUNK_LIMIT_BYTES = 1024 * 1024;

export const STORAGE_VERSION_1 = 1;
export const STORAGE_VERSION_2 = 2;
export const STORAGE_VERSION_3 = 3;
export const LEGACY_STORAGE_VERSION = STORAGE_VERSION_1;
export const CURRENT_STORAGE_VERSION = STORAGE_VERSION_2;

export interface StorageVersionConfig {
  version: number;
  versionedBuckets: boolean;
  softDeleteCurrentData: boolean;
}

export const SUPPORTED_STORAGE_VERSIONS = [STORAGE_VERSION_1, STORAGE_VERSION_2, STORAGE_VERSION_3];

/** As service-core: v2 versions bucket names per stream; v3 (unstable upstream) also soft-deletes current data. */
export const STORAGE_VERSION_CONFIG: Record<number, StorageVersionConfig | undefined> = {
  [STORAGE_VERSION_1]: { version: STORAGE_VERSION_1, versionedBuckets: false, softDeleteCurrentData: false },
  [STORAGE_VERSION_2]: { version: STORAGE_VERSION_2, versionedBuckets: true, softDeleteCurrentData: false },
  [STORAGE_VERSION_3]: { version: STORAGE_VERSION_3, versionedBuckets: true, softDeleteCurrentData: true },
};

// ---- Observers -------------------------------------------------------------------------------------------

export interface ObserverClient<T> {
  registerListener(listener: Partial<T>): () => void;
}

/** The public members of lib-services-framework's `BaseObserver` (what `BucketStorageFactory` extends). */
export interface BaseObserverClient<T> extends ObserverClient<T> {
  iterateListeners(cb: (listener: Partial<T>) => unknown): void;
  iterateAsyncListeners(cb: (listener: Partial<T>) => Promise<unknown>): Promise<void>;
  clearListeners(): void;
}

// ---- Protocol --------------------------------------------------------------------------------------------

export interface OplogEntry {
  op_id: ProtocolOpId;
  op: 'PUT' | 'REMOVE' | 'MOVE' | 'CLEAR';
  object_type?: string;
  object_id?: string;
  data?: string | null;
  checksum: number | bigint;
  subkey?: string;
}

export interface SyncBucketData {
  bucket: string;
  data: OplogEntry[];
  has_more: boolean;
  after: ProtocolOpId;
  next_after: ProtocolOpId;
}

export interface BucketChecksum {
  bucket: string;
  /** 32-bit hash (signed representation, as upstream returns it). */
  checksum: number;
  count: number;
}

export interface PartialChecksum {
  bucket: string;
  partialChecksum: number;
  partialCount: number;
}

export type ChecksumMap = Map<string, BucketChecksum>;
export type PartialOrFullChecksum = PartialChecksum | BucketChecksum;
export type PartialChecksumMap = Map<string, PartialOrFullChecksum>;

export interface FetchPartialBucketChecksum {
  bucket: string;
  start?: InternalOpId;
  end: InternalOpId;
}

// ---- Sync config -----------------------------------------------------------------------------------------

export interface ParseSyncConfigOptions {
  defaultSchema: string;
}

export interface SerializedSyncPlan {
  plan: SerializedSyncPlanV1;
  compatibility: SerializedCompatibilityContext;
  eventDescriptors: Record<string, string[]>;
  errors?: { level: string; message: string; location?: { start_offset: number; end_offset: number } }[];
}

export interface UpdateSyncRulesOptions {
  config: { yaml: string; plan: SerializedSyncPlan | null; parsed: SyncConfigWithErrors };
  lock?: boolean;
  storageVersion?: number;
  defaultSchema?: string;
}

export interface ParsedSyncConfigSet {
  readonly replicationStreamId: number;
  readonly replicationStreamName: string;
  readonly syncConfigs: SyncConfigWithErrors[];
  readonly hydrationState: HydrationState;
  readonly hydratedSyncConfig: HydratedSyncConfig;
}

export interface PersistedSyncConfigStatus {
  readonly id: string;
  readonly replicationStreamId: number;
  readonly state: SyncRuleState;
  readonly snapshot_done?: boolean;
  readonly last_checkpoint_lsn: string | null;
  readonly last_fatal_error?: string | null;
  readonly last_fatal_error_ts?: Date | null;
  readonly last_keepalive_ts?: Date | null;
  readonly last_checkpoint_ts?: Date | null;
}

export interface PersistedSyncConfigContent {
  readonly replicationStreamId: number;
  readonly sync_rules_content: string;
  readonly compiled_plan: SerializedSyncPlan | null;
  readonly replicationStreamName: string;
  readonly storageVersion: number;
  readonly syncConfigId: string | null;
  readonly syncConfigState: SyncRuleState;
  /** The storage's logger, prefixed with `[<stream name>] `. */
  readonly logger: Logger;
  getStorageConfig(): StorageVersionConfig;
  parsed(options: ParseSyncConfigOptions): ParsedSyncConfigSet;
  asUpdateOptions(options?: Omit<UpdateSyncRulesOptions, 'config'>): UpdateSyncRulesOptions;
  getSyncConfigStatus(): Promise<PersistedSyncConfigStatus | null>;
}

export interface ReplicationLock {
  sync_rules_id: number;
  release(): Promise<void>;
}

export interface PersistedReplicationStream {
  readonly replicationStreamId: number;
  readonly replicationJobId: string;
  readonly replicationStreamName: string;
  readonly state: SyncRuleState;
  readonly storageVersion: number;
  readonly syncConfigContent: readonly PersistedSyncConfigContent[];
  readonly current_lock: ReplicationLock | null;
  /** The stream's logger (the storage's, prefixed with `[<stream name>] `); the replication job logs through it. */
  readonly logger: Logger;
  getStorageConfig(): StorageVersionConfig;
  lock(): Promise<ReplicationLock>;
  parsed(options: ParseSyncConfigOptions): ParsedSyncConfigSet;
}

// ---- Factory ---------------------------------------------------------------------------------------------

export interface StorageMetrics {
  operations_size_bytes: number;
  parameters_size_bytes: number;
  replication_size_bytes: number;
}

export interface BucketStorageSystemIdentifier {
  id: string;
  type: string;
}

export interface ResolvedSyncConfig {
  content: PersistedSyncConfigContent;
  replicationStream: PersistedReplicationStream;
  storage: SyncRulesBucketStorage;
}

export interface GetIntanceOptions {
  skipLifecycleHooks?: boolean;
}

export interface BucketStorageFactoryListener {
  syncStorageCreated: (storage: SyncRulesBucketStorage) => void;
  replicationEvent: (event: ReplicationEventPayload) => void;
}

export interface BucketStorageFactory extends BaseObserverClient<BucketStorageFactoryListener>, AsyncDisposable {
  configureSyncRules(
    options: UpdateSyncRulesOptions,
  ): Promise<{ updated: boolean; persisted_sync_rules?: PersistedReplicationStream; lock?: ReplicationLock }>;
  getInstance(replicationStream: PersistedReplicationStream, options?: GetIntanceOptions): SyncRulesBucketStorage;
  updateSyncRules(options: UpdateSyncRulesOptions): Promise<PersistedReplicationStream>;
  restartReplication(replicationStreamId: number): Promise<void>;
  getActiveSyncConfig(): Promise<ResolvedSyncConfig | null>;
  getDeployingSyncConfig(): Promise<ResolvedSyncConfig | null>;
  getReplicatingReplicationStreams(): Promise<PersistedReplicationStream[]>;
  getStoppedReplicationStreams(): Promise<PersistedReplicationStream[]>;
  getStorageMetrics(): Promise<StorageMetrics>;
  getPowerSyncInstanceId(): Promise<string>;
  getSystemIdentifier(): Promise<BucketStorageSystemIdentifier>;
}

// ---- Per-stream storage ----------------------------------------------------------------------------------

export interface ReplicationCheckpoint {
  readonly checkpoint: InternalOpId;
  readonly lsn: string | null;
  getParameterSets(lookups: ScopedParameterLookup[], limit: number): Promise<ParameterLookupRows[]>;
}

export interface BucketDataRequest {
  bucket: string;
  start: InternalOpId;
  source: BucketDataSource;
}

export interface BucketChecksumRequest {
  bucket: string;
  source: BucketDataSource;
}

export type BucketRequestHint = 'bulk' | 'incremental';

export interface BucketChecksumOptions {
  requestHint?: BucketRequestHint;
}

export interface BucketDataBatchOptions {
  requestHint?: BucketRequestHint;
  /** Rows per batch (default 1000). */
  limit?: number;
  /** A lower bound: a chunk is returned as soon as it reaches this size (default 1 MiB). */
  chunkLimitBytes?: number;
}

export interface SyncBucketDataChunk {
  chunkData: SyncBucketData;
  targetOp: InternalOpId | null;
}

export interface ReplicationStreamStatus {
  resumeLsn: string | null;
  snapshotDone: boolean;
}

export interface CheckpointChanges {
  updatedDataBuckets: Set<string>;
  invalidateDataBuckets: boolean;
  updatedParameterLookups: Set<string>;
  invalidateParameterBuckets: boolean;
}

export const CHECKPOINT_INVALIDATE_ALL: CheckpointChanges = {
  updatedDataBuckets: new Set<string>(),
  invalidateDataBuckets: true,
  updatedParameterLookups: new Set<string>(),
  invalidateParameterBuckets: true,
};

export interface GetCheckpointChangesOptions {
  lastCheckpoint: ReplicationCheckpoint;
  nextCheckpoint: ReplicationCheckpoint;
}

export interface WatchWriteCheckpointOptions {
  user_id: string;
  signal: AbortSignal;
}

export interface WriteCheckpoint {
  base: ReplicationCheckpoint;
  writeCheckpoint: InternalOpId | null;
}

export interface StorageCheckpointUpdate extends WriteCheckpoint {
  update: CheckpointChanges;
}

export interface ClearStorageOptions {
  signal?: AbortSignal;
}

export interface CleanupStoppedSyncConfigsOptions {
  signal?: AbortSignal;
  logger?: Logger;
  defaultSchema: string;
  sourceConnectionTag: string;
}

export interface CleanupStoppedSyncConfigsResult {
  stoppedSyncConfigsRemoved: number;
  bucketDataCollectionsDropped: number;
  parameterIndexCollectionsDropped: number;
  bucketStateDocumentsDeleted: number;
  sourceRecordCollectionsDropped: number;
  sourceTablesUpdated: number;
  sourceTablesDeleted: number;
}

export interface TerminateOptions extends ClearStorageOptions {
  clearStorage: boolean;
}

export interface CompactOptions {
  memoryLimitMB?: number;
  maxOpId?: InternalOpId;
  compactBuckets?: string[];
  compactParameterData?: boolean;
  clearBatchLimit?: number;
  moveBatchLimit?: number;
  moveBatchQueryLimit?: number;
  moveBatchByteLimit?: number;
  minBucketChanges?: number;
  minChangeRatio?: number;
  /** Internal/testing use: cache size for compacting parameters. */
  compactParameterCacheLimit?: number;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface PopulateChecksumCacheOptions {
  maxOpId?: InternalOpId;
  minBucketChanges?: number;
  signal?: AbortSignal;
}

export interface PopulateChecksumCacheResults {
  buckets: number;
}

export interface StorageHooks {
  beforeBatchFlush?: (batch: BucketStorageBatch) => Promise<void>;
  afterBatchFlush?: (batch: BucketStorageBatch) => Promise<void>;
}

export type BucketStorageMarkRecordUnavailable = (record: SaveUpdate) => void;

export interface CreateWriterOptions extends ParseSyncConfigOptions {
  zeroLSN: string;
  storeCurrentData: boolean;
  skipExistingRows?: boolean;
  markRecordUnavailable?: BucketStorageMarkRecordUnavailable;
  hooks?: StorageHooks;
  /** Upstream passes a PerformanceTracer and a winston Logger; both are accepted and the logger is used. */
  tracer?: unknown;
  logger?: Logger;
}

/** The subset of a winston-style logger we call (the service's `logger` from lib-services-framework fits). */
export interface Logger {
  info(message: string, ...meta: unknown[]): unknown;
  warn(message: string, ...meta: unknown[]): unknown;
  error(message: string, ...meta: unknown[]): unknown;
  debug(message: string, ...meta: unknown[]): unknown;
  /** winston's child logger; `{prefix}` is what the service's log format puts before the message. */
  child?(meta: { prefix?: string }): Logger;
}

export interface SyncRulesBucketStorageListener {
  batchStarted: (batch: BucketStorageBatch) => void;
}

export enum WriteCheckpointMode {
  CUSTOM = 'custom',
  MANAGED = 'managed',
}

export interface ManagedWriteCheckpointOptions {
  user_id: string;
  heads: Record<string, string>;
}

export type SyncStorageLastWriteCheckpointFilters = { user_id: string } | ManagedWriteCheckpointOptions;

export interface BatchedCustomWriteCheckpointOptions {
  user_id: string;
  checkpoint: bigint;
}

export interface SyncRulesBucketStorage extends ObserverClient<SyncRulesBucketStorageListener> {
  readonly replicationStreamId: number;
  readonly replicationStreamName: string;
  readonly storageConfig: StorageVersionConfig;
  readonly factory: BucketStorageFactory;
  readonly logger: Logger;
  readonly writeCheckpointMode: WriteCheckpointMode;
  setWriteCheckpointMode(mode: WriteCheckpointMode): void;
  createManagedWriteCheckpoints(checkpoints: ManagedWriteCheckpointOptions[]): Promise<Map<string, bigint>>;
  lastWriteCheckpoint(filters: SyncStorageLastWriteCheckpointFilters): Promise<bigint | null>;

  createWriter(options: CreateWriterOptions): Promise<BucketStorageBatch>;
  startBatch(
    options: CreateWriterOptions,
    callback: (batch: BucketStorageBatch) => Promise<void>,
  ): Promise<FlushedResult | null>;
  getParsedSyncConfigSet(options: ParseSyncConfigOptions): ParsedSyncConfigSet;
  getParsedSyncRules(options: ParseSyncConfigOptions): HydratedSyncConfig;
  terminate(options?: TerminateOptions): Promise<void>;
  getStatus(): Promise<ReplicationStreamStatus>;
  clear(options?: ClearStorageOptions): Promise<void>;
  reportError(e: unknown): Promise<void>;
  compact(options?: CompactOptions): Promise<void>;
  populatePersistentChecksumCache(options: PopulateChecksumCacheOptions): Promise<PopulateChecksumCacheResults>;
  getCheckpoint(): Promise<ReplicationCheckpoint>;
  getCheckpointChanges(options: GetCheckpointChangesOptions): Promise<CheckpointChanges>;
  watchCheckpointChanges(options: WatchWriteCheckpointOptions): AsyncIterable<StorageCheckpointUpdate>;
  getBucketDataBatch(
    checkpoint: ReplicationCheckpoint,
    dataBuckets: BucketDataRequest[],
    options?: BucketDataBatchOptions,
  ): AsyncIterable<SyncBucketDataChunk>;
  getChecksums(
    checkpoint: ReplicationCheckpoint,
    buckets: BucketChecksumRequest[],
    options?: BucketChecksumOptions,
  ): Promise<ChecksumMap>;
  clearChecksumCache(): void;
  /** Optional in the contract; not implemented here (nor by PowerSync's own Postgres storage). */
  cleanupStoppedSyncConfigs?(options: CleanupStoppedSyncConfigsOptions): Promise<CleanupStoppedSyncConfigsResult>;
}

// ---- Writer ----------------------------------------------------------------------------------------------

/** Any BSON-serializable value; the Postgres replicator passes a BSON UUID. */
// biome-ignore lint/suspicious/noExplicitAny: upstream's ReplicaId is `any` on purpose
export type ReplicaId = any;

export enum SaveOperationTag {
  INSERT = 'insert',
  UPDATE = 'update',
  DELETE = 'delete',
}

export type SaveOp = 'insert' | 'update' | 'delete';

export interface SaveInsert {
  tag: SaveOperationTag.INSERT | 'insert';
  sourceTable: SourceTable;
  before?: undefined;
  beforeReplicaId?: undefined;
  after: SqliteRow;
  afterReplicaId: ReplicaId;
}

export interface SaveUpdate {
  tag: SaveOperationTag.UPDATE | 'update';
  sourceTable: SourceTable;
  /** Only present when the replica id changed; replica identity columns only. */
  before?: SqliteRow;
  beforeReplicaId?: ReplicaId;
  /** `undefined` column = unchanged TOAST value, merged from current data. */
  after: ToastableSqliteRow;
  afterReplicaId: ReplicaId;
}

export interface SaveDelete {
  tag: SaveOperationTag.DELETE | 'delete';
  sourceTable: SourceTable;
  before?: SqliteRow;
  beforeReplicaId: ReplicaId;
  after?: undefined;
  afterReplicaId?: undefined;
}

export type SaveOptions = SaveInsert | SaveUpdate | SaveDelete;

export interface FlushedResult {
  flushed_op: InternalOpId;
}

export interface CheckpointResult {
  checkpointBlocked: boolean;
  checkpointCreated: boolean;
}

export interface BatchBucketFlushOptions {
  oldestUncommittedChange?: Date | null;
}

export interface BucketBatchCommitOptions extends BatchBucketFlushOptions {
  createEmptyCheckpoints?: boolean;
}

export interface EventData {
  op: SaveOp;
  before?: SqliteInputRow;
  after?: SqliteInputRow;
}

export interface ReplicationEventPayload {
  batch: BucketStorageBatch;
  data: EventData;
  event: SqlEventDescriptor;
  table: SourceTable;
}

export interface BucketBatchStorageListener {
  replicationEvent: (payload: ReplicationEventPayload) => void;
}

export interface ColumnDescriptor {
  name: string;
  type?: string;
  typeId?: number;
}

export interface SourceEntityDescriptor extends SourceTableRef {
  objectId: number | string | undefined;
  schema: string;
  name: string;
  replicaIdColumns: ColumnDescriptor[];
  sendsCompleteRows?: boolean;
}

export interface ResolveTablesOptions {
  connection_id: number;
  source: SourceEntityDescriptor;
  /** Tests only: stable ids. Strings are used as-is; other values via `toHexString()`/`String()`. */
  idGenerator?: () => unknown;
  parsedSyncConfig?: ParsedSyncConfigSet;
}

export interface ResolveTablesResult {
  tables: SourceTable[];
  dropTables: SourceTable[];
}

export interface BucketStorageBatch extends ObserverClient<BucketBatchStorageListener>, AsyncDisposable {
  dispose(): Promise<void>;
  last_flushed_op: InternalOpId | null;
  readonly skipExistingRows: boolean;
  save(record: SaveOptions): Promise<FlushedResult | null>;
  truncate(sourceTables: SourceTable[]): Promise<FlushedResult | null>;
  drop(sourceTables: SourceTable[]): Promise<FlushedResult | null>;
  flush(options?: BatchBucketFlushOptions): Promise<FlushedResult | null>;
  commit(lsn: string, options?: BucketBatchCommitOptions): Promise<CheckpointResult>;
  keepalive(lsn: string): Promise<CheckpointResult>;
  setResumeLsn(lsn: string): Promise<void>;
  resumeFromLsn: string | null;
  markTableSnapshotDone(tables: SourceTable[], no_checkpoint_before_lsn?: string): Promise<SourceTable[]>;
  markTableSnapshotRequired(table: SourceTable): Promise<void>;
  markAllSnapshotDone(no_checkpoint_before_lsn: string): Promise<void>;
  markSnapshotDone(no_checkpoint_before_lsn: string, options?: { throwOnConflict?: boolean }): Promise<void>;
  updateTableProgress(table: SourceTable, progress: Partial<TableSnapshotStatus>): Promise<SourceTable>;
  getSourceTableStatus(table: SourceTable): Promise<SourceTable | null>;
  resolveTables(options: ResolveTablesOptions): Promise<ResolveTablesResult>;
  addCustomWriteCheckpoint(checkpoint: BatchedCustomWriteCheckpointOptions): void;
}

// ---- Provider and module ---------------------------------------------------------------------------------

// Client connection analytics: @powersync/service-types `event_types` at upstream commit 06b4092fc.

/** `event_types.ClientConnectionBucketData` */
export interface ClientConnectionBucketData {
  client_id: string;
  user_id: string;
  user_agent?: string;
  jwt_exp: Date;
  connected_at: Date;
  /** SDK parsed from the user agent. */
  sdk: string;
}

/** `event_types.ClientDisconnectionEventData` */
export interface ClientDisconnectionEventData {
  client_id: string;
  user_id: string;
  user_agent?: string;
  jwt_exp?: Date;
  connected_at: Date;
  disconnected_at: Date;
}

/** `event_types.ClientConnectionReportResponse` */
export interface ClientConnectionReportResponse {
  users: number;
  sdks: { sdk: string; users: number; clients: number }[];
}

/** `event_types.ClientConnectionReportRequest` */
export interface ClientConnectionReportRequest {
  start: Date;
  end: Date;
}

/** `event_types.ClientConnectionAnalyticsRequest` */
export interface ClientConnectionAnalyticsRequest {
  client_id?: string;
  user_id?: string;
  cursor?: string;
  limit?: number;
  date_range?: ClientConnectionReportRequest;
}

/** `event_types.ClientConnection` */
export interface ClientConnection {
  id?: string;
  sdk: string;
  user_agent: string;
  client_id: string;
  user_id: string;
  jwt_exp?: Date;
  connected_at: Date;
  disconnected_at?: Date;
}

/** `event_types.PaginatedResponse` */
export interface PaginatedResponse<T> {
  items: T[];
  count: number;
  cursor?: string;
  more: boolean;
}

/** `event_types.DeleteOldConnectionData` */
export interface DeleteOldConnectionData {
  date: Date;
}

export interface ReportStorage extends AsyncDisposable {
  reportClientConnection(data: ClientConnectionBucketData): Promise<void>;
  reportClientDisconnection(data: ClientDisconnectionEventData): Promise<void>;
  getConnectedClients(): Promise<ClientConnectionReportResponse>;
  getClientConnectionReports(data: ClientConnectionReportRequest): Promise<ClientConnectionReportResponse>;
  getGeneralClientConnectionAnalytics(
    data: ClientConnectionAnalyticsRequest,
  ): Promise<PaginatedResponse<ClientConnection>>;
  deleteOldConnectionData(data: DeleteOldConnectionData): Promise<void>;
}

export interface ActiveStorage {
  storage: BucketStorageFactory;
  reportStorage: ReportStorage;
  shutDown(): Promise<void>;
  tearDown(): Promise<boolean>;
  onFatalError?(callback: (error: Error) => void): void;
}

/** The parts of service-core's ResolvedPowerSyncConfig a storage provider reads. */
export interface GetStorageOptions {
  resolvedConfig: {
    storage: { type: string; [key: string]: unknown };
    slot_name_prefix?: string;
    api_parameters?: { bucket_count_cache_ttl_minutes?: number };
    [key: string]: unknown;
  };
}

export interface StorageProvider {
  type: string;
  getStorage(options: GetStorageOptions): Promise<ActiveStorage>;
}

// ---- Migrations: lib-services-framework `migrations` / `locks` and service-core `migrations` at 06b4092fc ----

export enum Direction {
  Up = 'up',
  Down = 'down',
}

export type MigrationFunction<Context extends {} | undefined = undefined> = (context: Context) => Promise<void>;

export type Migration<Context extends {} | undefined = undefined> = {
  name: string;
  up: MigrationFunction<Context>;
  down: MigrationFunction<Context>;
};

export type ExecutedMigration = {
  name: string;
  direction: Direction;
  timestamp: Date;
};

export type MigrationState = {
  last_run: string;
  log: ExecutedMigration[];
};

export type MigrationStore = {
  init?: () => Promise<void>;
  load: () => Promise<MigrationState | undefined>;
  save: (state: MigrationState) => Promise<void>;
  /** Resets the migration store state (tests). */
  clear: () => Promise<void>;
};

export type MigrationAgentGenerics = {
  MIGRATION_CONTEXT?: {};
};

export type MigrationParams<Generics extends MigrationAgentGenerics = MigrationAgentGenerics> = {
  count?: number;
  direction: Direction;
  migrationContext?: Generics['MIGRATION_CONTEXT'];
  logger?: Logger;
};

export type RunMigrationParams<Generics extends MigrationAgentGenerics = MigrationAgentGenerics> = MigrationParams & {
  migrations: Migration<Generics['MIGRATION_CONTEXT']>[];
  maxLockWaitMs?: number;
  logger?: Logger;
};

export type LockAcquireOptions = {
  /** Optionally retry and wait for the lock to be acquired. */
  max_wait_ms?: number;
};

export type LockHandle = {
  refresh(): Promise<void>;
  release(): Promise<void>;
};

export type LockCallback = (refresh: () => Promise<void>) => Promise<void>;

export type LockManager = {
  init?(): Promise<void>;
  /** null when the lock is in use and no `max_wait_ms` was given or it elapsed. */
  acquire(options?: LockAcquireOptions): Promise<LockHandle | null>;
  /** Acquires, runs the handler, releases. */
  lock(handler: LockCallback, options?: LockAcquireOptions): Promise<void>;
};

/** service-core's `PowerSyncMigrationContext` (the service context stays opaque here). */
export interface PowerSyncMigrationContext {
  service_context: unknown;
}

export interface PowerSyncMigrationGenerics extends MigrationAgentGenerics {
  MIGRATION_CONTEXT: PowerSyncMigrationContext;
}

/**
 * The public surface of lib-services-framework's `AbstractMigrationAgent` (service-core's
 * `AbstractPowerSyncMigrationAgent`), which the service's `MigrationManager` calls: `run` at startup (auto-migration)
 * and from `migrate up|down`, `resetStore` in upstream's shared migration tests.
 */
export interface MigrationAgent<Generics extends MigrationAgentGenerics = PowerSyncMigrationGenerics>
  extends AsyncDisposable {
  readonly store: MigrationStore;
  readonly locks: LockManager;
  loadInternalMigrations(): Promise<Migration<Generics['MIGRATION_CONTEXT']>[]>;
  run(params: RunMigrationParams<Generics>): Promise<void>;
  resetStore(): Promise<void>;
}

// ---- Module: service-core `modules` at 06b4092fc ---------------------------------------------------------------

/** service-core's `TearDownOptions`. */
export interface TearDownOptions {
  /** If required, tear down any configuration/state for these replication streams. */
  replicationStreams?: PersistedReplicationStream[];
  /** @deprecated Use replicationStreams. */
  syncRules?: PersistedReplicationStream[];
}

/** The parts of service-core's `ServiceContextContainer` a storage module touches. */
export interface StorageModuleContext {
  storageEngine: { registerProvider(provider: StorageProvider): void };
  configuration: { storage: { type: string; [key: string]: unknown } };
  migrations?: { registerMigrationAgent(agent: MigrationAgent): void };
}

/** The public shape of service-core's `modules.AbstractModule`, as the service's ModuleManager uses it. */
export interface StorageModule {
  readonly name: string;
  initialize(context: StorageModuleContext): Promise<void>;
  teardown(options: TearDownOptions): Promise<void>;
}

export interface TestStorageOptions {
  dropAll?: boolean;
  doNotClear?: boolean;
}

export type TestStorageFactory = (options?: TestStorageOptions) => Promise<BucketStorageFactory>;

export interface TestStorageConfig {
  factory: TestStorageFactory;
  tableIdStrings: boolean;
  storageVersion?: number;
  compressedBucketStorage?: boolean;
}
