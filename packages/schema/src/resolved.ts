import { type AdapterLayout, type DetectedLayout, findLayout } from '@pgstate/core';
import type pg from 'pg';
import { SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER } from './names.js';

/** A target with defaults filled in and names validated. */
export interface ResolvedTarget {
  /** Folder under `drizzle/` holding this target's migrations. */
  set: string;
  /** The journal's adapter column: the set's first name (`pulumi-native`, `meltano-seed`, ...). */
  adapter: string;
  /** The adapter this configuration belongs to, as targets name it (`pulumi`, `meltano`, ...). */
  owner?: string;
  /** Canonical layout name, for adapters with several layouts. */
  layout: string | null;
  schema: string;
  table: string | null;
  /** Journal key: the configuration the applied migrations belong to. */
  config: string;
  /** Placeholder -> configured name, applied to every identifier of the committed SQL. */
  substitutions: ReadonlyArray<readonly [string, string]>;
  /** Drizzle objects (tables, sequences) of this configuration: what runtime roles get DML on. */
  objects(): Record<string, unknown>;
  /** Where this target keeps its migration journal when the caller does not say (PowerSync: its own schema). */
  journalSchema?: string;
  /** Tables of any of the adapter's layouts found around this target's names (catalog reads only). */
  detect?(client: Queryable): Promise<DetectedLayout[]>;
}

export type Queryable = Pick<pg.ClientBase, 'query'>;

/** One layout of an adapter and the migration set that creates its tables. */
export interface SchemaLayout extends AdapterLayout {
  set: string;
}

/** One kind of migration target (an adapter, or pgstate's own tables): how a target of that kind resolves. */
export interface TargetKind {
  adapter: string;
  /** Layouts, when the adapter has several; the first is the default. */
  layouts?: readonly SchemaLayout[];
  resolve(target: { layout?: string; schema?: string; table?: string }): ResolvedTarget;
}

/** A configuration of whole-schema tables (no table name): `adapter:schema`. */
export function withSchema(
  set: string,
  adapter: string,
  schema: string,
  objects: () => Record<string, unknown>,
  extra: Partial<ResolvedTarget> = {},
): ResolvedTarget {
  return {
    set,
    adapter,
    layout: null,
    schema,
    table: null,
    config: `${adapter}:${schema}`,
    substitutions: [[SCHEMA_PLACEHOLDER, schema]] as const,
    objects,
    ...extra,
  };
}

/** A configuration with a table name: `adapter:schema.table`. */
export function withTable(
  set: string,
  adapter: string,
  schema: string,
  table: string,
  objects: () => Record<string, unknown>,
  extra: Partial<ResolvedTarget> = {},
): ResolvedTarget {
  return withSchema(set, adapter, schema, objects, {
    table,
    config: `${adapter}:${schema}.${table}`,
    substitutions: [
      [SCHEMA_PLACEHOLDER, schema],
      [TABLE_PLACEHOLDER, table],
    ],
    ...extra,
  });
}

/** The columns and their types of a table, or null when it does not exist. */
export async function tableColumns(
  client: Queryable,
  schema: string,
  table: string,
): Promise<Map<string, string> | null> {
  const { rows } = await client.query<{ name: string; type: string }>(
    // Catalog joins, not to_regclass: reading the catalog needs no USAGE on the schema (doctor checks such roles).
    `SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`,
    [schema, table],
  );
  return rows.length ? new Map(rows.map((r) => [r.name, r.type])) : null;
}

/** A layout by canonical name or alias (undefined: the first), or BAD_SETTING naming the choices. */
export function layoutOf(kind: TargetKind, name: string | undefined): SchemaLayout {
  const layouts = kind.layouts ?? [];
  if (name === undefined) return layouts[0]!;
  return findLayout({ name: kind.adapter, layouts }, name) as SchemaLayout;
}
