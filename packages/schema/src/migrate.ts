import {
  type AdapterMigrationTarget,
  LayoutMismatchError,
  PgStateError,
  pgErrorKind,
  qualifiedName,
  quoteIdentifier,
  toPgStateError,
  validateIdentifier,
  withTransaction,
} from '@pgstate/core';
import { is } from 'drizzle-orm';
import { getTableConfig, isPgSequence, PgTable } from 'drizzle-orm/pg-core';
import type pg from 'pg';
import { INTERNAL_DEFAULT_SCHEMA } from './internal.js';
import { loadMigrationSet, renderMigration } from './migration-files.js';
import type { Queryable } from './resolved.js';
import { type MigrationTarget, type ResolvedTarget, resolveTarget } from './targets.js';

/** A target as the migrator takes it: the typed union, or any adapter's `{adapter, layout?, schema?, table?}`. */
type Target = MigrationTarget | AdapterMigrationTarget;

/** Anything that hands out a dedicated connection: a `pg.Pool`. */
export type ConnectionSource = Pick<pg.Pool, 'connect'>;

export interface MigrationOptions {
  /** Schema of pgstate's own tables (journal, leases). Default `pgstate`. */
  internalSchema?: string;
}

export interface MigrateOptions extends MigrationOptions {
  /** Compute and return the SQL without writing anything. */
  dryRun?: boolean;
  /**
   * How long to wait for another process's migrations (the advisory lock) before failing with LOCK_TIMEOUT.
   * Default: wait as long as it takes.
   */
  lockTimeoutMs?: number;
}

/** One migration for one configuration, with the SQL it runs (names substituted). */
export interface PlannedMigration {
  config: string;
  adapter: string;
  schema: string;
  table: string | null;
  migration: string;
  hash: string;
  statements: string[];
}

export interface MigrateResult {
  dryRun: boolean;
  /**
   * How the tables differ from what the adapter needs, among configurations with nothing pending (see
   * `ConfigStatus.shape`). A migration that is not a dry run throws MIGRATIONS_PENDING instead of returning any.
   */
  shape: string[];
  /** What this call applied (or, for a dry run, would apply), in order. Empty when already up to date. */
  applied: PlannedMigration[];
  /** The same as one SQL script, for printing. */
  sql: string;
}

export interface AppliedMigration {
  migration: string;
  hash: string;
  appliedAt: Date;
  appliedBy: string;
  /** The committed file's hash differs from what was applied (the package's SQL was edited afterwards). */
  modified: boolean;
}

export interface ConfigStatus {
  config: string;
  adapter: string;
  schema: string;
  table: string | null;
  applied: AppliedMigration[];
  pending: string[];
  /**
   * Only when nothing is pending: what the tables lack that the adapter's definitions have (a table, a column, the
   * unique index of the primary key), e.g. a column dropped by hand after the journal recorded its migration.
   */
  shape: string[];
}

export interface MigrationStatus {
  /** Nothing pending and no shape problem. */
  upToDate: boolean;
  /** The internal configuration first, then the target's. */
  configs: ConfigStatus[];
}

/**
 * One session-level advisory lock key for every pgstate migration in a database, held on the dedicated connection
 * while migrations run. Session-level on purpose: each migration transaction then starts after the lock was granted,
 * so it sees the catalog as the previous holder committed it (a transaction-level lock taken inside the migration
 * transaction leaves stale catalog caches: `to_regclass` and schema lookups miss what the other process created).
 * The lock dies with the connection, so a killed migrator leaves nothing behind. Run migrations on a direct
 * connection, not through PgBouncer in transaction mode (an up-to-date `migrate` takes no lock at all).
 */
export const MIGRATION_LOCK_KEY = '7450738237593361921';

/**
 * For the `internal` target, its schema is the journal's schema: one name, not two that could disagree. A target
 * may keep its journal elsewhere by default (PowerSync: in its own schema, see `ResolvedTarget.journalSchema`).
 */
function normalized<T extends MigrationOptions>(target: Target, options: T): T {
  const resolved = resolveTarget(target);
  if (resolved.journalSchema !== undefined && options.internalSchema === undefined) {
    return { ...options, internalSchema: resolved.journalSchema };
  }
  if (resolved.adapter !== 'internal' || target.schema === undefined) return options;
  if (options.internalSchema !== undefined && options.internalSchema !== target.schema) {
    throw new PgStateError(
      'BAD_SETTING',
      `The internal target's schema "${target.schema}" differs from internalSchema "${options.internalSchema}".`,
      { fix: "Give the schema of pgstate's own tables once: as the target schema or as internalSchema." },
    );
  }
  return { ...options, internalSchema: target.schema };
}

