import { type AdapterMigrationTarget, PgStateError, validateIdentifier } from '@pgstate/core';
import { GATEWAY_DEFAULT_SCHEMA, gatewayTables } from './gateway/tables.js';
import { INTERNAL_DEFAULT_SCHEMA, internalTables } from './internal.js';
import { type MeltanoLayoutName, meltanoTarget } from './meltano/target.js';
import { POWERSYNC_DEFAULT_SCHEMA } from './powersync/tables.js';
import { powersyncTarget } from './powersync/target.js';
import { type PulumiLayoutName, pulumiTarget } from './pulumi/target.js';
import { type ResolvedTarget, type TargetKind, withSchema } from './resolved.js';

export type { ResolvedTarget, SchemaLayout, TargetKind } from './resolved.js';
export { POWERSYNC_DEFAULT_SCHEMA };

/**
 * What to migrate: one adapter configuration. Omitted names take the adapter's defaults; layouts accept their
 * former names too (`seed`).
 */
export type MigrationTarget =
  | { adapter: 'pulumi'; schema?: string; table?: string; layout?: PulumiLayoutName | 'seed' }
  | { adapter: 'meltano'; layout?: MeltanoLayoutName | 'seed'; schema?: string; table?: string }
  | { adapter: 'powersync'; schema?: string }
  | { adapter: 'internal'; schema?: string }
  /** The S3 gateway's multipart upload tables (`pgstate serve`, `@pgstate/s3-gateway`). */
  | { adapter: 'gateway'; schema?: string };

/** pgstate's own tables (journal, leases): every target migrates them first. */
const internalTarget: TargetKind = {
  adapter: 'internal',
  resolve(target) {
    const schema = validateIdentifier(target.schema ?? INTERNAL_DEFAULT_SCHEMA, 'schema name');
    return withSchema('internal', 'internal', schema, () => internalTables({ schema }));
  },
};

const gatewayTarget: TargetKind = {
  adapter: 'gateway',
  resolve(target) {
    const schema = validateIdentifier(target.schema ?? GATEWAY_DEFAULT_SCHEMA, 'schema name');
    return withSchema('gateway', 'gateway', schema, () => gatewayTables({ schema }));
  },
};

/**
 * Every kind of target, by adapter name: the one place that knows them all. To add an adapter's tables: a folder
 * `src/<adapter>/` (tables, `templates/<set>.ts`, `target.ts`), its SQL in `drizzle/<set>/`, and one line here.
 */
export const TARGET_KINDS: Readonly<Record<string, TargetKind>> = {
  internal: internalTarget,
  gateway: gatewayTarget,
  pulumi: pulumiTarget,
  meltano: meltanoTarget,
  powersync: powersyncTarget,
};

/** Fills defaults and validates names (INVALID_IDENTIFIER on anything but letters, digits, underscores). */
export function resolveTarget(target: MigrationTarget | AdapterMigrationTarget): ResolvedTarget {
  const adapter = (target as { adapter?: unknown }).adapter;
  const kind = typeof adapter === 'string' && Object.hasOwn(TARGET_KINDS, adapter) ? TARGET_KINDS[adapter] : undefined;
  if (!kind) {
    throw new PgStateError(
      'BAD_SETTING',
      `Unknown adapter ${JSON.stringify(String(adapter)).slice(0, 60)} to migrate.`,
      {
        fix: `Use adapter ${Object.keys(TARGET_KINDS)
          .map((k) => `"${k}"`)
          .join(', ')}.`,
      },
    );
  }
  return { ...kind.resolve(target as AdapterMigrationTarget), owner: kind.adapter };
}
