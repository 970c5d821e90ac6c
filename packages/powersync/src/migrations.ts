/**
 * The storage's migration agent: what the PowerSync service's MigrationManager calls (service-core's
 * `AbstractPowerSyncMigrationAgent` contract at 06b4092fc). At startup with auto-migration on the service runs
 * `run({direction: 'up', migrations})`; `powersync migrate up|down` does the same with either direction.
 *
 * The storage tables themselves are versioned by @pgstate/schema's journal (SQL files applied once each); for the
 * service they are one internal migration, `pgstate-powersync-storage`, run before the service's own migrations:
 * up creates / upgrades every table, down drops them (all replicated data) as the official module's down does.
 * The service-side log (`last_run` + history) lives in `service_migrations`; runs are serialized by a lease in
 * pgstate's `leases` table (single statements, so it also works behind PgBouncer in transaction mode).
 */
import { type HeldLease, isPgStateError, LeaseLocks, PgStateError } from '@pgstate/core';
import type { NormalizedStorageConfig } from './config.js';
import { StorageDb } from './db.js';
import { defaultLogger } from './logger.js';
import {
  Direction,
  type ExecutedMigration,
  type LockAcquireOptions,
  type LockCallback,
  type LockHandle,
  type LockManager,
  type Logger,
  type Migration,
  type MigrationAgent,
  type MigrationState,
  type MigrationStore,
  type PowerSyncMigrationContext,
  type PowerSyncMigrationGenerics,
  type RunMigrationParams,
} from './types.js';

/** Name of the internal migration standing for all of @pgstate/schema's PowerSync tables. */
export const STORAGE_MIGRATION_NAME = 'pgstate-powersync-storage';

/** Same default as upstream: wait up to 3 minutes for another process's migration run. */
export const DEFAULT_MAX_LOCK_WAIT_MS = 3 * 60 * 1000;

const LOCK_NAME = 'powersync.service-migrations';
const LOCK_TTL_MS = 60_000;

async function tableExists(db: StorageDb, qualified: string): Promise<boolean> {
  const row = await db.first<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [qualified]);
  return row?.ok === true;
}

/** `MigrationStore` on `service_migrations` (one row, id 1). */
export class PgStateMigrationStore implements MigrationStore {
  constructor(private readonly db: StorageDb) {}

  /** Creates the storage tables (the store's table is one of them) when missing. */
  async init(): Promise<void> {
    await this.db.ensureMigrated();
  }

  /** True when the store's table exists (before the first migration, or after the schema was dropped, it doesn't). */
  exists(): Promise<boolean> {
    return tableExists(this.db, this.db.names.serviceMigrations);
  }

  async load(): Promise<MigrationState | undefined> {
    if (!(await this.exists())) return undefined;
    const row = await this.db.first<{
      last_run: string;
      log: { name: string; direction: Direction; timestamp: string }[];
    }>(`SELECT last_run, log FROM ${this.db.names.serviceMigrations} WHERE id = 1`);
    if (row == null) return undefined;
    return {
      last_run: row.last_run,
      log: row.log.map((entry) => ({ ...entry, timestamp: new Date(entry.timestamp) })),
    };
  }

