/** @pgstate/meltano's entry in pgstate's adapter registry: every command reads Meltano settings through this. */
import { type AdapterDefinition, PgStateError, validateIdentifier } from '@pgstate/core';
import { MELTANO_LAYOUTS, resolveTarget } from '@pgstate/schema';
import { createMeltanoBucketHandler } from './bucket.js';
import { meltanoEnvSetting, parseLayout } from './config.js';

/** URL query parameters Meltano settings come from (never sent to the server). */
export const MELTANO_URL_PARAMS = ['schema', 'table', 'layout'] as const;

export const meltanoAdapter: AdapterDefinition = {
  name: 'meltano',
  summary: 'Meltano state (stock Meltano through `pgstate serve`, the upstream plugin’s table, or the systemdb)',
  layouts: MELTANO_LAYOUTS,
  defaultLayout: 'pgstate',
  urlParams: MELTANO_URL_PARAMS,
  // The seed plugin's URL form: postgres://user@host/database/schema.
  schemaPath: true,
  resolveSettings(input) {
    const pick = (name: string) => input.flags?.[name] ?? input.urlParams?.[name];
    const layout = parseLayout(pick('layout'));
    const env = input.env ?? {};
    const schema = pick('schema') ?? input.schema ?? meltanoEnvSetting(layout, 'SCHEMA', env);
    const table = pick('table') ?? meltanoEnvSetting(layout, 'TABLE', env);
    if (schema !== undefined) validateIdentifier(schema, 'schema name');
    if (table !== undefined) {
      if (layout === 'pgstate') {
        throw new PgStateError(
          'BAD_SETTING',
          'The Meltano pgstate layout has fixed table names; a table does not apply.',
          {
            fix: 'Leave the table out, or use the layout "plugin" or "systemdb" (one table, named as you like).',
          },
        );
      }
      validateIdentifier(table, 'table name');
    }
    return {
      adapter: 'meltano',
      layout,
      ...(schema !== undefined ? { schema } : {}),
      ...(table !== undefined ? { table } : {}),
      extra: {},
    };
  },
  migrationTarget(settings) {
    return {
      adapter: 'meltano',
      layout: settings.layout,
      ...(settings.schema ? { schema: settings.schema } : {}),
      ...(settings.table ? { table: settings.table } : {}),
    };
  },
  detectLayouts(client, settings) {
    const target = resolveTarget(meltanoAdapter.migrationTarget(settings));
    return target.detect ? target.detect(client) : Promise.resolve([]);
  },
  bucketHandler: {
    // `--bucket NAME=meltano:PREFIX` serves Meltano's `state_backend.uri: s3://NAME/PREFIX`.
    prefix: true,
    create({ pool, settings, prefix }) {
      if (settings.layout !== 'pgstate') {
        throw new PgStateError('BAD_SETTING', `A Meltano bucket serves the pgstate layout, not ${settings.layout}.`, {
          fix: 'Serve the pgstate layout (stock Meltano writes state.json and lock files, which only it can hold).',
        });
      }
      return createMeltanoBucketHandler({
        storeOptions: { pool, ...(settings.schema ? { schema: settings.schema } : {}) },
        prefix,
      });
    },
  },
};
