// The migration agent through every member of service-core's migration agent contract (run up/down, count,
// resumption, additions, failures, resetStore, store, locks, loadInternalMigrations, dispose), the way the service's
// MigrationManager calls it: `agent.run({ ...params, migrations })`.
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  Direction,
  type Logger,
  type MigrationAgent,
  normalizeStorageConfig,
  PgStateMigrationAgent,
  PgStateStorageModule,
  type PgStateStorageProvider,
  type PowerSyncMigrationGenerics,
  type RunMigrationParams,
  STORAGE_MIGRATION_NAME,
} from '../src/index.js';

let url: string;
let drop: () => Promise<void>;
let admin: pg.Pool;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_migrations');
  url = db.url;
  drop = db.drop;
  admin = new pg.Pool({ connectionString: url, max: 2 });
});
afterAll(async () => {
  await admin?.end();
  await drop?.();
});

const configFor = (schema: string) => normalizeStorageConfig({ type: 'pgstate', uri: url, sslmode: 'disable', schema });

/** Test migrations that record what ran, like the service's registered migrations would act. */
function recorded(count: number, from = 0) {
  const results: string[] = [];
  const contexts: unknown[] = [];
  const migrations = Array.from({ length: count }, (_, k) => ({
    name: String(from + k),
    up: async (context: unknown) => {
      contexts.push(context);
      results.push(`up ${from + k}`);
    },
    down: async () => {
      results.push(`down ${from + k}`);
    },
  }));
  return { results, contexts, migrations };
}

/** What the service's MigrationManager does: hand the agent the registered migrations. */
const migrate = (
  agent: MigrationAgent,
  migrations: RunMigrationParams<PowerSyncMigrationGenerics>['migrations'],
  params: Omit<RunMigrationParams<PowerSyncMigrationGenerics>, 'migrations'>,
) => agent.run({ ...params, migrations });

async function exists(schema: string, name: string): Promise<boolean> {
  const { rows } = await admin.query('SELECT to_regclass($1) IS NOT NULL AS ok', [`${schema}.${name}`]);
  return rows[0].ok;
}

function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (level: string) => (message: string) => lines.push(`${level}: ${message}`);
  return { lines, info: push('info'), warn: push('warn'), error: push('error'), debug: push('debug') };
}

