/** @pgstate/pulumi's entry in pgstate's adapter registry: every command reads Pulumi settings through this. */
import { type AdapterDefinition, type AdapterSettings, validateIdentifier } from '@pgstate/core';
import { PULUMI_LAYOUTS, resolveTarget } from '@pgstate/schema';
import { PULUMI_URL_PARAMS, type PulumiBlobStoreOptions } from './blob-store.js';
import { createPulumiBucketHandler } from './bucket-handler.js';
import { validatePrefix } from './keys.js';
import { pulumiLayout, pulumiTableNames } from './tables.js';

/** The blob-store options of one Pulumi configuration (the pool, migration and journal options are the caller's). */
export function pulumiStoreOptions(settings: AdapterSettings): PulumiBlobStoreOptions {
  return {
    layout: pulumiLayout(settings.layout),
    ...(settings.schema ? { schema: settings.schema } : {}),
    ...(settings.table ? { table: settings.table } : {}),
    ...(settings.extra.key_prefix !== undefined ? { keyPrefix: settings.extra.key_prefix } : {}),
  };
}

export const pulumiAdapter: AdapterDefinition = {
  name: 'pulumi',
  summary: 'Pulumi DIY state: stacks, history, locks (the stock CLI through `pgstate serve`, or its own postgres://)',
  layouts: PULUMI_LAYOUTS,
  defaultLayout: 'bytea',
  urlParams: PULUMI_URL_PARAMS,
  schemaPath: false,
  resolveSettings(input) {
    const pick = (name: string) => input.flags?.[name] ?? input.urlParams?.[name];
    const layout = pulumiLayout(pick('layout'));
    const schema = pick('schema') ?? input.schema;
    const table = pick('table');
    // Pulumi's own driver prefixes every key with the database name: so does the native layout by default.
    const keyPrefix = pick('key_prefix') ?? (layout === 'native' && input.database ? `${input.database}/` : undefined);
    pulumiTableNames(table, schema === undefined ? undefined : validateIdentifier(schema, 'schema name'), layout);
    if (keyPrefix) validatePrefix(keyPrefix);
    const extra: Record<string, string> = keyPrefix !== undefined ? { key_prefix: keyPrefix } : {};
    return {
      adapter: 'pulumi',
      layout,
      ...(schema !== undefined ? { schema } : {}),
      ...(table !== undefined ? { table } : {}),
      extra,
    };
  },
  migrationTarget(settings) {
    return {
      adapter: 'pulumi',
      layout: settings.layout,
      ...(settings.schema ? { schema: settings.schema } : {}),
      ...(settings.table ? { table: settings.table } : {}),
    };
  },
  detectLayouts(client, settings) {
    const target = resolveTarget(pulumiAdapter.migrationTarget(settings));
    return target.detect ? target.detect(client) : Promise.resolve([]);
  },
  bucketHandler: {
    prefix: false,
    create: ({ pool, settings, internalSchema }) =>
      createPulumiBucketHandler({
        pool,
        ...pulumiStoreOptions(settings),
        ...(internalSchema ? { internalSchema } : {}),
      }),
  },
};
