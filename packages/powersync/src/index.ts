export { powersyncAdapter } from './adapter.js';
export { PgStateBucketBatch } from './batch/bucket-batch.js';
export { checkpointChannel } from './batch/checkpoints.js';
export {
  type BatchLimits,
  type BatchLimitsInput,
  DEFAULT_BATCH_LIMITS,
  type NormalizedStorageConfig,
  normalizeStorageConfig,
  PGSTATE_STORAGE_TYPE,
  type PgStateStorageConfig,
} from './config.js';
export { namesFor, StorageDb } from './db.js';
export {
  addChecksums,
  hashData,
  hashDelete,
  ID_NAMESPACE,
  replicaIdToSubkey,
  serializeReplicaId,
  uuidForRow,
} from './encoding.js';
export { PgStateBucketStorageFactory, type PgStateBucketStorageFactoryOptions } from './factory.js';
export { type ConsoleLoggerOptions, consoleLogger, defaultLogger, prefixedLogger } from './logger.js';
export {
  DEFAULT_MAX_LOCK_WAIT_MS,
  PgStateMigrationAgent,
  type PgStateMigrationAgentOptions,
  PgStateMigrationLocks,
  PgStateMigrationStore,
  STORAGE_MIGRATION_NAME,
} from './migrations.js';
export {
  PgStateStorageModule,
  PgStateStorageProvider,
  type StorageModuleContext,
} from './module.js';
export {
  acquireLease,
  type Lease,
  PgStateReplicationStream,
  PgStateSyncConfigContent,
  ReplicationStreamLockedError,
} from './persisted.js';
export { PgStateReportStorage } from './report-storage.js';
export { SourceTable, type SourceTableId, type SourceTableOptions, type TableSnapshotStatus } from './source-table.js';
export { ParameterSetLimitExceededError, PgStateSyncRulesStorage } from './storage.js';
export { type PgStateTestSetupOptions, pgstateTestSetup } from './testing.js';
export * from './types.js';

/** Default export: the storage module, for `import storageModule from '@pgstate/powersync'` style entries. */
import { PgStateStorageModule } from './module.js';
export const module = new PgStateStorageModule();
export {
  type ActiveCheckpointState,
  type CheckpointNotificationMode,
  type CheckpointNotificationOptions,
  CheckpointNotifier,
  type CheckpointNotifierStats,
  checkpointNotifier,
  configureCheckpointNotifications,
  watchActiveCheckpoint,
} from './checkpoint-notifications.js';
export { type ClearProgress, type ClearResult, type ClearStreamOptions, clearReplicationStream } from './clear.js';
export {
  type CompactResult,
  type CompactStreamOptions,
  compactParameters,
  compactReplicationStream,
} from './compact.js';
export { syncRulesFromYaml } from './sync-config.js';
export {
  createManagedWriteCheckpoints,
  DEFAULT_HEAD_CONNECTION,
  lastCustomWriteCheckpoint,
  lastManagedWriteCheckpoint,
} from './write-checkpoints.js';
