import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { PgStateError } from '@pgstate/core';
import {
  CompatibilityContext,
  CompatibilityOption,
  DEFAULT_HYDRATION_STATE,
  deserializeSyncPlan,
  type HydratedSyncConfig,
  type HydrationState,
  nodeSqlite,
  PrecompiledSyncConfig,
  type SQLite,
  SqlEventDescriptor,
  SqlSyncRules,
  type SyncConfigWithErrors,
  versionedHydrationState,
  YamlError,
} from '@powersync/service-sync-rules';
import { unsupportedStorageVersion } from './config.js';
import type { StorageDb } from './db.js';
import { prefixedLogger } from './logger.js';
import type {
  Logger,
  ParsedSyncConfigSet,
  ParseSyncConfigOptions,
  PersistedReplicationStream,
  PersistedSyncConfigContent,
  PersistedSyncConfigStatus,
  ReplicationLock,
  SerializedSyncPlan,
  StorageVersionConfig,
  SyncRuleState,
  UpdateSyncRulesOptions,
} from './types.js';
import { LEGACY_STORAGE_VERSION, STORAGE_VERSION_CONFIG } from './types.js';

/** A `sync_rules` row as we read it. */
export interface SyncRulesRow {
  id: number;
  state: SyncRuleState;
  snapshot_done: boolean;
  snapshot_lsn: string | null;
  last_checkpoint: bigint | null;
  last_checkpoint_lsn: string | null;
  no_checkpoint_before: string | null;
  slot_name: string;
  last_checkpoint_ts: Date | null;
  last_keepalive_ts: Date | null;
  keepalive_op: bigint | null;
  last_fatal_error: string | null;
  last_fatal_error_ts: Date | null;
  content: string;
  sync_plan: SerializedSyncPlan | null;
  storage_version: number;
}

// Sync Streams evaluate scalar expressions with SQLite when `node:sqlite` exists (Node 22+); bucket definitions
// need none, and the sync-rules package falls back to its JavaScript engine when given null.
let sqliteEngine: SQLite | null | undefined;
function sqlite(): SQLite | null {
  if (sqliteEngine === undefined) {
    try {
      const require = createRequire(import.meta.url);
      sqliteEngine = nodeSqlite(require('node:sqlite'));
    } catch {
      sqliteEngine = null;
    }
  }
  return sqliteEngine;
}

export function storageConfigFor(version: number, streamId?: number): StorageVersionConfig {
  const config = STORAGE_VERSION_CONFIG[version];
  if (config == null) {
    const { message, fix } = unsupportedStorageVersion(version);
    throw new PgStateError('INVALID_INPUT', streamId == null ? message : `Replication stream ${streamId}: ${message}`, {
      fix,
    });
  }
  return config;
}

/** Parses persisted content the way the service does: the compiled plan when there is one, else the YAML. */
export function parsePersisted(
  content: string,
  plan: SerializedSyncPlan | null,
  storageVersion: number,
  options: ParseSyncConfigOptions,
): SyncConfigWithErrors {
  if (plan == null) return SqlSyncRules.fromYaml(content, { ...options, throwOnError: false });
  const compatibility = CompatibilityContext.deserialize(plan.compatibility);
  const events: SqlEventDescriptor[] = [];
  for (const [name, queries] of Object.entries(plan.eventDescriptors ?? {})) {
    const descriptor = new SqlEventDescriptor(name, compatibility);
    for (const query of queries) descriptor.addSourceQuery(query, options);
    events.push(descriptor);
  }
  const config = new PrecompiledSyncConfig(deserializeSyncPlan(plan.plan), compatibility, events, {
    defaultSchema: options.defaultSchema,
    sourceText: content,
  } as ConstructorParameters<typeof PrecompiledSyncConfig>[3]);
  config.storageVersion = storageVersion;
  const errors = (plan.errors ?? []).map((e) => {
    const error = new YamlError(
      new Error(e.message),
      e.location ? { start: e.location.start_offset, end: e.location.end_offset } : undefined,
    );
    (error as { type: string }).type = e.level;
    return error;
  });
  return { config, errors };
}

