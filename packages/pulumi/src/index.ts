export { pulumiAdapter, pulumiStoreOptions } from './adapter.js';
export {
  BlobTransaction,
  lockDirOf,
  mapError,
  PULUMI_URL_PARAMS,
  PulumiBlobStore,
  type PulumiBlobStoreOptions,
  parseStackKey,
  type StackIndexRow,
} from './blob-store.js';
export { createPulumiBucketHandler } from './bucket-handler.js';
export { compareKeys, MAX_KEY_BYTES, prefixUpperBound, validateKey, validatePrefix } from './keys.js';
export { exportDiyDirectory, importDiyDirectory, type TransferOptions, type TransferResult } from './migrate-dir.js';
export {
  detectCompression,
  type HistoryEntry,
  type LockHolder,
  ORGANIZATION,
  type PruneOptions,
  type PruneResult,
  PulumiStateStore,
  type PulumiStateStoreOptions,
  type StackLock,
  type StackRef,
  type StackSummary,
  type TransferProgress,
  type UpdateInfo,
  validateName,
} from './state-store.js';
export { type CheckpointSummary, type Compression, decompressBytes, summarizeCheckpoint } from './summary.js';
export {
  DEFAULT_SCHEMA,
  DEFAULT_TABLE,
  type PulumiLayout,
  type PulumiLayoutInput,
  type PulumiTableNames,
  pulumiLayout,
  pulumiTableNames,
} from './tables.js';
