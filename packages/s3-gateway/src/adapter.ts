/**
 * The S3 gateway's entry in pgstate's adapter registry: not a state adapter, but its multipart tables (migration set
 * `gateway`) are migrated, checked by `doctor` and granted to runtime roles like every adapter's, so `pgstate
 * migrate` (all adapters) also prepares a database for `pgstate serve`.
 */
import { type AdapterDefinition, PgStateError, validateIdentifier } from '@pgstate/core';

export const gatewayAdapter: AdapterDefinition = {
  name: 'gateway',
  summary: 'the S3 gateway’s multipart upload tables (`pgstate serve`)',
  layouts: [
    { name: 'multipart', aliases: [], summary: 'uploads in flight and their parts, in one schema', table: false },
  ],
  defaultLayout: 'multipart',
  urlParams: [],
  schemaPath: false,
  resolveSettings(input) {
    const layout = input.flags?.layout;
    if (layout !== undefined && layout !== 'multipart') {
      throw new PgStateError('BAD_SETTING', `Unknown gateway layout ${JSON.stringify(layout).slice(0, 60)}.`, {
        fix: 'The gateway has one layout (its multipart tables in one schema): leave the layout out.',
      });
    }
    if (input.flags?.table !== undefined) {
      throw new PgStateError('BAD_SETTING', 'The gateway’s tables have fixed names; a table does not apply.', {
        fix: 'Leave the table out; choose the schema instead.',
      });
    }
    const schema = input.flags?.schema;
    if (schema !== undefined) validateIdentifier(schema, 'schema name');
    return { adapter: 'gateway', layout: 'multipart', ...(schema !== undefined ? { schema } : {}), extra: {} };
  },
  migrationTarget(settings) {
    return { adapter: 'gateway', ...(settings.schema ? { schema: settings.schema } : {}) };
  },
  detectLayouts: async () => [],
};
