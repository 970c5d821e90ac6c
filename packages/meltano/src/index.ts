export { MELTANO_URL_PARAMS, meltanoAdapter } from './adapter.js';
export { createMeltanoBucketHandler, type MeltanoBucketOptions } from './bucket.js';
export {
  MELTANO_LAYOUTS,
  type MeltanoConnectionOptions,
  type MeltanoLayout,
  type MeltanoLayoutInput,
  meltanoEnvSetting,
  parseLayout,
  type ResolvedMeltanoConfig,
  resolveMeltanoConfig,
} from './config.js';
export { globToLike, type LikePattern } from './glob.js';
export { type DumpOptions, dumpJson, type JsonObject, type JsonValue, parseJson } from './json.js';
export type { LockOptions, MeltanoLock } from './locks.js';
export {
  deepMerge,
  type ExportedState,
  MAX_STATE_ID_LENGTH,
  type MeltanoState,
  type MeltanoStateView,
  mergedView,
  parseStateInput,
  SINGER_STATE_KEY,
  validateStateId,
} from './state.js';
export {
  type ImportOptions,
  listQuery,
  MeltanoStateStore,
  type MeltanoStoreOptions,
  type WriteOptions,
} from './store.js';
