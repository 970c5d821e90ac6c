import { sql } from 'drizzle-orm';
import { bigint, index, integer, json, text, timestamp } from 'drizzle-orm/pg-core';
import { bytea, schemaFor, tableName } from '../names.js';

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
 * The bytea layout's table (pgstate creates it): one row per blob key, raw bytes in `data`.
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
 * Migration set `pulumi-native` creates it exactly as Pulumi's driver does (`IF NOT EXISTS`, so whichever runs
 * first, the other adopts it), together with pgstate's side tables.
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

/**
 * pgstate's side table next to a Pulumi blob table (either layout): size and MD5 per key, so HEAD and LIST never
 * read the bytes. `updated_at` is the blob row's: a blob row another tool wrote (Pulumi's own driver, a manual
 * UPDATE) has a different `updated_at`, so readers notice the side row is stale and compute the MD5 in SQL.
 */
export function pulumiObjectsTable(names: PulumiTableNames = {}) {
  const table = tableName(names.table ?? PULUMI_DEFAULT_TABLE, KEY_PREFIX_INDEX_SUFFIX.length);
  return schemaFor(names.schema ?? PULUMI_DEFAULT_SCHEMA).table(`${table}_objects`, {
    key: text('key').primaryKey(),
    size: bigint('size', { mode: 'number' }).notNull(),
    md5: text('md5').notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull(),
  });
}

/**
 * pgstate's stack index: one row per checkpoint key (`.pulumi/stacks/P/S.json[.gz|.zst]`) with what `stack ls`
 * shows, written in the checkpoint writer's transaction and checked against the blob row's `updated_at`.
 */
export function pulumiStacksTable(names: PulumiTableNames = {}) {
  const table = tableName(names.table ?? PULUMI_DEFAULT_TABLE, KEY_PREFIX_INDEX_SUFFIX.length);
  return schemaFor(names.schema ?? PULUMI_DEFAULT_SCHEMA).table(`${table}_stacks`, {
    key: text('key').primaryKey(),
    project: text('project').notNull(),
    stack: text('stack').notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull(),
    size: bigint('size', { mode: 'number' }).notNull(),
    lastUpdate: text('last_update'),
    resourceCount: integer('resource_count'),
  });
}

/** `bytea` (pgstate's table; `seed` is its former name, still accepted) or `native` (Pulumi's own table). */
export type PulumiLayout = 'bytea' | 'native' | 'seed';

/**
 * Every table of one Pulumi configuration: the blob table in the given layout plus the two side tables.
 * Migration sets: `pulumi` (bytea layout) and `pulumi-native` (the native table, created the way Pulumi's driver
 * creates it, so either may come first).
 */
export function pulumiTables(names: PulumiTableNames & { layout?: PulumiLayout } = {}) {
  const state = names.layout === 'native' ? pulumiNativeTable(names) : pulumiStateTable(names);
  return { state, objects: pulumiObjectsTable(names), stacks: pulumiStacksTable(names) };
}

export type PulumiObjectsTable = ReturnType<typeof pulumiObjectsTable>;
export type PulumiStacksTable = ReturnType<typeof pulumiStacksTable>;