function configsFor(target: Target, options: MigrationOptions): ResolvedTarget[] {
  const resolved = resolveTarget(target);
  if (resolved.adapter === 'internal') return [resolved];
  const internal = resolveTarget({ adapter: 'internal', schema: options.internalSchema ?? INTERNAL_DEFAULT_SCHEMA });
  return [internal, resolved];
}

function journalName(options: MigrationOptions): string {
  return qualifiedName(options.internalSchema ?? INTERNAL_DEFAULT_SCHEMA, 'migrations');
}

async function journalExists(client: pg.ClientBase, options: MigrationOptions): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [
    journalName(options),
  ]);
  return rows[0]?.ok === true;
}

async function readStatus(
  client: pg.ClientBase,
  configs: ResolvedTarget[],
  options: MigrationOptions,
): Promise<MigrationStatus> {
  const exists = await journalExists(client, options);
  const rows = exists
    ? (
        await client.query<{ config: string; migration: string; hash: string; applied_at: Date; applied_by: string }>(
          `SELECT config, migration, hash, applied_at, applied_by FROM ${journalName(options)}
           WHERE config = ANY($1::text[]) ORDER BY migration`,
          [configs.map((c) => c.config)],
        )
      ).rows
    : [];
  const result: ConfigStatus[] = [];
  for (const c of configs) {
    const files = loadMigrationSet(c.set);
    const mine = rows.filter((r) => r.config === c.config);
    const pending = files.filter((f) => !mine.some((r) => r.migration === f.name)).map((f) => f.name);
    result.push({
      config: c.config,
      adapter: c.adapter,
      schema: c.schema,
      table: c.table,
      applied: mine.map((r) => ({
        migration: r.migration,
        hash: r.hash,
        appliedAt: r.applied_at,
        appliedBy: r.applied_by,
        modified: files.some((f) => f.name === r.migration && f.hash !== r.hash),
      })),
      pending,
      shape: pending.length === 0 ? await shapeProblems(client, c) : [],
    });
  }
  return { upToDate: result.every((c) => c.pending.length === 0 && c.shape.length === 0), configs: result };
}

/**
 * What the tables of a configuration lack compared with its Drizzle definitions: the journal only says which
 * migrations ran, not that the tables still look that way (or that a table another tool created and a migration
 * adopted has what pgstate needs). Checked: each table exists, has each column, and has a unique index on its
 * primary key columns (what `ON CONFLICT` needs). Types are not compared: hosts' tables may use json for text.
 */
async function shapeProblems(client: pg.ClientBase, config: ResolvedTarget): Promise<string[]> {
  const problems: string[] = [];
  for (const object of Object.values(config.objects())) {
    if (!is(object, PgTable)) continue;
    const table = getTableConfig(object);
    const name = `${table.schema ?? 'public'}.${table.name}`;
    const { rows } = await client.query<{ columns: string[] | null; keys: string[] | null }>(
      `SELECT (SELECT array_agg(attname::text) FROM pg_attribute
                WHERE attrelid = t.oid AND attnum > 0 AND NOT attisdropped) AS columns,
              (SELECT array_agg(k.cols) FROM (
                 SELECT string_agg(a.attname::text, ',' ORDER BY a.attname::text) AS cols
                 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = t.oid AND i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL
                 GROUP BY i.indexrelid) k) AS keys
       FROM (SELECT to_regclass($1) AS oid) t WHERE t.oid IS NOT NULL`,
      [qualifiedName(table.schema ?? 'public', table.name)],
    );
    const found = rows[0];
    if (!found) {
      problems.push(`table ${name} is missing`);
      continue;
    }
    const missing = table.columns.map((c) => c.name).filter((c) => !(found.columns ?? []).includes(c));
    for (const column of missing) problems.push(`${name} has no column ${column}`);
    const primary = [
      ...table.columns.filter((c) => c.primary).map((c) => c.name),
      ...table.primaryKeys.flatMap((pk) => pk.columns.map((c) => c.name)),
    ].sort();
    if (primary.length && !(found.keys ?? []).includes(primary.join(','))) {
      problems.push(`${name} has no primary key or unique index on (${primary.join(', ')})`);
    }
  }
  return problems;
}

