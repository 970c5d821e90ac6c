/**
 * The adapter contract: what one adapter (Pulumi, Meltano, PowerSync, ...) tells every pgstate command about itself.
 * Each adapter package exports one `AdapterDefinition`; the CLI keeps them in one registry and loops over it, so every
 * command accepts the same settings for every adapter and layout. Types and two small helpers only: core never
 * imports an adapter.
 */
import type pg from 'pg';
import type { BucketHandler } from './bucket-handler.js';
import { PgStateError } from './errors.js';
import type { ConnectionSettings } from './settings.js';

/** One table layout of an adapter (e.g. Pulumi's `bytea` and `native`). */
export interface AdapterLayout {
  /** The name shown in output and docs. */
  name: string;
  /** Older or alternative names, accepted everywhere a layout is read. */
  aliases: readonly string[];
  /** One line: what the tables look like and who writes them. */
  summary: string;
  /** Whether the `table` setting applies (layouts with fixed table names refuse it). */
  table: boolean;
}

/** Where one adapter configuration comes from, highest priority first: flags, URL parameters, URL path, env. */
export interface AdapterSettingInput {
  /** Command flags by setting name (`layout`, `schema`, `table`, `key_prefix`, ...). */
  flags?: Readonly<Record<string, string | undefined>>;
  /** The URL query parameters the adapter declared in `urlParams` (`ConnectionSettings.adapterParams`). */
  urlParams?: Readonly<Record<string, string>>;
  /** The schema of a `/database/schema` URL path (or a `schema` connection field). */
  schema?: string;
  /** The database connected to (some layouts derive a default from it). */
  database?: string;
  env?: Readonly<Record<string, string | undefined>>;
}

/** One adapter configuration: which layout, and where its tables are. */
export interface AdapterSettings {
  adapter: string;
  /** Canonical layout name. */
  layout: string;
  /** Undefined: the adapter's default schema. */
  schema?: string;
  /** Undefined: the layout's default table (or a layout with fixed names). */
  table?: string;
  /** The adapter's other settings by URL parameter name (e.g. Pulumi's `key_prefix`). */
  extra: Readonly<Record<string, string>>;
}

/** What `@pgstate/schema`'s migrator takes (structurally its `MigrationTarget`). */
export interface AdapterMigrationTarget {
  adapter: string;
  layout?: string;
  schema?: string;
  table?: string;
}

/** A layout found in the catalog: which table has which layout's shape. */
export interface DetectedLayout {
  /** Canonical layout names the table fits (one-table Meltano layouts share a shape). */
  layouts: readonly string[];
  /** `schema.table` as found. */
  table: string;
}

/** A flag an adapter adds to some commands (e.g. PowerSync's `--powersync-notify` on `doctor`). */
export interface AdapterFlag {
  /** Long flag without the dashes, e.g. `powersync-notify`. */
  flag: string;
  /** Value placeholder for help, e.g. `<mode>`. */
  value: string;
  description: string;
  commands: readonly ('doctor' | 'migrate' | 'serve')[];
}

/** One finding of `pgstate doctor` (its JSON `checks[]` entry). */
export interface AdapterDoctorFinding {
  id: string;
  status: 'pass' | 'warn' | 'fail' | 'skip';
  detail: string;
  fix?: string;
  code?: string;
  data?: Record<string, unknown>;
}

/** What `pgstate doctor` hands an adapter's own checks. */
export interface AdapterDoctorContext {
  settings: AdapterSettings;
  connection: ConnectionSettings;
  pool: pg.Pool;
  env: Readonly<Record<string, string | undefined>>;
  /** Values of the adapter's `flags`, by flag name. */
  flags: Readonly<Record<string, string | undefined>>;
  /** The adapter was named explicitly (`--adapter`), so unused parts are failures, not warnings. */
  strict: boolean;
  /** Some of the adapter's tables exist. */
  installed: boolean;
  /** The storage connection goes through transaction pooling (PgBouncer). */
  transactionPooling: boolean;
  /** Connects to another URL once: whether it goes through transaction pooling, or why it could not connect. */
  probePooling(url: string): Promise<{ where: string; pooled: boolean } | { where: string; error: PgStateError }>;
}

