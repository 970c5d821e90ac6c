/** Where a Meltano store lives: layout, connection settings and table names, resolved from URL + settings + env. */
import {
  type ConnectionSettings,
  findLayout,
  PgStateError,
  parseConnectionSettings,
  qualifiedName,
  validateIdentifier,
  withoutSqlAlchemyDriver,
} from '@pgstate/core';
import { MELTANO_LAYOUTS as LAYOUTS } from '@pgstate/schema';

/**
 * `pgstate`: pgstate's two tables `meltano_state` + `meltano_state_locks` (formerly called `seed`, still accepted);
 * `plugin`: the upstream meltano-state-backend-postgresql plugin's `state` table; `systemdb`: Meltano's own.
 */
export type MeltanoLayout = 'pgstate' | 'plugin' | 'systemdb';
/** A layout as callers may give it: `seed` is the pgstate layout's former name. */
export type MeltanoLayoutInput = MeltanoLayout | 'seed';
/** Canonical layout names (aliases are accepted by `parseLayout`). */
export const MELTANO_LAYOUTS: readonly MeltanoLayout[] = LAYOUTS.map((l) => l.name as MeltanoLayout);

export interface MeltanoConnectionOptions {
  /**
   * pgstate: `postgres://user:pass@host:port/db/schema`; plugin: the same or a libpq URI; systemdb: Meltano's
   * `database_uri` (`postgresql+psycopg://...` is accepted, the SQLAlchemy driver part is ignored).
   */
  url?: string;
  host?: string;
  port?: number | string;
  user?: string;
  password?: string;
  database?: string;
  /** Default `public`, or the URL's `/db/schema` path, or `options=-csearch_path=<schema>`. */
  schema?: string;
  /** Default `prefer`. */
  sslmode?: string;
  /** One-table layouts only: the table name (default `state`). */
  table?: string;
  /** Environment for `MELTANO_STATE_BACKEND_POSTGRES(QL)_*` and PG* variables (default process.env). */
  env?: Record<string, string | undefined>;
}

export interface ResolvedMeltanoConfig {
  layout: MeltanoLayout;
  settings: ConnectionSettings;
  schema: string;
  /** Table name of the state rows. */
  table: string;
  /** `"schema"."table"` of the state rows. */
  stateTable: string;
  /** `"schema"."meltano_state_locks"` (pgstate layout only). */
  locksTable: string | undefined;
}

const ENV_PREFIX: Record<MeltanoLayout, string | undefined> = {
  pgstate: 'MELTANO_STATE_BACKEND_POSTGRES_',
  plugin: 'MELTANO_STATE_BACKEND_POSTGRESQL_',
  systemdb: undefined,
};

/** The canonical name of a layout name or alias (`seed` -> `pgstate`); undefined -> `pgstate`. */
export function parseLayout(layout: string | undefined): MeltanoLayout {
  if (layout === undefined) return 'pgstate';
  return findLayout({ name: 'meltano', layouts: LAYOUTS }, layout).name as MeltanoLayout;
}

/** A `MELTANO_STATE_BACKEND_POSTGRES(QL)_<KEY>` setting of a layout (systemdb has none). */
export function meltanoEnvSetting(
  layout: MeltanoLayout,
  key: string,
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  const prefix = ENV_PREFIX[layout];
  return prefix ? env[`${prefix}${key}`] || undefined : undefined;
}

/** `-csearch_path=foo,bar` (as in `?options=-csearch_path%3Dfoo`) -> `foo`. */
function schemaFromOptions(options: string | undefined): string | undefined {
  const m = options?.match(/-c\s*search_path\s*=\s*"?([A-Za-z_][A-Za-z0-9_]*)/);
  return m?.[1];
}

export function resolveMeltanoConfig(
  layoutName: MeltanoLayoutInput,
  options: MeltanoConnectionOptions,
): ResolvedMeltanoConfig {
  const layout = parseLayout(layoutName);
  const env = options.env ?? process.env;
  const fromEnv = (key: string) => meltanoEnvSetting(layout, key, env);
  // SQLAlchemy URLs carry the driver in the scheme; libpq and pg only know postgres(ql)://.
  const url = options.url === undefined ? undefined : withoutSqlAlchemyDriver(options.url);
  const settings = parseConnectionSettings(
    {
      url,
      host: options.host ?? fromEnv('HOST'),
      port: options.port ?? fromEnv('PORT'),
      user: options.user ?? fromEnv('USER'),
      password: options.password ?? fromEnv('PASSWORD'),
      database: options.database ?? fromEnv('DATABASE'),
      schema: options.schema ?? fromEnv('SCHEMA'),
      // No default here: a setting overrides the URL, and libpq's (and core's) default is already `prefer`.
      sslmode: options.sslmode ?? fromEnv('SSLMODE'),
    },
    { allowSchemaPath: layout !== 'systemdb', env },
  );
  const schema = validateIdentifier(settings.schema ?? schemaFromOptions(settings.options) ?? 'public', 'schema name');
  if (layout === 'pgstate' && options.table !== undefined) {
    throw new PgStateError('BAD_SETTING', 'The Meltano pgstate layout has fixed table names; `table` does not apply.', {
      fix: 'Drop the table setting, or use layout "plugin" / "systemdb".',
    });
  }
  const table = validateIdentifier(
    layout === 'pgstate' ? 'meltano_state' : (options.table ?? fromEnv('TABLE') ?? 'state'),
    'table name',
  );
  return {
    layout,
    settings,
    schema,
    table,
    stateTable: qualifiedName(schema, table),
    locksTable: layout === 'pgstate' ? qualifiedName(schema, 'meltano_state_locks') : undefined,
  };
}
