import type { DetectedLayout } from '@pgstate/core';
import { PgStateError, validateIdentifier } from '@pgstate/core';
import {
  layoutOf,
  type Queryable,
  type SchemaLayout,
  type TargetKind,
  tableColumns,
  withSchema,
  withTable,
} from '../resolved.js';
import { MELTANO_DEFAULT_SCHEMA, MELTANO_DEFAULT_STATE_TABLE, meltanoSeedTables, meltanoStateTable } from './tables.js';

/**
 * Meltano's three table layouts. Journal configurations and `drizzle/` folders keep their first names
 * (`meltano-seed`, ...): they are stored in users' databases.
 */
export const MELTANO_LAYOUTS: readonly SchemaLayout[] = [
  {
    name: 'pgstate',
    aliases: ['seed'],
    summary:
      'pgstate’s two tables `meltano_state` + `meltano_state_locks` (what `pgstate serve` serves to stock Meltano)',
    table: false,
    set: 'meltano-seed',
  },
  {
    name: 'plugin',
    aliases: [],
    summary: 'the `state` table of the upstream meltano-state-backend-postgresql plugin',
    table: true,
    set: 'meltano-plugin',
  },
  {
    name: 'systemdb',
    aliases: [],
    summary: 'the `state` table of Meltano’s own system database',
    table: true,
    set: 'meltano-systemdb',
  },
];

export type MeltanoLayoutName = 'pgstate' | 'plugin' | 'systemdb';

const STATE_COLUMNS = ['state_id', 'partial_state', 'completed_state'];

/** Whether a table has Meltano's state columns. */
async function isStateTable(client: Queryable, schema: string, table: string): Promise<boolean> {
  const columns = await tableColumns(client, schema, table);
  return columns !== null && STATE_COLUMNS.every((c) => columns.has(c));
}

/**
 * Meltano's layouts live in different tables: the pgstate layout in `meltano_state` + `meltano_state_locks`, the
 * one-table layouts (same columns; plugin and systemdb differ only in a default) in `state` or the table given.
 */
async function detect(client: Queryable, schema: string, table: string | null): Promise<DetectedLayout[]> {
  const found: DetectedLayout[] = [];
  if (
    (await isStateTable(client, schema, 'meltano_state')) &&
    (await tableColumns(client, schema, 'meltano_state_locks'))
  )
    found.push({ layouts: ['pgstate'], table: `${schema}.meltano_state` });
  const one = table ?? MELTANO_DEFAULT_STATE_TABLE;
  if (one !== 'meltano_state' && (await isStateTable(client, schema, one)))
    found.push({ layouts: ['plugin', 'systemdb'], table: `${schema}.${one}` });
  return found;
}

export const meltanoTarget: TargetKind = {
  adapter: 'meltano',
  layouts: MELTANO_LAYOUTS,
  resolve(target) {
    const schema = validateIdentifier(target.schema ?? MELTANO_DEFAULT_SCHEMA, 'schema name');
    const layout = layoutOf(meltanoTarget, target.layout);
    if (!layout.table) {
      if (target.table !== undefined) {
        throw new PgStateError(
          'BAD_SETTING',
          `The Meltano ${layout.name} layout has fixed table names; \`table\` does not apply.`,
          {
            fix: 'Drop the table setting, or use layout "plugin" / "systemdb" for a one-table layout with a table name.',
          },
        );
      }
      return withSchema(layout.set, layout.set, schema, () => meltanoSeedTables({ schema }), {
        layout: layout.name,
        detect: (client) => detect(client, schema, null),
      });
    }
    const table = validateIdentifier(target.table ?? MELTANO_DEFAULT_STATE_TABLE, 'table name');
    const name = layout.name as 'plugin' | 'systemdb';
    return withTable(
      layout.set,
      layout.set,
      schema,
      table,
      () => ({ state: meltanoStateTable({ schema, table, layout: name }) }),
      {
        layout: layout.name,
        detect: (client) => detect(client, schema, table),
      },
    );
  },
};
