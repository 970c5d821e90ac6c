/** Where a Meltano store lives: layout, connection settings and table names, resolved from URL + settings + env. */
import {
  type ConnectionSettings,
  PgStateError,
  parseConnectionSettings,
  qualifiedName,
  validateIdentifier,
} from '@pgstate/core';

export type MeltanoLayout = 'seed' | 'plugin' | 'systemdb';
export const MELTANO_LAYOUTS: readonly MeltanoLayout[] = ['seed', 'plugin', 'systemdb'];

export interface MeltanoConnectionOptions {
  /**
   * seed: `postgres://user:pass@host:port/db/schema`; plugin: the same or a libpq URI; systemdb: Meltano's
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
  /** `"schema"."meltano_state_locks"` (seed layout only). */
  locksTable: string | undefined;
}

const ENV_PREFIX: Record<MeltanoLayout, string | undefined> = {
  seed: 'MELTANO_STATE_BACKEND_POSTGRES_',
  plugin: 'MELTANO_STATE_BACKEND_POSTGRESQL_',
  systemdb: undefined,
};

export function parseLayout(layout: string | undefined): MeltanoLayout {
  if (layout === undefined) return 'seed';
  if ((MELTANO_LAYOUTS as readonly string[]).includes(layout)) return layout as MeltanoLayout;
  throw new PgStateError('BAD_SETTING', `Unknown Meltano layout ${JSON.stringify(layout)}.`, {
    fix: `Use one of ${MELTANO_LAYOUTS.join(', ')}.`,
  });
}

/** `-csearch_path=foo,bar` (as in `?options=-csearch_path%3Dfoo`) -> `foo`. */
function schemaFromOptions(options: string | undefined): string | undefined {
  const m = options?.match(/-c\s*search_path\s*=\s*"?([A-Za-z_][A-Za-z0-9_]*)/);
  return m?.[1];
}

export function resolveMeltanoConfig(layout: MeltanoLayout, options: MeltanoConnectionOptions): ResolvedMeltanoConfig {
  const env = options.env ?? process.env;
  const prefix = ENV_PREFIX[layout];
  const fromEnv = (key: string) => (prefix ? env[`${prefix}${key}`] || undefined : undefined);
  // SQLAlchemy URLs carry the driver in the scheme; libpq and pg only know postgres(ql)://.
  const url = options.url?.replace(/^postgres(ql)?\+[A-Za-z0-9_]+:\/\//, 'postgresql://');
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
  if (layout === 'seed' && options.table !== undefined) {
    throw new PgStateError('BAD_SETTING', 'The Meltano seed layout has fixed table names; `table` does not apply.', {
      fix: 'Drop the table setting, or use layout "plugin" / "systemdb".',
    });
  }
  const table = validateIdentifier(
    layout === 'seed' ? 'meltano_state' : (options.table ?? fromEnv('TABLE') ?? 'state'),
    'table name',
  );
  return {
    layout,
    settings,
    schema,
    table,
    stateTable: qualifiedName(schema, table),
    locksTable: layout === 'seed' ? qualifiedName(schema, 'meltano_state_locks') : undefined,
  };
}
