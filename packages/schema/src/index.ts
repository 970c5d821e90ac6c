export * from './gateway/tables.js';
export * from './internal.js';
export * from './meltano.js';
export type {
  AppliedMigration,
  ConfigStatus,
  ConnectionSource,
  MigrateOptions,
  MigrateResult,
  MigrationOptions,
  MigrationStatus,
  PlannedMigration,
} from './migrate.js';
export {
  assertMigrated,
  grantRuntimeAccess,
  MIGRATION_LOCK_KEY,
  migrate,
  migrationStatus,
  runtimeAccessSql,
} from './migrate.js';
export { bytea, MAX_IDENTIFIER_BYTES, SCHEMA_PLACEHOLDER, schemaFor, TABLE_PLACEHOLDER } from './names.js';
export * from './powersync.js';
export * from './pulumi.js';
export type { MigrationTarget, ResolvedTarget } from './targets.js';
export { POWERSYNC_DEFAULT_SCHEMA, resolveTarget } from './targets.js';
