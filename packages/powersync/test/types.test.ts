// The module, its provider, factory, per-stream storage, writer, report storage, migration agent and test setup
// satisfy the structural contract types (types.ts: service-core's interfaces at upstream 06b4092fc). The type
// assertions are checked by `pnpm typecheck` (tsc includes test/); the runtime half builds each object against
// PostgreSQL and checks that every contract member the service calls is there.
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, expectTypeOf, inject, test } from 'vitest';
import {
  type ActiveStorage,
  type BucketStorageBatch,
  type BucketStorageFactory,
  Direction,
  type LockManager,
  type MigrationAgent,
  type MigrationStore,
  normalizeStorageConfig,
  type PersistedReplicationStream,
  type PersistedSyncConfigContent,
  type PgStateBucketBatch,
  type PgStateBucketStorageFactory,
  PgStateMigrationAgent,
  type PgStateMigrationLocks,
  type PgStateMigrationStore,
  type PgStateReplicationStream,
  PgStateReportStorage,
  PgStateStorageModule,
  PgStateStorageProvider,
  type PgStateSyncConfigContent,
  type PgStateSyncRulesStorage,
  type PowerSyncMigrationGenerics,
  pgstateTestSetup,
  type ReportStorage,
  type StorageModule,
  type StorageModuleContext,
  type StorageProvider,
  type SyncRulesBucketStorage,
  type TestStorageConfig,
} from '../src/index.js';
import { deploy, GLOBAL_YAML, WRITER } from './helpers.js';

// ---- Compile time: each implementation extends its contract type ------------------------------------------------
expectTypeOf<PgStateStorageModule>().toExtend<StorageModule>();
expectTypeOf<PgStateStorageProvider>().toExtend<StorageProvider>();
expectTypeOf<PgStateBucketStorageFactory>().toExtend<BucketStorageFactory>();
expectTypeOf<PgStateSyncRulesStorage>().toExtend<SyncRulesBucketStorage>();
expectTypeOf<PgStateBucketBatch>().toExtend<BucketStorageBatch>();
expectTypeOf<PgStateReplicationStream>().toExtend<PersistedReplicationStream>();
expectTypeOf<PgStateSyncConfigContent>().toExtend<PersistedSyncConfigContent>();
expectTypeOf<PgStateReportStorage>().toExtend<ReportStorage>();
expectTypeOf<PgStateMigrationAgent>().toExtend<MigrationAgent<PowerSyncMigrationGenerics>>();
expectTypeOf<PgStateMigrationStore>().toExtend<MigrationStore>();
expectTypeOf<PgStateMigrationLocks>().toExtend<LockManager>();
expectTypeOf<ReturnType<typeof pgstateTestSetup>>().toExtend<TestStorageConfig>();
expectTypeOf<PgStateStorageProvider['getStorage']>().returns.resolves.toExtend<ActiveStorage>();
// What the service's MigrationManager hands the agent, and what the module is initialized with.
expectTypeOf<PgStateMigrationAgent['run']>().parameter(0).toHaveProperty('migrations');
expectTypeOf<PgStateStorageModule['initialize']>().parameter(0).toEqualTypeOf<StorageModuleContext>();

// ---- Run time: the same objects, built as the service builds them ------------------------------------------------
let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_types');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

/** Every listed member is a function on the object (or its prototype chain). */
function expectMethods(object: object, names: readonly (string | symbol)[]) {
  const missing = names.filter((name) => typeof (object as Record<string | symbol, unknown>)[name] !== 'function');
  expect(missing).toEqual([]);
}