/** The options `serve` gives a bucket-handler factory. */
export interface AdapterBucketOptions {
  pool: pg.Pool;
  settings: AdapterSettings;
  /** The key prefix of `--bucket NAME=ADAPTER:PREFIX` ('' when none). */
  prefix: string;
  /** Schema of pgstate's migration journal, when not the default. */
  internalSchema?: string;
}

export interface AdapterDefinition {
  /** `--adapter` value and registry key. */
  name: string;
  /** One line for help output. */
  summary: string;
  layouts: readonly AdapterLayout[];
  defaultLayout: string;
  /** URL query parameters the adapter reads (`?schema=&table=&layout=`); never sent to the server. */
  urlParams: readonly string[];
  /** Accepts the `postgres://host/database/schema` URL form. */
  schemaPath: boolean;
  /** Adapter-specific flags some commands add. */
  flags?: readonly AdapterFlag[];
  /** The one settings parser every command uses: flags > URL parameters > URL path > environment > defaults. */
  resolveSettings(input: AdapterSettingInput): AdapterSettings;
  /** The `@pgstate/schema` migration target of a configuration. */
  migrationTarget(settings: AdapterSettings): AdapterMigrationTarget;
  /** Tables of this adapter's layouts that exist around a configuration's names (reads only). */
  detectLayouts(client: pg.ClientBase | pg.Pool, settings: AdapterSettings): Promise<DetectedLayout[]>;
  /** A bucket for `pgstate serve`; `prefix` says whether `NAME=ADAPTER:PREFIX` is meaningful. */
  bucketHandler?: { prefix: boolean; create(options: AdapterBucketOptions): BucketHandler };
  /** Checks only this adapter needs (connection, rights, migrations and layout are checked for every adapter). */
  doctorChecks?(context: AdapterDoctorContext): Promise<AdapterDoctorFinding[]>;
}

/** The layout a name or alias means; BAD_SETTING naming the choices otherwise. */
export function findLayout(adapter: Pick<AdapterDefinition, 'name' | 'layouts'>, name: string): AdapterLayout {
  const found = adapter.layouts.find((l) => l.name === name || l.aliases.includes(name));
  if (found) return found;
  throw new PgStateError(
    'BAD_SETTING',
    `Unknown ${title(adapter.name)} layout ${JSON.stringify(String(name)).slice(0, 60)}.`,
    { fix: `Use layout ${adapter.layouts.map(layoutChoice).join(', ')}.` },
  );
}

/** `pulumi` -> `Pulumi`, for messages. */
function title(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function layoutChoice(layout: AdapterLayout): string {
  return `"${layout.name}"${layout.aliases.length ? ` (or ${layout.aliases.map((a) => `"${a}"`).join(', ')})` : ''}`;
}

/**
 * A command pointed at tables of another layout's shape. The message names the layout that fits; the CLI adds the
 * flag to use (library errors never name CLI flags).
 */
export class LayoutMismatchError extends PgStateError {
  readonly adapter: string;
  readonly requested: string;
  readonly found: string;
  readonly table: string;
  constructor(adapter: string, requested: string, found: DetectedLayout, detail: string) {
    const right = found.layouts[0] ?? 'unknown';
    super('BAD_SETTING', `${found.table} has the ${title(adapter)} ${right} layout, not ${requested}: ${detail}.`, {
      fix: `Use the ${title(adapter)} layout "${right}" for ${found.table}.`,
    });
    this.name = 'LayoutMismatchError';
    this.adapter = adapter;
    this.requested = requested;
    this.found = right;
    this.table = found.table;
  }
}
