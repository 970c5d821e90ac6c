import { type BatchLimitsInput, normalizeStorageConfig } from './config.js';
import { StorageDb } from './db.js';
import { PgStateBucketStorageFactory } from './factory.js';
import type { TestStorageConfig, TestStorageOptions } from './types.js';

export interface PgStateTestSetupOptions {
  /** Superuser or schema-owner URL of a database the tests may write. */
  url: string;
  /** Default `powersync`. */
  schema?: string;
  /** Storage version to deploy by default. */
  storageVersion?: number;
  /** Lease length for replication locks (default 60 s). */
  lockLeaseMs?: number;
  /** `storage.batch_limits` (flush sizes, current-data load size). */
  batchLimits?: BatchLimitsInput;
}

/**
 * Shaped like upstream's `TestStorageConfig`: each `factory()` call returns a factory on clean storage
 * (`dropAll` drops and recreates the schema, `doNotClear` keeps existing data).
 */
export function pgstateTestSetup(options: PgStateTestSetupOptions): TestStorageConfig & {
  config: ReturnType<typeof normalizeStorageConfig>;
} {
  const config = normalizeStorageConfig({
    type: 'pgstate',
    uri: options.url,
    sslmode: 'disable',
    schema: options.schema,
    default_storage_version: options.storageVersion,
    lock_lease_ms: options.lockLeaseMs,
    batch_limits: options.batchLimits,
  });
  const reset = async (opts?: TestStorageOptions) => {
    const db = new StorageDb(config);
    try {
      if (opts?.dropAll) {
        await db.query(`DROP SCHEMA IF EXISTS ${db.names.schema} CASCADE`);
      }
      await db.ensureMigrated();
      if (!opts?.dropAll) {
        const n = db.names;
        await db.query(
          `TRUNCATE ${n.syncRules}, ${n.sourceTables}, ${n.bucketData}, ${n.bucketParameters}, ${n.currentData},
             ${n.writeCheckpoints}, ${n.customWriteCheckpoints}, ${n.instance}, ${n.locks}, ${n.connectionReportEvents}`,
        );
        await db.query(`ALTER SEQUENCE ${n.opIdSequence} RESTART WITH 1`);
        await db.query(`ALTER SEQUENCE ${n.syncRulesIdSequence} RESTART WITH 1`);
      }
    } finally {
      await db.end();
    }
  };
  return {
    config,
    tableIdStrings: true,
    storageVersion: options.storageVersion,
    async factory(opts?: TestStorageOptions) {
      if (!opts?.doNotClear) await reset(opts);
      const factory = new PgStateBucketStorageFactory({ config, replicationStreamNamePrefix: 'test_' });
      await factory.db.ensureMigrated();
      return factory;
    },
  };
}