function plan(configs: ResolvedTarget[], status: MigrationStatus): PlannedMigration[] {
  return configs.flatMap((c, i) =>
    loadMigrationSet(c.set)
      .filter((f) => status.configs[i]?.pending.includes(f.name))
      .map((f) => ({
        config: c.config,
        adapter: c.adapter,
        schema: c.schema,
        table: c.table,
        migration: f.name,
        hash: f.hash,
        statements: renderMigration(f, c),
      })),
  );
}

function toScript(planned: PlannedMigration[]): string {
  return planned
    .map((p) => `-- ${p.config}: ${p.migration}\n${p.statements.map((s) => `${s};`).join('\n')}\n`)
    .join('\n');
}

/** Which migrations of a configuration (and of pgstate's internal tables) are applied and which are pending. */
export async function migrationStatus(
  pool: ConnectionSource,
  target: Target,
  options: MigrationOptions = {},
): Promise<MigrationStatus> {
  options = normalized(target, options);
  const configs = configsFor(target, options);
  let client: pg.PoolClient | undefined;
  try {
    client = await pool.connect();
    return await readStatus(client, configs, options);
  } catch (error) {
    throw migrationError(error, 'read the migration status of', configs[configs.length - 1]!.config);
  } finally {
    client?.release();
  }
}

/** Throws MIGRATIONS_PENDING (with the command to run) unless the configuration is fully migrated. */
export async function assertMigrated(
  pool: ConnectionSource,
  target: Target,
  options: MigrationOptions = {},
): Promise<void> {
  const status = await migrationStatus(pool, target, options);
  if (status.upToDate) return;
  const pending = status.configs.flatMap((c) => c.pending.map((m) => `${c.config} ${m}`));
  if (pending.length === 0) assertShape(status.configs.flatMap((c) => c.shape));
  throw new PgStateError('MIGRATIONS_PENDING', `Database migrations are pending: ${pending.join(', ')}.`, {
    fix: 'Run `pgstate migrate` (with a role that may create tables) before starting the adapter.',
  });
}

/**
 * Brings one configuration (and pgstate's internal tables) up to date. Safe when many processes call it at once:
 * each migration runs in its own transaction under a database-wide advisory lock and re-checks the journal after
 * taking it, so every migration is applied exactly once per configuration. Up to date -> no lock, no writes, so a
 * DML-only runtime role may call it after an administrator migrated.
 */
export async function migrate(
  pool: ConnectionSource,
  target: Target,
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  options = normalized(target, options);
  const configs = configsFor(target, options);
  let client: pg.PoolClient | undefined;
  let current: PlannedMigration | undefined;
  let locked = false;
  try {
    client = await pool.connect();
    const status = await readStatus(client, configs, options);
    const planned = plan(configs, status);
    // Never apply one layout's migrations onto a table of another layout's shape (or plan them in a dry run).
    for (const config of configs)
      if (planned.some((p) => p.config === config.config)) await assertNoOtherLayout(client, config);
    const shape = status.configs.flatMap((c) => c.shape);
    if (options.dryRun) return { dryRun: true, applied: planned, sql: toScript(planned), shape };
    if (planned.length === 0) {
      assertShape(shape);
      return { dryRun: false, applied: planned, sql: toScript(planned), shape };
    }
    const applied: PlannedMigration[] = [];
    await lockMigrations(client, options.lockTimeoutMs);
    locked = true;
    for (const migration of planned) {
      current = migration;
      // On the connection that holds the session lock (a pool would hand out another one).
      const done = await withTransaction(client, async (tx) => {
        // Re-check under the lock: another process may have applied it while we waited.
        if (await isApplied(tx, migration, options)) return false;
        await ensureSchema(tx, migration.schema);
        for (const statement of migration.statements) await tx.query(statement);
        await tx.query(
          `INSERT INTO ${journalName(options)} (config, migration, adapter, schema_name, table_name, hash)
           VALUES ($1, $2, $3, $4, $5, $6)`,
          [migration.config, migration.migration, migration.adapter, migration.schema, migration.table, migration.hash],
        );
        return true;
      });
      if (done) applied.push(migration);
    }
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]);
    locked = false;
    current = undefined;
    const after = (await readStatus(client, configs, options)).configs.flatMap((c) => c.shape);
    assertShape(after);
    return { dryRun: false, applied, sql: toScript(applied), shape: [] };
  } catch (error) {
    const config = current?.config ?? configs[configs.length - 1]!.config;
    throw migrationError(error, current ? `apply migration ${current.migration} to` : 'plan migrations for', config);
  } finally {
    // A connection that may still hold the session lock is closed, never returned to the pool.
    client?.release(locked ? true : undefined);
  }
}