  async save(state: MigrationState): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.db.names.serviceMigrations} (id, last_run, log) VALUES (1, $1, $2::jsonb)
       ON CONFLICT (id) DO UPDATE SET last_run = EXCLUDED.last_run, log = EXCLUDED.log`,
      [state.last_run, JSON.stringify(state.log)],
    );
  }

  async clear(): Promise<void> {
    if (await this.exists()) await this.db.query(`DELETE FROM ${this.db.names.serviceMigrations}`);
  }
}

/** `LockManager` over one lease row: `acquire` gives null when another process holds it past `max_wait_ms`. */
export class PgStateMigrationLocks implements LockManager {
  private readonly leases: LeaseLocks;

  constructor(
    private readonly db: StorageDb,
    private readonly name = LOCK_NAME,
  ) {
    this.leases = new LeaseLocks(db.pool, { schema: db.config.schema, table: 'leases' });
  }

  /** The lease table is one of pgstate's internal tables, created with the storage tables. */
  async init(): Promise<void> {
    await this.db.ensureMigrated();
  }

  async acquire(options?: LockAcquireOptions): Promise<LockHandle | null> {
    let held: HeldLease;
    try {
      held = await this.leases.acquire(this.name, {
        ttlMs: LOCK_TTL_MS,
        timeoutMs: options?.max_wait_ms ?? 0,
        retryMs: 200,
        info: { purpose: 'PowerSync service migrations' },
      });
    } catch (error) {
      if (isPgStateError(error) && error.code === 'LOCK_TIMEOUT') return null;
      throw error;
    }
    return {
      refresh: async () => {
        held.assertHeld();
        if (!(await this.leases.renew(held.name, held.owner, LOCK_TTL_MS))) held.assertHeld();
      },
      release: () => held.release(),
    };
  }

  async lock(handler: LockCallback, options?: LockAcquireOptions): Promise<void> {
    const handle = await this.acquire(options);
    if (handle == null) {
      throw new PgStateError('LOCK_TIMEOUT', `The lock "${this.name}" is held by another process.`, {
        fix: 'Wait for the other PowerSync migration to finish; an abandoned lease expires after a minute.',
      });
    }
    try {
      await handler(() => handle.refresh());
    } finally {
      await handle.release();
    }
  }
}

export interface PgStateMigrationAgentOptions {
  /** Default logger of `run()` when the caller passes none (the module hands in the service's logger). */
  logger?: Logger;
}

/** service-core's migration agent contract on @pgstate/schema's migrations. */
export class PgStateMigrationAgent implements MigrationAgent<PowerSyncMigrationGenerics> {
  readonly db: StorageDb;
  readonly store: PgStateMigrationStore;
  readonly locks: PgStateMigrationLocks;
  private readonly logger: Logger;

  constructor(
    readonly config: NormalizedStorageConfig,
    options: PgStateMigrationAgentOptions = {},
  ) {
    this.db = new StorageDb(config);
    this.store = new PgStateMigrationStore(this.db);
    this.locks = new PgStateMigrationLocks(this.db);
    this.logger = options.logger ?? defaultLogger;
  }

  /** The storage schema as one migration; its functions use this agent's config, not the migration context. */
  async loadInternalMigrations(): Promise<Migration<PowerSyncMigrationContext>[]> {
    return [
      {
        name: STORAGE_MIGRATION_NAME,
        up: async () => {
          await this.db.ensureMigrated();
        },
        down: async () => {
          await this.dropStorageTables();
        },
      },
    ];
  }

  async run(params: RunMigrationParams<PowerSyncMigrationGenerics>): Promise<void> {
    const logger = params.logger ?? this.logger;
    if (params.direction !== Direction.Up && params.direction !== Direction.Down) {
      throw new PgStateError('INVALID_INPUT', `Unknown migration direction ${JSON.stringify(params.direction)}.`, {
        fix: 'Use "up" or "down".',
      });
    }
    if (params.direction === Direction.Down && !(await this.store.exists())) {
      // Nothing was ever migrated here (or the schema is gone): there is nothing to take down, and no table to lock.
      logger.info('Running migrations down: no PowerSync storage tables, nothing to do');
      return;
    }
    if (params.direction === Direction.Up) {
      // Creates or upgrades the tables (the store and the lease table among them). Down never creates anything.
      await this.locks.init();
      await this.store.init();
    }

    logger.debug('Acquiring lock for migrations');
    const handle = await this.locks.acquire({ max_wait_ms: params.maxLockWaitMs ?? DEFAULT_MAX_LOCK_WAIT_MS });
    if (handle == null) {
      throw new PgStateError('LOCK_TIMEOUT', 'Could not acquire the PowerSync migration lock.', {
        fix: 'Another process is migrating this storage; wait for it, or raise maxLockWaitMs.',
      });
    }
    try {
      const state = await this.store.load();
      logger.info(`Running migrations ${params.direction}`);
      const log = [...(state?.log ?? [])];
      for await (const executed of this.execute(params, state, logger)) {
        log.push(executed);
        await this.store.save({ last_run: executed.name, log });
      }
    } finally {
      logger.debug('Releasing migration lock');
      await handle.release();
      logger.debug('Done with migrations');
    }
  }

  /**
   * Runs the migrations after the last one run, in order (internal ones first; reversed for down), yielding each
   * one as it completes. Where to start follows upstream: the position of `last_run`, one further when the last
   * run went the same direction; no state means from the start going up and nothing going down.
   */
  protected async *execute(
    params: RunMigrationParams<PowerSyncMigrationGenerics>,
    state: MigrationState | undefined,
    logger: Logger,
  ): AsyncGenerator<ExecutedMigration> {
    let migrations = [...(await this.loadInternalMigrations()), ...params.migrations];
    if (params.direction === Direction.Down) migrations.reverse();

    let start = 0;
    if (state) {
      start = migrations.findIndex((m) => m.name === state.last_run);
      if (start === -1) {
        throw new PgStateError(
          'INVALID_INPUT',
          `The last run migration ${state.last_run} was not found in the given set of migrations.`,
          { fix: 'Run this storage with the service version (and modules) that migrated it last.' },
        );
      }
      const last = latestEntry(state.log, state.last_run);
      if (last == null) {
        throw new PgStateError('INVALID_INPUT', `Could not find last migration log entry for ${state.last_run}.`, {
          fix: 'The service_migrations row is inconsistent; reset it with resetStore() only if you know the schema state.',
        });
      }
      if (last.direction === params.direction) start += 1;
    } else if (params.direction === Direction.Down) {
      start = migrations.length;
    }
    migrations = migrations.slice(start);

    let done = 0;
    for (const migration of migrations) {
      if (params.count && params.count === done) return;
      logger.info(`Executing ${migration.name} (${params.direction})`);
      try {
        if (params.direction === Direction.Up) await migration.up(params.migrationContext as PowerSyncMigrationContext);
        else await migration.down(params.migrationContext as PowerSyncMigrationContext);
      } catch (error) {
        // Upstream's agent exits the process here; a thrown error makes the service (or `migrate`) exit instead,
        // with the failing migration named, and leaves the log at the last migration that succeeded.
        logger.error(`Failed`, error);
        throw new PgStateError(
          'QUERY_FAILED',
          `Migration ${migration.name} (${params.direction}) failed: ${(error as Error)?.message ?? String(error)}`,
          { fix: 'Fix the cause and run the migrations again; completed ones are not repeated.', cause: error },
        );
      }
      logger.debug('Success');
      yield { name: migration.name, direction: params.direction, timestamp: new Date() };
      done++;
    }
  }

  resetStore(): Promise<void> {
    return this.store.clear();
  }

  /**
   * Drops every storage table and sequence (all replicated data) and forgets their SQL migrations, so the next
   * `up` recreates them. The service's migration log, the journal and the leases stay.
   */
  private async dropStorageTables(): Promise<void> {
    const n = this.db.names;
    await this.db.transaction(async (client) => {
      await client.query(
        `DROP TABLE IF EXISTS ${n.bucketData}, ${n.bucketParameters}, ${n.currentData}, ${n.syncRules},
           ${n.sourceTables}, ${n.writeCheckpoints}, ${n.customWriteCheckpoints}, ${n.instance}, ${n.locks},
           ${n.connectionReportEvents}`,
      );
      await client.query(`DROP SEQUENCE IF EXISTS ${n.opIdSequence}, ${n.syncRulesIdSequence}`);
      await client.query(`DELETE FROM ${n.schema}.migrations WHERE config = $1`, [
        `powersync:${this.db.config.schema}`,
      ]);
    });
    this.db.forgetMigrated();
  }

  private disposed = false;

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.db.end();
  }
}

/** The newest log entry of `name`: latest timestamp, and the later one in the log when two share a timestamp. */
function latestEntry(log: ExecutedMigration[], name: string): ExecutedMigration | undefined {
  let best: ExecutedMigration | undefined;
  for (const entry of log) {
    if (entry.name !== name) continue;
    if (best == null || entry.timestamp.getTime() >= best.timestamp.getTime()) best = entry;
  }
  return best;
}
