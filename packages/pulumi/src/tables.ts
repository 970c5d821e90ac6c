import { PgStateError, quoteIdentifier, validateIdentifier } from '@pgstate/core';

/**
 * `seed`: the seed's table (`key text, data bytea, updated_at`), what the S3 gateway and this package write.
 * `native`: the table of Pulumi's own `postgres://` backend (`data json` holding `{"data":"<base64>"}`, keys
 * prefixed with the database name).
 */
export type PulumiLayout = 'seed' | 'native';

export const DEFAULT_TABLE = 'pulumi_state';

/** Quoted, validated names of the blob table and the two pgstate-owned side tables next to it. */
export interface PulumiTableNames {
  layout: PulumiLayout;
  /** The blob table (seed or native layout). */
  blobs: string;
  /** `<table>_objects`: size + MD5 per key so HEAD/LIST never read the bytes. */
  objects: string;
  /** `<table>_stacks`: per checkpoint key, what `stack ls` shows. */
  stacks: string;
  /** Unquoted pieces, for index names and messages. */
  schema: string | undefined;
  table: string;
}

export function pulumiTableNames(
  table = DEFAULT_TABLE,
  schema?: string,
  layout: PulumiLayout = 'seed',
): PulumiTableNames {
  if (layout !== 'seed' && layout !== 'native') {
    throw new PgStateError('BAD_SETTING', `Unknown Pulumi table layout ${JSON.stringify(String(layout))}.`, {
      fix: 'Use layout "seed" (bytea, the default) or "native" (the table of `pulumi login postgres://`).',
    });
  }
  validateIdentifier(table, 'table name');
  // Derived names must stay valid too: PostgreSQL would silently truncate them otherwise.
  validateIdentifier(`${table}_key_prefix_idx`, 'table name (with the suffix "_key_prefix_idx")');
  const q = (name: string) =>
    schema === undefined ? quoteIdentifier(name) : `${quoteIdentifier(schema, 'schema name')}.${quoteIdentifier(name)}`;
  return {
    layout,
    blobs: q(table),
    objects: q(`${table}_objects`),
    stacks: q(`${table}_stacks`),
    schema,
    table,
  };
}

/**
 * DDL for the three tables, idempotent. The blob table matches the seed (or Pulumi's native schema) exactly, so
 * tools that know only that table keep working; pgstate's extras live in side tables that are checked for
 * staleness against `updated_at` on every read, so rows written by other tools are never misreported.
 */
export function pulumiTablesDdl(names: PulumiTableNames): string[] {
  const dataType = names.layout === 'seed' ? 'bytea' : 'json';
  const indexName = quoteIdentifier(`${names.table}_key_prefix_idx`);
  return [
    `CREATE TABLE IF NOT EXISTS ${names.blobs} (
      key text PRIMARY KEY,
      data ${dataType} NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`,
    `CREATE INDEX IF NOT EXISTS ${indexName} ON ${names.blobs} (key text_pattern_ops)`,
    `CREATE TABLE IF NOT EXISTS ${names.objects} (
      key text PRIMARY KEY,
      size bigint NOT NULL,
      md5 text NOT NULL,
      updated_at timestamptz NOT NULL
    )`,
    `CREATE TABLE IF NOT EXISTS ${names.stacks} (
      key text PRIMARY KEY,
      project text NOT NULL,
      stack text NOT NULL,
      updated_at timestamptz NOT NULL,
      size bigint NOT NULL,
      last_update text,
      resource_count integer
    )`,
  ];
}
