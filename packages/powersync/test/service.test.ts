// `@pgstate/powersync/service` against an object shaped like service-core's ModuleManager (06b4092fc): the stock entry
// creates one, hands it the built-in loaders through registerDynamicModules, and at startup loads the loader named by
// `storage.type` and initializes the module it returns with the service context.
import { isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import { type ModuleLoaders, registerPgStateStorage, withPgStateStorage } from '@pgstate/powersync/service';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { type Logger, pgstateTestSetup, type StorageProvider } from '../src/index.js';
import { deploy, GLOBAL_YAML, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_service');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

interface LoadedModule {
  name: string;
  initialize(context: unknown): Promise<void>;
  teardown(options: unknown): Promise<void>;
}

/** The module manager's behaviour the export relies on (loaders replaced on each call; load by storage type). */
class ModuleManagerShape {
  loaders: ModuleLoaders | undefined;
  readonly modules = new Map<string, LoadedModule>();
  registerDynamicModules(loaders: ModuleLoaders) {
    this.loaders = loaders;
  }
  async initialize(context: { configuration: { storage: { type: string } } }) {
    const load = this.loaders?.storage[context.configuration.storage.type];
    if (!load) throw new Error(`Invalid storage type: "${context.configuration.storage.type}"`);
    const module = (await load()) as LoadedModule;
    this.modules.set(module.name, module);
    for (const m of this.modules.values()) await m.initialize(context);
  }
}

const builtIn = (): ModuleLoaders => ({
  storage: { postgresql: async () => ({ name: 'builtin storage' }), mongodb: async () => ({ name: 'mongo' }) },
  connection: { postgresql: async () => ({ name: 'builtin connection' }) },
});

/** What the storage engine and migration manager receive from the loaded module. */
function serviceContext(storage: { type: string; [key: string]: unknown }) {
  const providers: StorageProvider[] = [];
  const agents: unknown[] = [];
  return {
    providers,
    agents,
    context: {
      configuration: { storage },
      storageEngine: { registerProvider: (p: StorageProvider) => providers.push(p) },
      migrations: { registerMigrationAgent: (a: unknown) => agents.push(a) },
    },
  };
}

function recordingLogger() {
  const lines: string[] = [];
  const log = (level: string) => (message: string) => {
    lines.push(`${level}: ${message}`);
  };
  const logger: Logger = { info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug') };
  return { logger, lines };
}

describe('@pgstate/powersync/service', () => {
  test('without it, the stock module manager refuses storage.type pgstate (what a user hits)', async () => {
    const manager = new ModuleManagerShape();
    manager.registerDynamicModules(builtIn());
    await expect(manager.initialize(serviceContext({ type: 'pgstate', uri: url }).context)).rejects.toThrow(
      'Invalid storage type: "pgstate"',
    );
  });

  test("registered on the ModuleManager class: the stock entry's instance loads the pgstate provider, which serves storage and logs through the service logger", async () => {
    class ModuleManager extends ModuleManagerShape {}
    const { logger, lines } = recordingLogger();
    registerPgStateStorage(ModuleManager, { logger });

    // What the stock entry does after that.
    const manager = new ModuleManager();
    const loaders = builtIn();
    manager.registerDynamicModules(loaders);
    expect(Object.keys(manager.loaders!.storage).sort()).toEqual(['mongodb', 'pgstate', 'postgresql']);
    expect(manager.loaders!.connection).toBe(loaders.connection);
    expect(Object.keys(loaders.storage)).toEqual(['postgresql', 'mongodb']); // the caller's map is left alone

    const storageConfig = { type: 'pgstate', uri: url, schema: 'ps_service', sslmode: 'disable' };
    const { context, providers, agents } = serviceContext(storageConfig);
    await manager.initialize(context);
    expect([...manager.modules.keys()]).toEqual(['pgstate Bucket Storage']);
    expect(providers.map((p) => p.type)).toEqual(['pgstate']);
    expect(agents).toHaveLength(1);

    const active = await providers[0]!.getStorage({ resolvedConfig: { storage: storageConfig } });
    try {
      const { stream } = await deploy(active.storage, GLOBAL_YAML);
      const writer = await active.storage.getInstance(stream).createWriter(WRITER);
      await writer.markAllSnapshotDone('0/1');
      await writer.commit('0/1');
      await writer.dispose();
      expect((await active.storage.getActiveSyncConfig())?.content.replicationStreamId).toBe(
        stream.replicationStreamId,
      );
      expect(
        lines.some(
          (l) => l.startsWith('info:') && l.includes(`Activated replication stream ${stream.replicationStreamId}`),
        ),
      ).toBe(true);
    } finally {
      await active.shutDown();
    }
  });

  test('registered on one instance: only that instance gets pgstate; registering twice wraps once', async () => {
    const manager = new ModuleManagerShape();
    const other = new ModuleManagerShape();
    registerPgStateStorage(manager);
    registerPgStateStorage(manager);
    manager.registerDynamicModules(builtIn());
    other.registerDynamicModules(builtIn());
    expect(Object.keys(manager.loaders!.storage).sort()).toEqual(['mongodb', 'pgstate', 'postgresql']);
    expect(Object.keys(other.loaders!.storage).sort()).toEqual(['mongodb', 'postgresql']);
    const module = (await manager.loaders!.storage.pgstate!()) as LoadedModule;
    expect(module.name).toBe('pgstate Bucket Storage');
  });

  test('withPgStateStorage adds the loader to a copy, for entries that build their own loaders', async () => {
    const loaders = builtIn();
    const merged = withPgStateStorage(loaders);
    expect(Object.keys(merged.storage).sort()).toEqual(['mongodb', 'pgstate', 'postgresql']);
    expect(loaders.storage.pgstate).toBeUndefined();
  });

  test("a stream locked by another process is refused with CONFLICT and service-core's PSYNC_S1003, which the service's replicator treats as standing by", async () => {
    const setup = pgstateTestSetup({ url, schema: 'ps_service_lock' });
    const first = await setup.factory();
    const second = await setup.factory({ doNotClear: true });
    try {
      const { stream } = await deploy(first, GLOBAL_YAML);
      const lock = await stream.lock();
      const [rival] = await second.getReplicatingReplicationStreams();
      const refused = await rival!.lock().catch((e: unknown) => e);
      expect(isPgStateError(refused, 'CONFLICT')).toBe(true);
      expect(refused).toMatchObject({
        errorData: {
          code: 'PSYNC_S1003',
          description: 'Replication stream is locked by another process, standing by.',
        },
      });
      await lock.release();
    } finally {
      await first[Symbol.asyncDispose]();
      await second[Symbol.asyncDispose]();
    }
  });

  test('anything but a module manager is refused with a precise error', () => {
    expect(() => registerPgStateStorage({} as never)).toThrow(/needs the service's ModuleManager/);
    expect(() => registerPgStateStorage(class {} as never)).toThrow(/needs the service's ModuleManager/);
  });
});
