import { PgStateError, validateIdentifier } from '@pgstate/core';
import { GATEWAY_DEFAULT_SCHEMA, gatewayTables } from './gateway/tables.js';
import { INTERNAL_DEFAULT_SCHEMA, internalTables } from './internal.js';
import {
  MELTANO_DEFAULT_SCHEMA,
  MELTANO_DEFAULT_STATE_TABLE,
  meltanoSeedTables,
  meltanoStateTable,
} from './meltano.js';
import { SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER } from './names.js';
import { powersyncTables } from './powersync.js';
import { PULUMI_DEFAULT_SCHEMA, PULUMI_DEFAULT_TABLE, pulumiTables } from './pulumi.js';

/** What to migrate: one adapter configuration. Omitted names take the adapter's defaults. */
export type MigrationTarget =
  | { adapter: 'pulumi'; schema?: string; table?: string; layout?: 'seed' | 'native' }
  | { adapter: 'meltano'; layout: 'seed' | 'plugin' | 'systemdb'; schema?: string; table?: string }
  | { adapter: 'powersync'; schema?: string }
  | { adapter: 'internal'; schema?: string }
  /** The S3 gateway's multipart upload tables (`pgstate serve`, `@pgstate/s3-gateway`). */
  | { adapter: 'gateway'; schema?: string };

/** A target with defaults filled in and names validated. */
export interface ResolvedTarget {
  /** Folder under `drizzle/` holding this target's migrations. */
  set: string;
  adapter: string;
  schema: string;
  table: string | null;
  /** Journal key: the configuration the applied migrations belong to. */
  config: string;
  /** Placeholder -> configured name, applied to every identifier of the committed SQL. */
  substitutions: ReadonlyArray<readonly [string, string]>;
  /** Drizzle objects (tables, sequences) of this configuration: what runtime roles get DML on. */
  objects(): Record<string, unknown>;
}

export const POWERSYNC_DEFAULT_SCHEMA = 'powersync';

/**
 * Fills defaults and validates names (INVALID_IDENTIFIER on anything but letters, digits, underscores).
 * To add a migration set: a template in src/templates/<set>.ts, its SQL in drizzle/<set>/, and a case here.
 */
export function resolveTarget(target: MigrationTarget): ResolvedTarget {
  switch (target.adapter) {
    case 'pulumi': {
      const schema = validateIdentifier(target.schema ?? PULUMI_DEFAULT_SCHEMA, 'schema name');
      const table = validateIdentifier(target.table ?? PULUMI_DEFAULT_TABLE, 'table name');
      // The native layout (Pulumi's own `postgres://` table) is its own set and configuration: same side tables.
      const layout = target.layout ?? 'seed';
      if (layout !== 'seed' && layout !== 'native') {
        throw new PgStateError('BAD_SETTING', `Unknown Pulumi layout ${JSON.stringify(String(layout)).slice(0, 60)}.`, {
          fix: 'Use layout "seed" (the default) or "native" (the table of `pulumi login postgres://`).',
        });
      }
      const set = layout === 'native' ? 'pulumi-native' : 'pulumi';
      return withTable(set, set, schema, table, () => pulumiTables({ schema, table, layout }));
    }
    case 'meltano': {
      const schema = validateIdentifier(target.schema ?? MELTANO_DEFAULT_SCHEMA, 'schema name');
      if (target.layout === 'seed') {
        if (target.table !== undefined) {
          throw new PgStateError(
            'BAD_SETTING',
            'The Meltano seed layout has fixed table names; `table` does not apply.',
            {
              fix: 'Drop the table setting, or use layout "plugin" / "systemdb" for a one-table layout with a table name.',
            },
          );
        }
        return withSchema('meltano-seed', 'meltano-seed', schema, () => meltanoSeedTables({ schema }));
      }
      if (target.layout !== 'plugin' && target.layout !== 'systemdb') {
        throw badLayout(target.layout);
      }
      const layout = target.layout;
      const table = validateIdentifier(target.table ?? MELTANO_DEFAULT_STATE_TABLE, 'table name');
      return withTable(`meltano-${layout}`, `meltano-${layout}`, schema, table, () => ({
        state: meltanoStateTable({ schema, table, layout }),
      }));
    }
    case 'powersync': {
      const schema = validateIdentifier(target.schema ?? POWERSYNC_DEFAULT_SCHEMA, 'schema name');
      return withSchema('powersync', 'powersync', schema, () => powersyncTables({ schema }));
    }
    case 'internal': {
      const schema = validateIdentifier(target.schema ?? INTERNAL_DEFAULT_SCHEMA, 'schema name');
      return withSchema('internal', 'internal', schema, () => internalTables({ schema }));
    }
    case 'gateway': {
      const schema = validateIdentifier(target.schema ?? GATEWAY_DEFAULT_SCHEMA, 'schema name');
      return withSchema('gateway', 'gateway', schema, () => gatewayTables({ schema }));
    }
    default:
      throw badAdapter((target as { adapter?: unknown }).adapter);
  }
}

function withSchema(set: string, adapter: string, schema: string, objects: () => Record<string, unknown>) {
  return {
    set,
    adapter,
    schema,
    table: null,
    config: `${adapter}:${schema}`,
    substitutions: [[SCHEMA_PLACEHOLDER, schema]] as const,
    objects,
  };
}

function withTable(
  set: string,
  adapter: string,
  schema: string,
  table: string,
  objects: () => Record<string, unknown>,
): ResolvedTarget {
  return {
    set,
    adapter,
    schema,
    table,
    config: `${adapter}:${schema}.${table}`,
    substitutions: [
      [SCHEMA_PLACEHOLDER, schema],
      [TABLE_PLACEHOLDER, table],
    ],
    objects,
  };
}

function badLayout(layout: unknown): PgStateError {
  return new PgStateError('BAD_SETTING', `Unknown Meltano layout ${JSON.stringify(String(layout)).slice(0, 60)}.`, {
    fix: 'Use layout "seed", "plugin" or "systemdb".',
  });
}

function badAdapter(adapter: unknown): PgStateError {
  return new PgStateError(
    'BAD_SETTING',
    `Unknown adapter ${JSON.stringify(String(adapter)).slice(0, 60)} to migrate.`,
    {
      fix: 'Use adapter "pulumi", "meltano", "powersync", "gateway" or "internal".',
    },
  );
}
