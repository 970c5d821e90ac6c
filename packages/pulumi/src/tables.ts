import { findLayout, quoteIdentifier, validateIdentifier } from '@pgstate/core';
import { PULUMI_LAYOUTS } from '@pgstate/schema';

/**
 * `bytea`: pgstate's table (`key text, data bytea, updated_at`), what the S3 gateway and this package write.
 * `native`: the table of Pulumi's own `postgres://` backend (`data json` holding `{"data":"<base64>"}`, keys
 * prefixed with the database name).
 */
export type PulumiLayout = 'bytea' | 'native';
/** A layout as callers may give it: `seed` is the bytea layout's former name. */
export type PulumiLayoutInput = PulumiLayout | 'seed';

/** The canonical name of a layout name or alias (BAD_SETTING for anything else). */
export function pulumiLayout(name: string | undefined): PulumiLayout {
  return name === undefined
    ? 'bytea'
    : (findLayout({ name: 'pulumi', layouts: PULUMI_LAYOUTS }, name).name as PulumiLayout);
}

export const DEFAULT_TABLE = 'pulumi_state';
export const DEFAULT_SCHEMA = 'public';

/**
 * Quoted, validated names of the blob table and the two pgstate-owned side tables next to it. The tables
 * themselves are created by `@pgstate/schema` (migration sets `pulumi` and `pulumi-native`).
 */
export interface PulumiTableNames {
  layout: PulumiLayout;
  /** The blob table (bytea or native layout). */
  blobs: string;
  /** `<table>_objects`: size + MD5 per key so HEAD/LIST never read the bytes. */
  objects: string;
  /** `<table>_stacks`: per checkpoint key, what `stack ls` shows. */
  stacks: string;
  /** Unquoted pieces, for migrations and messages. */
  schema: string;
  table: string;
}

/** Tables are always schema-qualified (default `public`, like `pgstate migrate`), never left to search_path. */
export function pulumiTableNames(
  table = DEFAULT_TABLE,
  schema = DEFAULT_SCHEMA,
  layoutName: PulumiLayoutInput = 'bytea',
): PulumiTableNames {
  const layout = pulumiLayout(layoutName);
  validateIdentifier(table, 'table name');
  // Derived names must stay valid too: PostgreSQL would silently truncate them otherwise.
  validateIdentifier(`${table}_key_prefix_idx`, 'table name (with the suffix "_key_prefix_idx")');
  const q = (name: string) => `${quoteIdentifier(schema, 'schema name')}.${quoteIdentifier(name)}`;
  return {
    layout,
    blobs: q(table),
    objects: q(`${table}_objects`),
    stacks: q(`${table}_stacks`),
    schema,
    table,
  };
}
