import { sql } from 'drizzle-orm';
import { jsonb, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';
import { schemaFor } from './names.js';

export const INTERNAL_DEFAULT_SCHEMA = 'pgstate';

export interface InternalNames {
  /** Default `pgstate`. */
  schema?: string;
}

/** The migration journal: one row per applied migration per configuration (adapter + schema + table). */
export function migrationJournalTable(names: InternalNames = {}) {
  return schemaFor(names.schema ?? INTERNAL_DEFAULT_SCHEMA).table(
    'migrations',
    {
      config: text('config').notNull(),
      migration: text('migration').notNull(),
      adapter: text('adapter').notNull(),
      schemaName: text('schema_name').notNull(),
      tableName: text('table_name'),
      hash: text('hash').notNull(),
      appliedAt: timestamp('applied_at', { withTimezone: true }).notNull().defaultNow(),
      appliedBy: text('applied_by').notNull().default(sql`current_user`),
    },
    (t) => [primaryKey({ columns: [t.config, t.migration] })],
  );
}

/** Leases for @pgstate/core's lease lock: a row per lock name, taken over once `expires_at` has passed. */
export function leasesTable(names: InternalNames = {}) {
  return schemaFor(names.schema ?? INTERNAL_DEFAULT_SCHEMA).table('leases', {
    name: text('name').primaryKey(),
    owner: text('owner').notNull(),
    acquiredAt: timestamp('acquired_at', { withTimezone: true }).notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    heartbeatAt: timestamp('heartbeat_at', { withTimezone: true }),
    info: jsonb('info'),
  });
}

/** Both internal tables for one internal schema. */
export function internalTables(names: InternalNames = {}) {
  return { migrations: migrationJournalTable(names), leases: leasesTable(names) };
}

export type MigrationJournalTable = ReturnType<typeof migrationJournalTable>;
export type LeasesTable = ReturnType<typeof leasesTable>;
