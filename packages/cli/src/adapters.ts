import { type MigrationTarget, type ResolvedTarget, resolveTarget } from '@pgstate/schema';
import { getTableName, is, Table } from 'drizzle-orm';
import { UsageError } from './errors.js';

export const ADAPTERS = ['pulumi', 'meltano', 'powersync'] as const;
export type AdapterName = (typeof ADAPTERS)[number];
export const MELTANO_LAYOUTS = ['seed', 'plugin', 'systemdb'] as const;

export interface TargetOptions {
  adapter?: string;
  schema?: string;
  table?: string;
  layout?: string;
}

/** `--adapter/--schema/--table/--layout` -> the migration targets they name (all adapters by default). */
export function targetsFrom(
  options: TargetOptions,
  defaults: { schema?: string; table?: string } = {},
): MigrationTarget[] {
  const adapter = options.adapter ?? 'all';
  if (adapter !== 'all' && !(ADAPTERS as readonly string[]).includes(adapter))
    throw new UsageError(`Unknown adapter "${adapter}".`, `Use --adapter ${[...ADAPTERS, 'all'].join('|')}.`);
  const names = adapter === 'all' ? [...ADAPTERS] : [adapter as AdapterName];
  const schema = options.schema ?? defaults.schema;
  const table = options.table ?? defaults.table;
  if (names.length > 1 && (options.schema || options.table))
    throw new UsageError('--schema and --table apply to one adapter.', 'Add --adapter pulumi|meltano|powersync.');
  const layout = options.layout ?? 'seed';
  if (!(MELTANO_LAYOUTS as readonly string[]).includes(layout))
    throw new UsageError(`Unknown Meltano layout "${layout}".`, `Use --layout ${MELTANO_LAYOUTS.join('|')}.`);
  return names.map((name): MigrationTarget => {
    const names1 = names.length === 1 ? { ...(schema ? { schema } : {}), ...(table ? { table } : {}) } : {};
    switch (name) {
      case 'pulumi':
        return { adapter: 'pulumi', ...names1 };
      case 'meltano':
        return { adapter: 'meltano', layout: layout as 'seed' | 'plugin' | 'systemdb', ...names1 };
      default:
        return { adapter: 'powersync', ...(names1.schema ? { schema: names1.schema } : {}) };
    }
  });
}

/** Human name of a target: `pulumi (public.pulumi_state)`. */
export function describeTarget(resolved: ResolvedTarget): string {
  return `${resolved.adapter} (${resolved.table ? `${resolved.schema}.${resolved.table}` : `schema ${resolved.schema}`})`;
}

/** The table names a target creates (for privilege checks). */
export function targetTables(resolved: ResolvedTarget): string[] {
  return Object.values(resolved.objects())
    .filter((o) => is(o, Table))
    .map((t) => getTableName(t as Table));
}

export { resolveTarget };