export class PgStateSyncConfigContent implements PersistedSyncConfigContent {
  readonly replicationStreamId: number;
  readonly sync_rules_content: string;
  readonly compiled_plan: SerializedSyncPlan | null;
  readonly replicationStreamName: string;
  readonly storageVersion: number;
  readonly syncConfigId: string | null = null;
  readonly syncConfigState: SyncRuleState;
  readonly logger: Logger;

  constructor(
    private readonly db: StorageDb,
    row: SyncRulesRow,
    logger: Logger = db.logger,
  ) {
    this.replicationStreamId = row.id;
    this.sync_rules_content = row.content;
    this.compiled_plan = row.sync_plan;
    this.replicationStreamName = row.slot_name;
    this.storageVersion = row.storage_version ?? LEGACY_STORAGE_VERSION;
    this.syncConfigState = row.state;
    this.logger = prefixedLogger(logger, `[${this.replicationStreamName}] `);
  }

  getStorageConfig(): StorageVersionConfig {
    return storageConfigFor(this.storageVersion, this.replicationStreamId);
  }

  parsed(options: ParseSyncConfigOptions): ParsedSyncConfigSet {
    const config = parsePersisted(this.sync_rules_content, this.compiled_plan, this.storageVersion, options);
    const versioned =
      this.getStorageConfig().versionedBuckets ||
      config.config.compatibility.isEnabled(CompatibilityOption.versionedBucketIds);
    const hydrationState: HydrationState = versioned
      ? versionedHydrationState(this.replicationStreamId)
      : DEFAULT_HYDRATION_STATE;
    let hydrated: HydratedSyncConfig | undefined;
    return {
      replicationStreamId: this.replicationStreamId,
      replicationStreamName: this.replicationStreamName,
      syncConfigs: [config],
      hydrationState,
      get hydratedSyncConfig(): HydratedSyncConfig {
        hydrated ??= config.config.hydrate({ hydrationState, sqlite: sqlite() });
        return hydrated;
      },
    };
  }

  asUpdateOptions(options?: Omit<UpdateSyncRulesOptions, 'config'>): UpdateSyncRulesOptions {
    const parsed = parsePersisted(this.sync_rules_content, this.compiled_plan, this.storageVersion, {
      defaultSchema: 'not_applicable',
    });
    return { config: { yaml: this.sync_rules_content, plan: this.compiled_plan, parsed }, ...options };
  }

  async getSyncConfigStatus(): Promise<PersistedSyncConfigStatus | null> {
    const row = await this.db.first<SyncRulesRow>(`SELECT * FROM ${this.db.names.syncRules} WHERE id = $1`, [
      this.replicationStreamId,
    ]);
    if (row == null) return null;
    return {
      id: String(row.id),
      replicationStreamId: row.id,
      state: row.state,
      snapshot_done: row.snapshot_done,
      last_checkpoint_lsn: row.last_checkpoint_lsn,
      last_fatal_error: row.last_fatal_error,
      last_fatal_error_ts: row.last_fatal_error_ts,
      last_keepalive_ts: row.last_keepalive_ts,
      last_checkpoint_ts: row.last_checkpoint_ts,
    };
  }
}

export class PgStateReplicationStream implements PersistedReplicationStream {
  readonly replicationStreamId: number;
  readonly replicationJobId: string;
  readonly replicationStreamName: string;
  readonly state: SyncRuleState;
  readonly storageVersion: number;
  readonly syncConfigContent: readonly PgStateSyncConfigContent[];
  readonly logger: Logger;
  current_lock: ReplicationLock | null = null;