/**
 * Refuses a configuration whose own table (same name) exists in another layout's shape, e.g. the bytea layout's
 * migrations onto Pulumi's native `data json` table: `CREATE TABLE IF NOT EXISTS` would adopt it, the journal would
 * say done, and the first write would fail.
 */
async function assertNoOtherLayout(client: Queryable, config: ResolvedTarget): Promise<void> {
  if (!config.detect || config.layout === null) return;
  const own = ownTables(config);
  for (const found of await config.detect(client)) {
    if (own.has(found.table) && !found.layouts.includes(config.layout)) {
      throw new LayoutMismatchError(
        config.owner ?? config.adapter,
        config.layout,
        found,
        'its migrations would not fit it',
      );
    }
  }
}

/**
 * For commands that only read: refuses a configuration whose tables are missing or of another layout's shape while
 * tables of another layout are there (e.g. `stacks` in the bytea layout on Pulumi's native table), naming the
 * layout that fits. Reads the catalog only; a database without any of the adapter's tables passes.
 */
export async function assertLayout(pool: ConnectionSource, target: Target): Promise<void> {
  const config = resolveTarget(target);
  if (!config.detect || config.layout === null) return;
  const client = await pool.connect();
  try {
    const found = await config.detect(client);
    if (found.length === 0 || found.some((f) => f.layouts.includes(config.layout!))) return;
    const own = ownTables(config);
    const mine = found.find((f) => own.has(f.table));
    const adapter = config.owner ?? config.adapter;
    if (mine) throw new LayoutMismatchError(adapter, config.layout, mine, 'its columns are of that layout');
    const other = found[0]!;
    throw new LayoutMismatchError(
      adapter,
      config.layout,
      other,
      `the ${config.layout} layout's tables (${[...own].join(', ')}) do not exist here`,
    );
  } catch (error) {
    throw migrationError(error, 'check the table layout of', config.config);
  } finally {
    client.release();
  }
}

/** `schema.table` of every table a configuration creates. */
function ownTables(config: ResolvedTarget): Set<string> {
  const names = Object.values(config.objects())
    .filter((o) => is(o, PgTable))
    .map((t) => {
      const c = getTableConfig(t as PgTable);
      return `${c.schema ?? 'public'}.${c.name}`;
    });
  return new Set(names);
}

/** Migrations all recorded, yet the tables lack something: say what, rather than let the adapter fail later. */
function assertShape(problems: string[]): void {
  if (problems.length === 0) return;
  throw new PgStateError(
    'MIGRATIONS_PENDING',
    `The migration journal is up to date, but the tables are not as pgstate needs them: ${problems.join('; ')}.`,
    {
      fix: 'Someone changed the tables after they were migrated: restore what is missing (see `pgstate migrate --dry-run` of a fresh schema for the definitions), then run `pgstate migrate --check`.',
    },
  );
}

async function lockMigrations(client: pg.ClientBase, timeoutMs: number | undefined): Promise<void> {
  if (timeoutMs === undefined) {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
    return;
  }
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
    throw new PgStateError('BAD_SETTING', `lockTimeoutMs must be a positive integer, got ${String(timeoutMs)}.`, {
      fix: 'Pass a number of milliseconds such as 60000, or leave it out to wait without limit.',
    });
  }
  // lock_timeout applies to advisory locks too; set and reset it around this one wait only.
  await client.query(`SET lock_timeout = ${timeoutMs}`);
  try {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
  } catch (error) {
    if (pgErrorKind(error) === 'lock-not-available') {
      throw new PgStateError('LOCK_TIMEOUT', `Another process kept pgstate's migration lock for ${timeoutMs} ms.`, {
        fix:
          'Wait for the other `pgstate migrate` to finish, or find it with ' +
          `\`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = ${BigInt(MIGRATION_LOCK_KEY) & 0xffffffffn}\`.`,
        cause: error,
      });
    }
    throw error;
  } finally {
    await client.query('RESET lock_timeout').catch(() => {});
  }
}

