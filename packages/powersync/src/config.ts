import { type ConnectionSettings, PgStateError, parseConnectionSettings, validateIdentifier } from '@pgstate/core';
import { POWERSYNC_DEFAULT_SCHEMA } from '@pgstate/schema';
import { CURRENT_STORAGE_VERSION, STORAGE_VERSION_CONFIG } from './types.js';

export const PGSTATE_STORAGE_TYPE = 'pgstate';

/** `storage:` section of a PowerSync service config with `type: pgstate`. */
export interface PgStateStorageConfig {
  type: typeof PGSTATE_STORAGE_TYPE | string;
  /** Same fields as PowerSync's Postgres replication connection. */
  uri?: string;
  hostname?: string;
  port?: number | string;
  database?: string;
  username?: string;
  password?: string;
  sslmode?: string;
  /** Seconds to wait for a new connection (as upstream's field; takes precedence over the URI's connect_timeout). */
  connect_timeout?: number;
  /**
   * Milliseconds a query may wait for the server's answer before it fails (UNREACHABLE) and its connection is
   * dropped; default: no limit. The one timeout that fires when the server stops answering (a frozen host, a
   * network partition): connect_timeout covers only new connections and statement_timeout needs a running server.
   */
  query_timeout_ms?: number;
  max_pool_size?: number;
  /** Schema holding the storage tables (default `powersync`). */
  schema?: string;
  default_storage_version?: number;
  batch_limits?: BatchLimitsInput;
  /** How long a replication lock lease lasts without refresh (default 60 s; refreshed every lease/2). */
  lock_lease_ms?: number;
  /**
   * How live checkpoints reach watchers. Default: LISTEN/NOTIFY over the storage connection. Behind PgBouncer in
   * transaction mode, set `uri` to a direct connection for LISTEN, or `mode: poll`.
   */
  checkpoint_notifications?: { mode?: 'listen' | 'poll'; uri?: string; poll_interval_ms?: number };
}

export interface BatchLimitsInput {
  max_estimated_size?: number;
  max_record_count?: number;
  max_current_data_batch_size?: number;
}

export type BatchLimits = Required<BatchLimitsInput>;

export const DEFAULT_BATCH_LIMITS: BatchLimits = {
  max_record_count: 2000,
  max_estimated_size: 5_000_000,
  max_current_data_batch_size: 50_000_000,
};

export interface NormalizedStorageConfig {
  connection: ConnectionSettings;
  schema: string;
  defaultStorageVersion: number;
  batchLimits: BatchLimits;
  lockLeaseMs: number;
  /** Client-side limit on waiting for a query's answer (`query_timeout_ms`), if set. */
  queryTimeoutMs?: number;
  /** Parsed `checkpoint_notifications` (absent: LISTEN on the storage connection). */
  notifications?: { mode: 'listen' | 'poll'; connection?: ConnectionSettings; pollIntervalMs?: number };
}

/** Why a storage version is refused (anything but 1, 2 and 3). */
export function unsupportedStorageVersion(version: unknown): { message: string; fix: string } {
  const supported = Object.keys(STORAGE_VERSION_CONFIG).join(', ');
  return {
    message: `Storage version ${String(version)} is not supported.`,
    fix: `Use storage version ${supported} (2 is the default).`,
  };
}

function bad(message: string, fix: string): PgStateError {
  return new PgStateError('BAD_SETTING', message, { fix });
}

function positiveInt(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw bad(`storage.${name} must be a positive integer.`, `Set storage.${name} to a whole number above 0.`);
  }
  return value;
}

/** Validates the storage section and resolves connection settings through @pgstate/core. */
export function normalizeStorageConfig(
  config: PgStateStorageConfig,
  env?: Record<string, string | undefined>,
): NormalizedStorageConfig {
  if (config == null || typeof config !== 'object') {
    throw bad('The storage config is missing.', 'Add a `storage:` section with `type: pgstate` and a `uri`.');
  }
  if (config.type !== PGSTATE_STORAGE_TYPE) {
    throw bad(
      `storage.type is ${JSON.stringify(config.type)}, but this provider serves "${PGSTATE_STORAGE_TYPE}".`,
      `Set storage.type to "${PGSTATE_STORAGE_TYPE}" to use @pgstate/powersync.`,
    );
  }
  const maxPool = positiveInt(config.max_pool_size, 'max_pool_size');
  const connection = parseConnectionSettings(
    {
      url: config.uri,
      host: config.hostname,
      port: config.port,
      database: config.database,
      user: config.username,
      password: config.password,
      sslmode: config.sslmode,
      connectTimeoutSeconds: positiveInt(config.connect_timeout, 'connect_timeout'),
      maxConnections: maxPool ?? 8,
      applicationName: 'pgstate-powersync',
    },
    env ? { env } : {},
  );
  const schema = validateIdentifier(config.schema ?? POWERSYNC_DEFAULT_SCHEMA, 'schema name');
  const defaultStorageVersion = config.default_storage_version ?? CURRENT_STORAGE_VERSION;
  if (STORAGE_VERSION_CONFIG[defaultStorageVersion] == null) {
    const { message, fix } = unsupportedStorageVersion(defaultStorageVersion);
    throw bad(`storage.default_storage_version: ${message}`, fix);
  }
  const limits = config.batch_limits ?? {};
  return {
    connection,
    schema,
    defaultStorageVersion,
    batchLimits: {
      max_record_count: positiveInt(limits.max_record_count, 'batch_limits.max_record_count') ?? 2000,
      max_estimated_size: positiveInt(limits.max_estimated_size, 'batch_limits.max_estimated_size') ?? 5_000_000,
      max_current_data_batch_size:
        positiveInt(limits.max_current_data_batch_size, 'batch_limits.max_current_data_batch_size') ?? 50_000_000,
    },
    lockLeaseMs: positiveInt(config.lock_lease_ms, 'lock_lease_ms') ?? 60_000,
    queryTimeoutMs: positiveInt(config.query_timeout_ms, 'query_timeout_ms'),
    notifications: notificationsOf(config.checkpoint_notifications, env),
  };
}

function notificationsOf(
  input: PgStateStorageConfig['checkpoint_notifications'],
  env: Record<string, string | undefined> | undefined,
): NormalizedStorageConfig['notifications'] {
  if (input == null) return undefined;
  const mode = input.mode ?? 'listen';
  if (mode !== 'listen' && mode !== 'poll') {
    throw bad(
      `storage.checkpoint_notifications.mode is ${JSON.stringify(input.mode)}.`,
      'Use "listen" (LISTEN/NOTIFY, needs a session-mode or direct connection) or "poll".',
    );
  }
  return {
    mode,
    connection:
      input.uri == null
        ? undefined
        : parseConnectionSettings({ url: input.uri, applicationName: 'pgstate-powersync' }, env ? { env } : {}),
    pollIntervalMs: positiveInt(input.poll_interval_ms, 'checkpoint_notifications.poll_interval_ms'),
  };
}