  constructor(
    private readonly db: StorageDb,
    row: SyncRulesRow,
    logger: Logger = db.logger,
  ) {
    this.replicationStreamId = row.id;
    this.replicationJobId = String(row.id);
    this.replicationStreamName = row.slot_name;
    this.state = row.state;
    this.storageVersion = row.storage_version ?? LEGACY_STORAGE_VERSION;
    this.syncConfigContent = [new PgStateSyncConfigContent(db, row, logger)];
    // As service-core's PersistedReplicationStream: the stream's logs carry its slot name.
    this.logger = prefixedLogger(logger, `[${this.replicationStreamName}] `);
  }

  getStorageConfig(): StorageVersionConfig {
    return storageConfigFor(this.storageVersion, this.replicationStreamId);
  }

  parsed(options: ParseSyncConfigOptions): ParsedSyncConfigSet {
    return this.syncConfigContent[0]!.parsed(options);
  }

  /** Takes the stream's lease (see {@link acquireLease}); throws CONFLICT while another live process holds it. */
  async lock(): Promise<ReplicationLock> {
    const lease = await acquireLease(
      this.db,
      `sync_rules_${this.replicationStreamId}_${this.replicationStreamName}`,
      this.db.config.lockLeaseMs,
      this.logger,
    );
    if (lease == null) throw new ReplicationStreamLockedError();
    this.current_lock = { sync_rules_id: this.replicationStreamId, release: lease.release };
    return this.current_lock;
  }
}

/**
 * `lock()` while another live process holds the stream: CONFLICT, also carrying service-core's ServiceError data
 * (`PSYNC_S1003`). The service's replicator recognises that code, logs it once at info level and stands by; any other
 * error is logged as "Failed to start replication" at error level every few seconds (seen in the real service).
 */
export class ReplicationStreamLockedError extends PgStateError {
  readonly errorData = {
    code: 'PSYNC_S1003',
    description: 'Replication stream is locked by another process, standing by.',
  } as const;

  constructor() {
    super('CONFLICT', 'Replication stream is locked by another process, standing by.', {
      fix: 'Nothing to do: another PowerSync process replicates this stream; this one takes over if that one stops.',
    });
  }
}

export interface Lease {
  lockId: string;
  release(): Promise<void>;
}

/**
 * A lease row in `locks`: plain rows and single statements, so it works behind PgBouncer in transaction mode
 * (session advisory locks would not) and needs no connection held open. The holder refreshes `ts` every
 * lease/2; a row older than the lease belongs to a dead holder and may be taken over.
 */
export async function acquireLease(
  db: StorageDb,
  name: string,
  leaseMs: number,
  logger: Logger = db.logger,
): Promise<Lease | null> {
  const lockId = randomUUID();
  const row = await db.first<{ lock_id: string }>(
    `INSERT INTO ${db.names.locks} AS l (name, lock_id, ts) VALUES ($1, $2, clock_timestamp())
     ON CONFLICT (name) DO UPDATE SET lock_id = EXCLUDED.lock_id, ts = EXCLUDED.ts
       WHERE l.ts < clock_timestamp() - make_interval(secs => $3::double precision / 1000)
     RETURNING lock_id`,
    [name, lockId, leaseMs],
  );
  if (row?.lock_id !== lockId) return null;
  let released = false;
  const timer = setInterval(
    () => {
      db.query<{ name: string }>(
        `UPDATE ${db.names.locks} SET ts = clock_timestamp() WHERE name = $1 AND lock_id = $2 RETURNING name`,
        [name, lockId],
      ).then(
        (rows) => {
          if (rows.length === 0 && !released) {
            logger.error(`Lost replication lock ${name}: another process took it over.`);
            clearInterval(timer);
          }
        },
        (error) => logger.warn(`Failed to refresh replication lock ${name}; retrying.`, error),
      );
    },
    Math.max(50, Math.floor(leaseMs / 2)),
  );
  timer.unref();
  return {
    lockId,
    async release() {
      released = true;
      clearInterval(timer);
      await db.query(`DELETE FROM ${db.names.locks} WHERE name = $1 AND lock_id = $2`, [name, lockId]);
    },
  };
}
