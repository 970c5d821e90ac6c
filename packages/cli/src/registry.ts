/**
 * The one registry of adapters. Every command that works on adapters (`migrate`, `doctor`, `serve`, the adapter
 * command groups) loops over this list; a new adapter is one package exporting an `AdapterDefinition` plus one line.
 */
import { type AdapterDefinition, PgStateError, validateIdentifier } from '@pgstate/core';
import { meltanoAdapter } from '@pgstate/meltano';
// The light entry: the storage engine loads only when a powersync command runs.
import { powersyncAdapter } from '@pgstate/powersync/adapter';
import { pulumiAdapter } from '@pgstate/pulumi';

/**
 * `pgstate serve`'s own tables (the S3 gateway's multipart uploads): not an adapter, but migrated, checked and
 * selected (`--adapter gateway`) like one.
 */
const gatewayTables: AdapterDefinition = {
  name: 'gateway',
  summary: 'the S3 gateway’s multipart upload tables (pgstate serve)',
  layouts: [{ name: 'tables', aliases: [], summary: 'two tables with fixed names in one schema', table: false }],
  defaultLayout: 'tables',
  urlParams: ['schema'],
  schemaPath: false,
  resolveSettings(input) {
    const layout = input.flags?.layout;
    if ((layout !== undefined && layout !== 'tables') || input.flags?.table !== undefined) {
      throw new PgStateError('BAD_SETTING', 'The gateway’s tables have one layout and fixed names.', {
        fix: 'Leave the layout and table out; choose the schema instead.',
      });
    }
    const schema = input.flags?.schema ?? input.urlParams?.schema;
    if (schema !== undefined) validateIdentifier(schema, 'schema name');
    return { adapter: 'gateway', layout: 'tables', ...(schema !== undefined ? { schema } : {}), extra: {} };
  },
  migrationTarget: (settings) => ({ adapter: 'gateway', ...(settings.schema ? { schema: settings.schema } : {}) }),
  detectLayouts: async () => [],
};

export const ADAPTERS: readonly AdapterDefinition[] = [pulumiAdapter, meltanoAdapter, powersyncAdapter, gatewayTables];