async function isApplied(client: pg.ClientBase, m: PlannedMigration, options: MigrationOptions): Promise<boolean> {
  if (!(await journalExists(client, options))) return false;
  const { rowCount } = await client.query(
    `SELECT 1 FROM ${journalName(options)} WHERE config = $1 AND migration = $2`,
    [m.config, m.migration],
  );
  return rowCount === 1;
}

// CREATE SCHEMA needs CREATE on the database even with IF NOT EXISTS: only issue it when the schema is missing,
// so a role that owns its existing schema (e.g. `public`) can migrate.
async function ensureSchema(client: pg.ClientBase, schema: string): Promise<void> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  if (rowCount === 0) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema, 'schema name')}`);
}

function migrationError(error: unknown, action: string, config: string): PgStateError {
  if (error instanceof PgStateError) return error;
  const message = (error as { message?: unknown } | null)?.message;
  const detail = typeof message === 'string' ? message : String(error);
  if (pgErrorKind(error) === 'insufficient-privilege') {
    return new PgStateError('PERMISSION_DENIED', `Could not ${action} ${config}: ${detail}.`, {
      fix:
        'Run `pgstate migrate` once as an administrator (a role that may create in the schema, e.g. the database ' +
        'owner); the adapters then only need the grants `grantRuntimeAccess()` from @pgstate/schema gives.',
      cause: error,
    });
  }
  // Connection problems (unreachable, auth, TLS, database missing) keep core's codes and fixes.
  const mapped = toPgStateError(error);
  if (mapped.code !== 'QUERY_FAILED') return mapped;
  return new PgStateError('QUERY_FAILED', `Could not ${action} ${config}: ${mapped.message}.`, {
    fix: 'Check the server log and the migration SQL (`pgstate migrate --dry-run`), then retry.',
    cause: mapped.cause ?? error,
  });
}

/**
 * The GRANT statements a runtime role needs for a configuration: USAGE on its schemas, SELECT/INSERT/UPDATE/DELETE
 * on its tables, USAGE/SELECT/UPDATE on its sequences, SELECT on the migration journal (for status checks) and
 * DML on the internal leases table. Nothing that allows DDL.
 */
export function runtimeAccessSql(target: Target, role: string, options: MigrationOptions = {}): string[] {
  options = normalized(target, options);
  const grantee = quoteIdentifier(role, 'role name');
  const configs = configsFor(target, options);
  const statements: string[] = [];
  for (const config of configs) {
    statements.push(`GRANT USAGE ON SCHEMA ${quoteIdentifier(config.schema, 'schema name')} TO ${grantee}`);
    for (const object of Object.values(config.objects())) {
      if (is(object, PgTable)) {
        const { name, schema } = getTableConfig(object);
        const journal = config.adapter === 'internal' && name === 'migrations';
        const rights = journal ? 'SELECT' : 'SELECT, INSERT, UPDATE, DELETE';
        statements.push(`GRANT ${rights} ON TABLE ${qualifiedName(schema ?? 'public', name)} TO ${grantee}`);
      } else if (isPgSequence(object) && object.seqName) {
        const sequence = qualifiedName(object.schema ?? 'public', object.seqName);
        statements.push(`GRANT USAGE, SELECT, UPDATE ON SEQUENCE ${sequence} TO ${grantee}`);
      }
    }
  }
  return [...new Set(statements)];
}

/** Runs `runtimeAccessSql` in one transaction (as an administrator, after `migrate`). */
export async function grantRuntimeAccess(
  pool: ConnectionSource,
  target: Target,
  role: string,
  options: MigrationOptions = {},
): Promise<string[]> {
  options = normalized(target, options);
  validateIdentifier(role, 'role name');
  const statements = runtimeAccessSql(target, role, options);
  try {
    await withTransaction(pool, async (client) => {
      for (const statement of statements) await client.query(statement);
    });
    return statements;
  } catch (error) {
    throw migrationError(error, `grant runtime access to role ${role} on`, configsFor(target, options).at(-1)!.config);
  }
}
