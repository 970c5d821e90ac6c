import { validateIdentifier } from '@pgstate/core';
import { layoutOf, type SchemaLayout, type TargetKind, tableColumns, withTable } from '../resolved.js';
import { PULUMI_DEFAULT_SCHEMA, PULUMI_DEFAULT_TABLE, pulumiTables } from './tables.js';

/**
 * Pulumi's two table layouts. Journal configurations and `drizzle/` folders keep their first names (`pulumi`,
 * `pulumi-native`): they are stored in users' databases.
 */
export const PULUMI_LAYOUTS: readonly SchemaLayout[] = [
  {
    name: 'bytea',
    aliases: ['seed'],
    summary: 'pgstate’s table: raw bytes in `data bytea` (written by `pgstate serve` and @pgstate/pulumi)',
    table: true,
    set: 'pulumi',
  },
  {
    name: 'native',
    aliases: [],
    summary: 'the table of Pulumi’s own `postgres://` backend (`data json`, keys prefixed with the database name)',
    table: true,
    set: 'pulumi-native',
  },
];

export type PulumiLayoutName = 'bytea' | 'native';

/** The layout a table's `data` column says: bytea or json. */
function layoutOfDataType(type: string | undefined): PulumiLayoutName | undefined {
  if (type === 'bytea') return 'bytea';
  if (type === 'json' || type === 'jsonb') return 'native';
  return undefined;
}

export const pulumiTarget: TargetKind = {
  adapter: 'pulumi',
  layouts: PULUMI_LAYOUTS,
  resolve(target) {
    const schema = validateIdentifier(target.schema ?? PULUMI_DEFAULT_SCHEMA, 'schema name');
    const table = validateIdentifier(target.table ?? PULUMI_DEFAULT_TABLE, 'table name');
    const layout = layoutOf(pulumiTarget, target.layout);
    return withTable(
      layout.set,
      layout.set,
      schema,
      table,
      () => pulumiTables({ schema, table, layout: layout.name as PulumiLayoutName }),
      {
        layout: layout.name,
        // Both layouts use one table name: its `data` column tells them apart.
        async detect(client) {
          const columns = await tableColumns(client, schema, table);
          const found = layoutOfDataType(columns?.get('data'));
          return found ? [{ layouts: [found], table: `${schema}.${table}` }] : [];
        },
      },
    );
  },
};
