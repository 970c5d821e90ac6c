import { PgStateError, validateIdentifier } from '@pgstate/core';
import { customType, PgSchema } from 'drizzle-orm/pg-core';

/**
 * Placeholders the committed migrations are generated with. The migrator swaps them for the configured names, so
 * one set of SQL files serves every schema/table configuration (drizzle-kit hardcodes names into its SQL).
 */
export const SCHEMA_PLACEHOLDER = '__PGSTATE_SCHEMA__';
export const TABLE_PLACEHOLDER = '__PGSTATE_TABLE__';

/** PostgreSQL's limit; longer names are silently truncated, which could make two configurations collide. */
export const MAX_IDENTIFIER_BYTES = 63;

/**
 * A Drizzle schema object for any validated name. `pgSchema('public')` throws in drizzle 0.45, but qualifying every
 * table (also in `public`) keeps queries independent of the session's search_path (PgBouncer, `options=`).
 */
export function schemaFor(name: string): PgSchema<string> {
  return new PgSchema(validateIdentifier(name, 'schema name'));
}

/** Validates a table name, and that names derived from it (index names) still fit in 63 bytes. */
export function tableName(name: string, longestSuffix = 0): string {
  validateIdentifier(name, 'table name');
  if (Buffer.byteLength(name) + longestSuffix > MAX_IDENTIFIER_BYTES) {
    throw new PgStateError(
      'INVALID_IDENTIFIER',
      `The table name "${name}" is too long: its index names would exceed ${MAX_IDENTIFIER_BYTES} bytes.`,
      { fix: `Use a table name of at most ${MAX_IDENTIFIER_BYTES - longestSuffix} bytes.` },
    );
  }
  return name;
}

/** `bytea` as a Node Buffer; drizzle-orm 0.45 has no built-in bytea column. */
export const bytea = customType<{ data: Buffer; driverData: Buffer }>({
  dataType() {
    return 'bytea';
  },
});
