import { sql } from 'drizzle-orm';
import { index, json, text, timestamp } from 'drizzle-orm/pg-core';
import { bytea, schemaFor, tableName } from './names.js';

export interface PulumiTableNames {
  /** Default `public`. */
  schema?: string;
  /** Pulumi's `?table=` parameter; default `pulumi_state`. */
  table?: string;
}

export const PULUMI_DEFAULT_SCHEMA = 'public';
export const PULUMI_DEFAULT_TABLE = 'pulumi_state';
const KEY_PREFIX_INDEX_SUFFIX = '_key_prefix_idx';

/**
 * The seed's table (pgstate creates it): one row per blob key, raw bytes in `data`.
 * `text_pattern_ops` makes `LIKE 'prefix%'` listings use the index under any collation.
 */
export function pulumiStateTable(names: PulumiTableNames = {}) {
  const table = tableName(names.table ?? PULUMI_DEFAULT_TABLE, KEY_PREFIX_INDEX_SUFFIX.length);
  return schemaFor(names.schema ?? PULUMI_DEFAULT_SCHEMA).table(
    table,
    {
      key: text('key').primaryKey(),
      data: bytea('data').notNull(),
      updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    },
    (t) => [index(`${table}${KEY_PREFIX_INDEX_SUFFIX}`).using('btree', sql`${t.key} text_pattern_ops`)],
  );
}

/**
 * The table Pulumi's own `postgres://` backend (CLI >= 3.176) creates: `data` is JSON `{"data":"<base64>"}`.
 * pgstate never creates or migrates it (no migration set); adapters only read and write its rows.
 */
export function pulumiNativeTable(names: PulumiTableNames = {}) {
  const table = tableName(names.table ?? PULUMI_DEFAULT_TABLE, KEY_PREFIX_INDEX_SUFFIX.length);
  return schemaFor(names.schema ?? PULUMI_DEFAULT_SCHEMA).table(
    table,
    {
      key: text('key').primaryKey(),
      data: json('data').$type<{ data: string }>().notNull(),
      updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    },
    (t) => [index(`${table}${KEY_PREFIX_INDEX_SUFFIX}`).using('btree', sql`${t.key} text_pattern_ops`)],
  );
}

export type PulumiStateTable = ReturnType<typeof pulumiStateTable>;
export type PulumiNativeTable = ReturnType<typeof pulumiNativeTable>;
