export {
  mapError,
  PULUMI_URL_PARAMS,
  PulumiBlobStore,
  type PulumiBlobStoreOptions,
  parseStackKey,
  type StackIndexRow,
} from './blob-store.js';
export { createPulumiBucketHandler } from './bucket-handler.js';
export { compareKeys, MAX_KEY_BYTES, prefixUpperBound, validateKey, validatePrefix } from './keys.js';
export { type CheckpointSummary, type Compression, decompressBytes, summarizeCheckpoint } from './summary.js';
export {
  DEFAULT_TABLE,
  type PulumiLayout,
  type PulumiTableNames,
  pulumiTableNames,
  pulumiTablesDdl,
} from './tables.js';
