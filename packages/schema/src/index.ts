export * from './gateway/tables.js';
export * from './internal.js';
export * from './meltano/tables.js';
export { MELTANO_LAYOUTS, type MeltanoLayoutName } from './meltano/target.js';
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
  assertLayout,
  assertMigrated,
  grantRuntimeAccess,
  MIGRATION_LOCK_KEY,
  migrate,
  migrationStatus,
  runtimeAccessSql,
} from './migrate.js';
export { bytea, MAX_IDENTIFIER_BYTES, SCHEMA_PLACEHOLDER, schemaFor, TABLE_PLACEHOLDER } from './names.js';
export * from './powersync/tables.js';
export * from './pulumi/tables.js';
export { PULUMI_LAYOUTS, type PulumiLayoutName } from './pulumi/target.js';
export type { MigrationTarget, ResolvedTarget, SchemaLayout, TargetKind } from './targets.js';
export { resolveTarget, TARGET_KINDS } from './targets.js';