describe('PgStateMigrationAgent', () => {
  test('up creates the storage, down drops it, each migration runs once per direction, in order', async () => {
    await using agent = new PgStateMigrationAgent(configFor('ps_mig_a'));
    const { results, contexts, migrations } = recorded(5);
    const context = { service_context: { marker: 1 } };
    const logger = capture();

    expect(await agent.store.load()).toBeUndefined();
    await migrate(agent, migrations, { direction: Direction.Up, migrationContext: context, logger });
    expect(results).toEqual(['up 0', 'up 1', 'up 2', 'up 3', 'up 4']);
    expect(contexts.every((c) => c === context)).toBe(true);
    expect(await exists('ps_mig_a', 'sync_rules')).toBe(true);
    expect(logger.lines).toContain('info: Running migrations up');
    expect(logger.lines).toContain(`info: Executing ${STORAGE_MIGRATION_NAME} (up)`);
    const state = await agent.store.load();
    expect(state?.last_run).toBe('4');
    expect(state?.log.map((e) => `${e.name}:${e.direction}`)).toEqual([
      `${STORAGE_MIGRATION_NAME}:up`,
      '0:up',
      '1:up',
      '2:up',
      '3:up',
      '4:up',
    ]);
    expect(state?.log.every((e) => e.timestamp instanceof Date)).toBe(true);

    // Up again: nothing runs.
    await migrate(agent, migrations, { direction: Direction.Up });
    expect(results).toHaveLength(5);

    // Down: the service's migrations in reverse, then the storage tables go.
    results.length = 0;
    await migrate(agent, migrations, { direction: Direction.Down });
    expect(results).toEqual(['down 4', 'down 3', 'down 2', 'down 1', 'down 0']);
    expect(await exists('ps_mig_a', 'sync_rules')).toBe(false);
    expect(await exists('ps_mig_a', 'bucket_data')).toBe(false);
    expect((await agent.store.load())?.last_run).toBe(STORAGE_MIGRATION_NAME);

    // Down again: nothing runs, nothing is recreated.
    await migrate(agent, migrations, { direction: Direction.Down });
    expect(results).toHaveLength(5);
    expect(await exists('ps_mig_a', 'sync_rules')).toBe(false);

    // Up again: the tables come back (usable) and every migration runs again.
    results.length = 0;
    await migrate(agent, migrations, { direction: Direction.Up });
    expect(results).toEqual(['up 0', 'up 1', 'up 2', 'up 3', 'up 4']);
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM ps_mig_a.sync_rules');
    expect(rows[0].n).toBe(0);
  });

  test('a migration added later runs alone; count limits a run', async () => {
    await using agent = new PgStateMigrationAgent(configFor('ps_mig_b'));
    const first = recorded(3);
    await migrate(agent, first.migrations, { direction: Direction.Up });
    const added = recorded(2, 3);
    await migrate(agent, [...first.migrations, ...added.migrations], { direction: Direction.Up, count: 1 });
    expect(first.results).toEqual(['up 0', 'up 1', 'up 2']);
    expect(added.results).toEqual(['up 3']);
    await migrate(agent, [...first.migrations, ...added.migrations], { direction: Direction.Up });
    expect(added.results).toEqual(['up 3', 'up 4']);
    // Down by one, then up by one: the same migration is undone and redone.
    await migrate(agent, [...first.migrations, ...added.migrations], { direction: Direction.Down, count: 1 });
    expect(added.results).toEqual(['up 3', 'up 4', 'down 4']);
    await migrate(agent, [...first.migrations, ...added.migrations], { direction: Direction.Up });
    expect(added.results).toEqual(['up 3', 'up 4', 'down 4', 'up 4']);
  });

  test('a failing migration rejects with its name, keeps what completed, and the next run resumes there', async () => {
    await using agent = new PgStateMigrationAgent(configFor('ps_mig_c'));
    const { results, migrations } = recorded(3);
    let broken = true;
    const failing = {
      name: 'failing',
      up: async () => {
        if (broken) throw new Error('boom');
        results.push('up failing');
      },
      down: async () => {},
    };
    const all = [migrations[0]!, failing, migrations[1]!, migrations[2]!];
    await expect(migrate(agent, all, { direction: Direction.Up, logger: capture() })).rejects.toMatchObject({
      message: expect.stringMatching(/Migration failing \(up\) failed: boom/),
    });
    expect(results).toEqual(['up 0']);
    expect((await agent.store.load())?.last_run).toBe('0');
    broken = false;
    await migrate(agent, all, { direction: Direction.Up });
    expect(results).toEqual(['up 0', 'up failing', 'up 1', 'up 2']);
  });

  test('a last run migration missing from the set is a precise error', async () => {
    await using agent = new PgStateMigrationAgent(configFor('ps_mig_d'));
    await migrate(agent, recorded(2).migrations, { direction: Direction.Up });
    await expect(migrate(agent, [], { direction: Direction.Up })).rejects.toThrow(
      /The last run migration 1 was not found in the given set of migrations/,
    );
  });

  test('resetStore forgets the log (tables stay) and works before anything was migrated', async () => {
    await using fresh = new PgStateMigrationAgent(configFor('ps_mig_e0'));
    await fresh.resetStore();
    expect(await fresh.store.load()).toBeUndefined();

    await using agent = new PgStateMigrationAgent(configFor('ps_mig_e'));
    const { results, migrations } = recorded(2);
    await migrate(agent, migrations, { direction: Direction.Up });
    await agent.resetStore();
    expect(await agent.store.load()).toBeUndefined();
    expect(await exists('ps_mig_e', 'sync_rules')).toBe(true);
    // With no state, down runs nothing and up runs everything again.
    await migrate(agent, migrations, { direction: Direction.Down });
    expect(results).toEqual(['up 0', 'up 1']);
    await migrate(agent, migrations, { direction: Direction.Up });
    expect(results).toEqual(['up 0', 'up 1', 'up 0', 'up 1']);
  });

  test('store: save/load round trip; loadInternalMigrations names the storage migration', async () => {
    await using agent = new PgStateMigrationAgent(configFor('ps_mig_f'));
    await agent.store.init();
    const at = new Date('2026-01-02T03:04:05.678Z');
    await agent.store.save({ last_run: 'x', log: [{ name: 'x', direction: Direction.Up, timestamp: at }] });
    expect(await agent.store.load()).toEqual({
      last_run: 'x',
      log: [{ name: 'x', direction: Direction.Up, timestamp: at }],
    });
    await agent.store.clear();
    expect(await agent.store.load()).toBeUndefined();
    const internal = await agent.loadInternalMigrations();
    expect(internal.map((m) => m.name)).toEqual([STORAGE_MIGRATION_NAME]);
  });

  test('locks: one holder at a time; run waits for the lock or gives up after maxLockWaitMs', async () => {
    await using a = new PgStateMigrationAgent(configFor('ps_mig_g'));
    await using b = new PgStateMigrationAgent(configFor('ps_mig_g'));
    await a.locks.init();
    const held = await a.locks.acquire();
    expect(held).not.toBeNull();
    expect(await b.locks.acquire()).toBeNull();
    expect(await b.locks.acquire({ max_wait_ms: 300 })).toBeNull();
    await held!.refresh();
    await expect(migrate(b, [], { direction: Direction.Up, maxLockWaitMs: 0 })).rejects.toMatchObject({
      code: 'LOCK_TIMEOUT',
    });
    // A run waiting for the lock proceeds once it is released.
    const waiting = migrate(b, recorded(1).migrations, { direction: Direction.Up, maxLockWaitMs: 30_000 });
    await new Promise((r) => setTimeout(r, 300));
    await held!.release();
    await waiting;
    expect((await b.store.load())?.last_run).toBe('0');

    let ran = false;
    await a.locks.lock(async (refresh) => {
      await refresh();
      expect(await b.locks.acquire()).toBeNull();
      ran = true;
    });
    expect(ran).toBe(true);
    const again = await b.locks.acquire();
    expect(again).not.toBeNull();
    await again!.release();
  });

  test('dispose ends the pool once; an unknown direction is refused', async () => {
    const agent = new PgStateMigrationAgent(configFor('ps_mig_h'));
    await expect(migrate(agent, [], { direction: 'sideways' as Direction })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await agent[Symbol.asyncDispose]();
    await agent[Symbol.asyncDispose]();
    expect(agent.db.pool.ended).toBe(true);
  });

  test('service startup: the registered agent migrates up (auto-migration), then the provider serves', async () => {
    const agents: MigrationAgent[] = [];
    const providers: PgStateStorageProvider[] = [];
    const storage = { type: 'pgstate', uri: url, sslmode: 'disable', schema: 'ps_mig_svc' };
    await new PgStateStorageModule().initialize({
      storageEngine: { registerProvider: (p) => providers.push(p as PgStateStorageProvider) },
      configuration: { storage },
      migrations: { registerMigrationAgent: (a) => agents.push(a) },
    });
    expect(agents).toHaveLength(1);
    const agent = agents[0]!;
    // ensureAutomaticMigrations: direction up, the service context as migration context, no registered migrations.
    await agent.run({ direction: Direction.Up, migrationContext: { service_context: {} }, migrations: [] });
    expect(await exists('ps_mig_svc', 'sync_rules')).toBe(true);
    const active = await providers[0]!.getStorage({ resolvedConfig: { storage } });
    expect(await active.storage.getActiveSyncConfig()).toBeNull();
    await active.shutDown();
    await agent[Symbol.asyncDispose]();
  });
});
