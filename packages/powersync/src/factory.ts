import { randomBytes, randomUUID } from 'node:crypto';
import type { NormalizedStorageConfig } from './config.js';
import { StorageDb } from './db.js';
import { Observers } from './observers.js';
import { acquireLease, PgStateReplicationStream, type SyncRulesRow, storageConfigFor } from './persisted.js';
import { PgStateSyncRulesStorage } from './storage.js';
import {
  type BucketStorageFactory,
  type BucketStorageFactoryListener,
  type BucketStorageSystemIdentifier,
  type GetIntanceOptions,
  type Logger,
  type PersistedReplicationStream,
  type ReplicationLock,
  type ResolvedSyncConfig,
  type StorageMetrics,
  SyncRuleState,
  type SyncRulesBucketStorage,
  type UpdateSyncRulesOptions,
} from './types.js';

export interface PgStateBucketStorageFactoryOptions {
  config: NormalizedStorageConfig;
  /** Prefix of replication stream (slot) names; the service passes `slot_name_prefix`. */
  replicationStreamNamePrefix?: string;
  checksumCacheTtlMs?: number;
  logger?: Logger;
  /** Share an existing StorageDb (tests); the factory then does not end its pool on dispose. */
  db?: StorageDb;
}

/** `BucketStorageFactory` on PostgreSQL: sync-rules lifecycle, per-stream storage, instance metadata. */
export class PgStateBucketStorageFactory
  extends Observers<BucketStorageFactoryListener>
  implements BucketStorageFactory
{
  readonly db: StorageDb;
  readonly replicationStreamNamePrefix: string;
  private readonly ownsDb: boolean;
  /** Where this storage logs: the service's logger when given, else a console logger (never silent). */
  readonly logger: Logger;
  private activeStorageCache: PgStateSyncRulesStorage | undefined;

  constructor(private readonly options: PgStateBucketStorageFactoryOptions) {
    super();
    this.db = options.db ?? new StorageDb(options.config);
    this.ownsDb = options.db == null;
    this.replicationStreamNamePrefix = options.replicationStreamNamePrefix ?? 'powersync_';
    if (options.logger) this.db.logger = options.logger;
    this.logger = options.logger ?? this.db.logger;
  }

  private disposed = false;

  /** Ends the pool (once; later calls are no-ops). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.disposed || !this.ownsDb) return;
    this.disposed = true;
    await this.db.end();
  }

  private stream(row: SyncRulesRow): PgStateReplicationStream {
    return new PgStateReplicationStream(this.db, row, this.logger);
  }

  getInstance(replicationStream: PersistedReplicationStream, options?: GetIntanceOptions): SyncRulesBucketStorage {
    const stream =
      replicationStream instanceof PgStateReplicationStream
        ? replicationStream
        : (() => {
            throw new TypeError('getInstance() needs a replication stream created by this storage factory');
          })();
    const storage = new PgStateSyncRulesStorage({
      factory: this,
      db: this.db,
      replicationStream: stream,
      checksumCacheTtlMs: this.options.checksumCacheTtlMs,
    });
    if (!options?.skipLifecycleHooks) this.emit((l) => l.syncStorageCreated?.(storage));
    storage.registerListener({
      batchStarted: (batch) => {
        batch.registerListener({ replicationEvent: (payload) => this.emit((l) => l.replicationEvent?.(payload)) });
      },
    });
    return storage;
  }

  /** Same decision as service-core's base class: deploy only when the YAML differs from what is deployed. */
  async configureSyncRules(
    options: UpdateSyncRulesOptions,
  ): Promise<{ updated: boolean; persisted_sync_rules?: PersistedReplicationStream; lock?: ReplicationLock }> {
    const deploying = await this.getDeployingSyncConfig();
    const active = await this.getActiveSyncConfig();
    if (deploying?.content.sync_rules_content === options.config.yaml) return { updated: false };
    if (deploying == null && active?.content.sync_rules_content === options.config.yaml) return { updated: false };
    const persisted = await this.updateSyncRules(options);
    return { updated: true, persisted_sync_rules: persisted, lock: persisted.current_lock ?? undefined };
  }

  async updateSyncRules(options: UpdateSyncRulesOptions): Promise<PgStateReplicationStream> {
    await this.db.ensureMigrated();
    const version =
      options.storageVersion ?? options.config.parsed.config.storageVersion ?? this.db.config.defaultStorageVersion;
    storageConfigFor(version);
    const n = this.db.names;
    const row = await this.db.transaction(async (client) => {
      // Only one stream is worth initial-replicating at a time: a newer deploy replaces a pending one.
      await this.db.query(`UPDATE ${n.syncRules} SET state = 'STOP' WHERE state = 'PROCESSING'`, [], client);
      return this.db.first<SyncRulesRow>(
        `WITH next_id AS (SELECT nextval(${n.syncRulesIdSequenceLiteral}::regclass)::int AS id)
         INSERT INTO ${n.syncRules} (id, content, sync_plan, state, slot_name, storage_version)
         SELECT id, $1, $2::jsonb, 'PROCESSING', $3 || id || '_' || $4, $5 FROM next_id
         RETURNING *`,
        [
          options.config.yaml,
          options.config.plan == null ? null : JSON.stringify(options.config.plan),
          this.replicationStreamNamePrefix,
          randomBytes(2).toString('hex'),
          version,
        ],
        client,
      );
    });
    const stream = this.stream(row!);
    if (options.lock) await stream.lock();
    return stream;
  }

  async restartReplication(replicationStreamId: number): Promise<void> {
    const next = await this.getDeployingSyncConfig();
    const active = await this.getActiveSyncConfig();
    const n = this.db.names;
    if (next != null && next.content.replicationStreamId === replicationStreamId) {
      // Redo the stream being deployed.
      await this.updateSyncRules(next.content.asUpdateOptions());
      await this.db.query(`UPDATE ${n.syncRules} SET state = 'STOP' WHERE id = $1 AND state = 'PROCESSING'`, [
        replicationStreamId,
      ]);
    } else if (active?.content.replicationStreamId === replicationStreamId) {
      // Keep serving the active stream's data while a fresh stream replicates; it no longer replicates itself.
      if (next == null) await this.updateSyncRules(active.content.asUpdateOptions());
      await this.db.query(`UPDATE ${n.syncRules} SET state = 'ERRORED' WHERE id = $1 AND state = 'ACTIVE'`, [
        replicationStreamId,
      ]);
    }
  }

  private async resolved(row: SyncRulesRow, cacheActive: boolean): Promise<ResolvedSyncConfig> {
    const stream = this.stream(row);
    const content = stream.syncConfigContent[0]!;
    const self = this;
    return {
      content,
      replicationStream: stream,
      get storage(): SyncRulesBucketStorage {
        // Reuse the active instance so its checksum cache and parsed sync rules survive across requests.
        if (cacheActive && self.activeStorageCache?.replicationStreamId === stream.replicationStreamId) {
          return self.activeStorageCache;
        }
        const instance = self.getInstance(stream) as PgStateSyncRulesStorage;
        if (cacheActive) self.activeStorageCache = instance;
        return instance;
      },
    };
  }

  async getActiveSyncConfig(): Promise<ResolvedSyncConfig | null> {
    await this.db.ensureMigrated();
    const row = await this.db.first<SyncRulesRow>(
      `SELECT * FROM ${this.db.names.syncRules} WHERE state IN ('ACTIVE', 'ERRORED') ORDER BY id DESC LIMIT 1`,
    );
    return row == null ? null : this.resolved(row, true);
  }

  async getDeployingSyncConfig(): Promise<ResolvedSyncConfig | null> {
    await this.db.ensureMigrated();
    const row = await this.db.first<SyncRulesRow>(
      `SELECT * FROM ${this.db.names.syncRules} WHERE state = 'PROCESSING' ORDER BY id DESC LIMIT 1`,
    );
    return row == null ? null : this.resolved(row, false);
  }

  async getReplicatingReplicationStreams(): Promise<PersistedReplicationStream[]> {
    await this.db.ensureMigrated();
    const rows = await this.db.query<SyncRulesRow>(
      `SELECT * FROM ${this.db.names.syncRules} WHERE state IN ('ACTIVE', 'PROCESSING') ORDER BY id`,
    );
    return rows.map((r) => this.stream(r));
  }

  async getStoppedReplicationStreams(): Promise<PersistedReplicationStream[]> {
    await this.db.ensureMigrated();
    const rows = await this.db.query<SyncRulesRow>(
      `SELECT * FROM ${this.db.names.syncRules} WHERE state = $1 ORDER BY id`,
      [SyncRuleState.STOP],
    );
    return rows.map((r) => this.stream(r));
  }

  async getStorageMetrics(): Promise<StorageMetrics> {
    await this.db.ensureMigrated();
    if ((await this.getActiveSyncConfig()) == null) {
      return { operations_size_bytes: 0, parameters_size_bytes: 0, replication_size_bytes: 0 };
    }
    const n = this.db.names;
    const sizes = await this.db.first<{ ops: bigint; params: bigint; current: bigint }>(
      `SELECT pg_total_relation_size($1::regclass)::int8 AS ops, pg_total_relation_size($2::regclass)::int8 AS params,
              pg_total_relation_size($3::regclass)::int8 AS current`,
      [n.bucketData, n.bucketParameters, n.currentData],
    );
    return {
      operations_size_bytes: Number(sizes!.ops),
      parameters_size_bytes: Number(sizes!.params),
      replication_size_bytes: Number(sizes!.current),
    };
  }

  async getPowerSyncInstanceId(): Promise<string> {
    await this.db.ensureMigrated();
    const n = this.db.names;
    const existing = await this.db.first<{ id: string }>(`SELECT id FROM ${n.instance} LIMIT 1`);
    if (existing) return existing.id;
    // Concurrent first calls: a transaction-scoped advisory lock lets exactly one insert (PgBouncer-safe).
    return this.db.transaction(async (client) => {
      await this.db.query(
        `SELECT pg_advisory_xact_lock(hashtext($1))`,
        [`pgstate.powersync.instance.${n.schema}`],
        client,
      );
      const row = await this.db.first<{ id: string }>(`SELECT id FROM ${n.instance} LIMIT 1`, [], client);
      if (row) return row.id;
      const id = randomUUID();
      await this.db.query(`INSERT INTO ${n.instance} (id) VALUES ($1)`, [id], client);
      return id;
    });
  }

  async getSystemIdentifier(): Promise<BucketStorageSystemIdentifier> {
    const row = await this.db.first<{ system_identifier: string; database: string }>(
      `SELECT system_identifier::text AS system_identifier, current_database() AS database FROM pg_control_system()`,
    );
    return { id: `${row!.system_identifier}.${row!.database}`, type: 'pgstate' };
  }

  /** A replication lease not tied to a stream (used by tests and tools). */
  acquireLease(name: string, leaseMs = this.db.config.lockLeaseMs) {
    return acquireLease(this.db, name, leaseMs, this.logger);
  }
}