describe('contract members exist at run time', () => {
  test('module, provider, factory, stream, storage, writer, report storage, migration agent', async () => {
    const storageConfig = { type: 'pgstate', uri: url, sslmode: 'disable', schema: 'ps_types' };
    const module = new PgStateStorageModule();
    expect(module.name).toBe('pgstate Bucket Storage');
    expectMethods(module, ['initialize', 'teardown']);

    const registered: { providers: StorageProvider[]; agents: MigrationAgent[] } = { providers: [], agents: [] };
    await module.initialize({
      storageEngine: { registerProvider: (p) => registered.providers.push(p) },
      configuration: { storage: storageConfig },
      migrations: { registerMigrationAgent: (a) => registered.agents.push(a) },
    });
    const agent = registered.agents[0]!;
    expect(agent).toBeInstanceOf(PgStateMigrationAgent);
    expectMethods(agent, ['run', 'resetStore', 'loadInternalMigrations', Symbol.asyncDispose]);
    expectMethods(agent.store, ['init', 'load', 'save', 'clear']);
    expectMethods(agent.locks, ['init', 'acquire', 'lock']);
    await agent.run({ direction: Direction.Up, migrations: [] });
    await agent[Symbol.asyncDispose]();

    const provider = registered.providers[0]!;
    expect(provider).toBeInstanceOf(PgStateStorageProvider);
    expect(provider.type).toBe('pgstate');
    const active = await provider.getStorage({ resolvedConfig: { storage: storageConfig } });
    try {
      expectMethods(active, ['shutDown', 'tearDown']);
      expect(active.reportStorage).toBeInstanceOf(PgStateReportStorage);
      expectMethods(active.reportStorage, [
        'reportClientConnection',
        'reportClientDisconnection',
        'getConnectedClients',
        'getClientConnectionReports',
        'getGeneralClientConnectionAnalytics',
        'deleteOldConnectionData',
        Symbol.asyncDispose,
      ]);
      const factory = active.storage;
      expectMethods(factory, [
        'registerListener',
        'configureSyncRules',
        'getInstance',
        'updateSyncRules',
        'restartReplication',
        'getActiveSyncConfig',
        'getDeployingSyncConfig',
        'getReplicatingReplicationStreams',
        'getStoppedReplicationStreams',
        'getStorageMetrics',
        'getPowerSyncInstanceId',
        'getSystemIdentifier',
        Symbol.asyncDispose,
      ]);
      const { stream, content } = await deploy(factory, GLOBAL_YAML);
      expectMethods(stream, ['getStorageConfig', 'lock', 'parsed']);
      expect(stream.logger).toBeDefined();
      expectMethods(content, ['getStorageConfig', 'parsed', 'asUpdateOptions', 'getSyncConfigStatus']);
      const storage = factory.getInstance(stream);
      expectMethods(storage, [
        'registerListener',
        'setWriteCheckpointMode',
        'createManagedWriteCheckpoints',
        'lastWriteCheckpoint',
        'createWriter',
        'startBatch',
        'getParsedSyncConfigSet',
        'getParsedSyncRules',
        'terminate',
        'getStatus',
        'clear',
        'reportError',
        'compact',
        'populatePersistentChecksumCache',
        'getCheckpoint',
        'getCheckpointChanges',
        'watchCheckpointChanges',
        'getBucketDataBatch',
        'getChecksums',
        'clearChecksumCache',
      ]);
      await using writer = await storage.createWriter(WRITER);
      expectMethods(writer, [
        'registerListener',
        'dispose',
        'save',
        'truncate',
        'drop',
        'flush',
        'commit',
        'keepalive',
        'setResumeLsn',
        'markTableSnapshotDone',
        'markTableSnapshotRequired',
        'markAllSnapshotDone',
        'markSnapshotDone',
        'updateTableProgress',
        'getSourceTableStatus',
        'resolveTables',
        'addCustomWriteCheckpoint',
        Symbol.asyncDispose,
      ]);
    } finally {
      await active.shutDown();
    }

    const setup = pgstateTestSetup({ url, schema: 'ps_types_setup' });
    expect(setup.tableIdStrings).toBe(true);
    await using factory = await setup.factory();
    expect(await factory.getActiveSyncConfig()).toBeNull();
    expect(normalizeStorageConfig(storageConfig).schema).toBe('ps_types');
  });
});
