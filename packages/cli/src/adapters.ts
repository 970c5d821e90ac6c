/**
 * How commands turn flags, URL parameters, the URL path and the environment into adapter configurations: the same
 * way for every adapter and every command, through each adapter's own settings parser (its `AdapterDefinition`).
 */
import type { AdapterDefinition, AdapterMigrationTarget, AdapterSettings, ConnectionSettings } from '@pgstate/core';
import { type ResolvedTarget, resolveTarget } from '@pgstate/schema';
import { getTableName, is, Table } from 'drizzle-orm';
import { UsageError } from './errors.js';
import { ADAPTERS } from './registry.js';

export { ADAPTERS };

/** URL query parameters some adapter reads: every command accepts all of them. */
export const ADAPTER_URL_PARAMS: readonly string[] = [...new Set(ADAPTERS.flatMap((a) => a.urlParams))];
/** Whether some adapter accepts `postgres://host/database/schema`. */
export const SCHEMA_PATH = ADAPTERS.some((a) => a.schemaPath);

export interface TargetOptions {
  adapter?: string;
  schema?: string;
  table?: string;
  layout?: string;
}

/** One adapter configuration a command works on. */
export interface Selected {
  definition: AdapterDefinition;
  settings: AdapterSettings;
  target: AdapterMigrationTarget;
  resolved: ResolvedTarget;
}

export function adapterNamed(name: string): AdapterDefinition {
  const found = ADAPTERS.find((a) => a.name === name);
  if (!found) {
    throw new UsageError(
      `Unknown adapter "${name}".`,
      `Use --adapter ${[...ADAPTERS.map((a) => a.name), 'all'].join('|')}.`,
    );
  }
  return found;
}

/** `--layout` help: every adapter's layouts (aliases in parentheses). */
export function layoutHelp(): string {
  return ADAPTERS.filter((a) => a.layouts.length > 1)
    .map(
      (a) =>
        `${a.name}: ${a.layouts.map((l) => (l.aliases.length ? `${l.name} (${l.aliases.join(', ')})` : l.name)).join(' | ')}`,
    )
    .join('; ');
}

function hasLayout(definition: AdapterDefinition, name: string): boolean {
  return definition.layouts.some((l) => l.name === name || l.aliases.includes(name));
}

/** One adapter's configuration from a command's flags and the connection (URL parameters, URL path, env). */
export function configure(
  definition: AdapterDefinition,
  flags: Readonly<Record<string, string | undefined>>,
  connection: ConnectionSettings,
  env: Readonly<Record<string, string | undefined>>,
  { fromUrl = true }: { fromUrl?: boolean } = {},
): Selected {
  const urlParams = fromUrl
    ? Object.fromEntries(Object.entries(connection.adapterParams).filter(([k]) => definition.urlParams.includes(k)))
    : {};
  const settings = definition.resolveSettings({
    flags,
    urlParams,
    ...(fromUrl && connection.schema !== undefined ? { schema: connection.schema } : {}),
    database: connection.database,
    env,
  });
  const target = definition.migrationTarget(settings);
  return { definition, settings, target, resolved: resolveTarget(target) };
}

/**
 * `--adapter/--schema/--table/--layout` -> the configurations they name (every adapter by default). With one
 * adapter, the URL's parameters and `/database/schema` path apply too; with all of them, names do not (each adapter
 * keeps its default), and `--layout`/`?layout=` pick the adapters that have such a layout.
 */
export function selectAdapters(
  options: TargetOptions,
  connection: ConnectionSettings,
  env: Readonly<Record<string, string | undefined>>,
): Selected[] {
  const name = options.adapter ?? 'all';
  const flags = { layout: options.layout, schema: options.schema, table: options.table };
  if (name !== 'all') return [configure(adapterNamed(name), flags, connection, env)];
  if (options.schema || options.table)
    throw new UsageError(
      '--schema and --table apply to one adapter.',
      `Add --adapter ${ADAPTERS.map((a) => a.name).join('|')}.`,
    );
  const layout = options.layout ?? connection.adapterParams.layout;
  const chosen = layout === undefined ? ADAPTERS : ADAPTERS.filter((a) => hasLayout(a, layout));
  if (chosen.length === 0) throw new UsageError(`No adapter has a layout "${layout}".`, `Layouts: ${layoutHelp()}.`);
  return chosen.map((d) => configure(d, layout === undefined ? {} : { layout }, connection, env, { fromUrl: false }));
}

/** Human name of a configuration: `pulumi native (public.pulumi_state)`. */
export function describeTarget(selected: Pick<Selected, 'definition' | 'resolved'>): string {
  const { definition, resolved } = selected;
  const layout = definition.layouts.length > 1 && resolved.layout ? ` ${resolved.layout}` : '';
  return `${definition.name}${layout} (${resolved.table ? `${resolved.schema}.${resolved.table}` : `schema ${resolved.schema}`})`;
}

/** The flags that select a configuration, for commands printed in fixes: `--adapter pulumi --layout native`. */
export function targetFlags(selected: Pick<Selected, 'definition' | 'settings'>, layout?: string): string {
  const { definition, settings } = selected;
  const chosen = layout ?? settings.layout;
  return [
    `--adapter ${definition.name}`,
    chosen !== definition.defaultLayout ? `--layout ${chosen}` : '',
    settings.schema ? `--schema ${settings.schema}` : '',
    settings.table ? `--table ${settings.table}` : '',
  ]
    .filter(Boolean)
    .join(' ');
}

/** The `pgstate migrate` command for a configuration. */
export function migrateCommand(selected: Pick<Selected, 'definition' | 'settings'>, layout?: string): string {
  return `pgstate migrate ${targetFlags(selected, layout)}`;
}

/** The table names a target creates (for privilege checks). */
export function targetTables(resolved: ResolvedTarget): string[] {
  return Object.values(resolved.objects())
    .filter((o) => is(o, Table))
    .map((t) => getTableName(t as Table));
}

export { resolveTarget };
