import { normalizeStorageConfig, PGSTATE_STORAGE_TYPE, type PgStateStorageConfig } from './config.js';
import { PgStateBucketStorageFactory } from './factory.js';
import { PgStateMigrationAgent } from './migrations.js';
import { PgStateReportStorage } from './report-storage.js';
import type {
  ActiveStorage,
  GetStorageOptions,
  Logger,
  StorageModule,
  StorageModuleContext,
  StorageProvider,
  TearDownOptions,
} from './types.js';

/** `StorageProvider` for `storage.type: pgstate`. */
export class PgStateStorageProvider implements StorageProvider {
  readonly type = PGSTATE_STORAGE_TYPE;

  constructor(private readonly logger?: Logger) {}

  async getStorage(options: GetStorageOptions): Promise<ActiveStorage> {
    const config = normalizeStorageConfig(options.resolvedConfig.storage as unknown as PgStateStorageConfig);
    const factory = new PgStateBucketStorageFactory({
      config,
      replicationStreamNamePrefix: options.resolvedConfig.slot_name_prefix ?? 'powersync_',
      checksumCacheTtlMs: (options.resolvedConfig.api_parameters?.bucket_count_cache_ttl_minutes ?? 60) * 60_000,
      logger: this.logger,
    });
    await factory.db.ensureMigrated();
    return {
      storage: factory,
      reportStorage: new PgStateReportStorage(factory.db, { logger: this.logger }),
      shutDown: async () => {
        await factory[Symbol.asyncDispose]();
      },
      tearDown: async () => {
        await factory.db.query(`DROP SCHEMA IF EXISTS ${factory.db.names.schema} CASCADE`);
        await factory[Symbol.asyncDispose]();
        return true;
      },
    };
  }
}

export type { StorageModuleContext } from './types.js';

/**
 * The module a custom PowerSync service entry registers (like upstream's storage modules):
 * `await new PgStateStorageModule().initialize(serviceContext)`.
 */
export class PgStateStorageModule implements StorageModule {
  readonly name = 'pgstate Bucket Storage';

  constructor(private readonly logger?: Logger) {}

  async initialize(context: StorageModuleContext): Promise<void> {
    context.storageEngine.registerProvider(new PgStateStorageProvider(this.logger));
    if (context.configuration.storage.type === PGSTATE_STORAGE_TYPE && context.migrations) {
      context.migrations.registerMigrationAgent(
        new PgStateMigrationAgent(normalizeStorageConfig(context.configuration.storage as PgStateStorageConfig), {
          logger: this.logger,
        }),
      );
    }
  }

  /** Like the official module: tearing down storage is the storage engine's job (`ActiveStorage.tearDown`). */
  async teardown(_options?: TearDownOptions): Promise<void> {}
}
