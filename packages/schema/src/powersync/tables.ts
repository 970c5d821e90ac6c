/**
 * PowerSync bucket storage tables (`@pgstate/powersync`), in a schema whose name the user picks (default
 * `powersync`). The layout follows the data model of PowerSync's own Postgres storage module, so operators who
 * know that module recognise it. Migrations: src/templates/powersync.ts -> drizzle/powersync/.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  customType,
  index,
  integer,
  jsonb,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import { bytea, schemaFor } from '../names.js';

export const POWERSYNC_DEFAULT_SCHEMA = 'powersync';

const byteaArray = customType<{ data: Buffer[]; driverData: Buffer[] }>({
  dataType: () => 'bytea[]',
});

export interface PowerSyncNames {
  /** Default `powersync`. */
  schema?: string;
}

/** Drizzle definitions of every PowerSync storage table (and its two sequences) inside one schema. */
export function powersyncTables(names: PowerSyncNames = {}) {
  const s = schemaFor(names.schema ?? POWERSYNC_DEFAULT_SCHEMA);

  const opIdSequence = s.sequence('op_id_sequence', { startWith: 1 });
  const syncRulesIdSequence = s.sequence('sync_rules_id_sequence', { startWith: 1 });

  /** One row per replication stream (one deployed sync config). */
  const syncRules = s.table('sync_rules', {
    id: integer('id').primaryKey(),
    state: text('state').notNull(),
    snapshotDone: boolean('snapshot_done').notNull().default(false),
    snapshotLsn: text('snapshot_lsn'),
    lastCheckpoint: bigint('last_checkpoint', { mode: 'bigint' }),
    lastCheckpointLsn: text('last_checkpoint_lsn'),
    noCheckpointBefore: text('no_checkpoint_before'),
    slotName: text('slot_name').notNull(),
    lastCheckpointTs: timestamp('last_checkpoint_ts', { withTimezone: true }),
    lastKeepaliveTs: timestamp('last_keepalive_ts', { withTimezone: true }),
    keepaliveOp: bigint('keepalive_op', { mode: 'bigint' }),
    lastFatalError: text('last_fatal_error'),
    lastFatalErrorTs: timestamp('last_fatal_error_ts', { withTimezone: true }),
    content: text('content').notNull(),
    syncPlan: jsonb('sync_plan'),
    storageVersion: integer('storage_version').notNull().default(1),
  });

  /** Source tables known to a replication stream, with snapshot progress. */
  const sourceTables = s.table(
    'source_tables',
    {
      id: text('id').primaryKey(),
      groupId: integer('group_id').notNull(),
      connectionId: integer('connection_id').notNull(),
      relationId: jsonb('relation_id'),
      schemaName: text('schema_name').notNull(),
      tableName: text('table_name').notNull(),
      replicaIdColumns: jsonb('replica_id_columns'),
      // A table is resolved before its initial copy: not done until the replicator marks it (as PowerSync's own
      // storage). Defaulting to done made the service skip the copy of existing rows.
      snapshotDone: boolean('snapshot_done').notNull().default(false),
      snapshotTotalEstimatedCount: bigint('snapshot_total_estimated_count', { mode: 'bigint' }),
      snapshotReplicatedCount: bigint('snapshot_replicated_count', { mode: 'bigint' }),
      snapshotLastKey: bytea('snapshot_last_key'),
    },
    (t) => [index('source_tables_lookup').on(t.groupId, t.tableName)],
  );

  /** The operation log: PUT/REMOVE/MOVE/CLEAR per bucket, op ids from `op_id_sequence`. */
  const bucketData = s.table(
    'bucket_data',
    {
      groupId: integer('group_id').notNull(),
      bucketName: text('bucket_name').notNull(),
      opId: bigint('op_id', { mode: 'bigint' }).notNull(),
      op: text('op').notNull(),
      sourceTable: text('source_table'),
      sourceKey: bytea('source_key'),
      tableName: text('table_name'),
      rowId: text('row_id'),
      checksum: bigint('checksum', { mode: 'bigint' }).notNull(),
      data: text('data'),
      targetOp: bigint('target_op', { mode: 'bigint' }),
    },
    (t) => [primaryKey({ columns: [t.groupId, t.bucketName, t.opId] })],
  );

  /** Parameter lookup history; `'[]'` is a tombstone. */
  const bucketParameters = s.table(
    'bucket_parameters',
    {
      // Taken from op_id_sequence by the writer (a column default could not name the configured schema).
      id: bigint('id', { mode: 'bigint' }).primaryKey(),
      groupId: integer('group_id').notNull(),
      sourceTable: text('source_table').notNull(),
      sourceKey: bytea('source_key').notNull(),
      lookup: bytea('lookup').notNull(),
      bucketParameters: text('bucket_parameters').notNull(),
    },
    (t) => [
      index('bucket_parameters_lookup').on(t.groupId, t.lookup, t.id.desc()),
      index('bucket_parameters_source').on(t.groupId, t.sourceTable, t.sourceKey),
    ],
  );

  /** Last known state of every replicated row: its buckets, lookups and (for TOAST merges) its data. */
  const currentData = s.table(
    'current_data',
    {
      groupId: integer('group_id').notNull(),
      sourceTable: text('source_table').notNull(),
      sourceKey: bytea('source_key').notNull(),
      buckets: jsonb('buckets').notNull(),
      data: bytea('data').notNull(),
      lookups: byteaArray('lookups').notNull(),
      // Storage version 3: a deleted row stays as a tombstone (no buckets, lookups or data) marked with an op id,
      // so an initial snapshot that read the row before the delete cannot bring it back; it is removed once a
      // checkpoint reaches that op id. Always null on versions 1 and 2.
      pendingDelete: bigint('pending_delete', { mode: 'bigint' }),
    },
    (t) => [
      primaryKey({ columns: [t.groupId, t.sourceTable, t.sourceKey] }),
      index('current_data_pending_delete').on(t.groupId, t.pendingDelete).where(sql`${t.pendingDelete} IS NOT NULL`),
    ],
  );

  const writeCheckpoints = s.table('write_checkpoints', {
    userId: text('user_id').primaryKey(),
    lsns: jsonb('lsns').notNull(),
    writeCheckpoint: bigint('write_checkpoint', { mode: 'bigint' }).notNull(),
    checkpointRequestedAt: timestamp('checkpoint_requested_at', { withTimezone: true }),
  });

  const customWriteCheckpoints = s.table(
    'custom_write_checkpoints',
    {
      userId: text('user_id').notNull(),
      writeCheckpoint: bigint('write_checkpoint', { mode: 'bigint' }).notNull(),
      syncRulesId: integer('sync_rules_id').notNull(),
    },
    (t) => [primaryKey({ columns: [t.userId, t.syncRulesId] })],
  );

  const instance = s.table('instance', { id: text('id').primaryKey() });

  /**
   * Client connection analytics (service-core's ReportStorage): one row per client connection, re-used while the
   * same user and client reconnect within a UTC day. Rows leave through `deleteOldConnectionData(date)`.
   */
  const connectionReportEvents = s.table(
    'connection_report_events',
    {
      id: text('id').primaryKey(),
      userAgent: text('user_agent').notNull(),
      clientId: text('client_id').notNull(),
      userId: text('user_id').notNull(),
      sdk: text('sdk').notNull(),
      jwtExp: timestamp('jwt_exp', { withTimezone: true }),
      connectedAt: timestamp('connected_at', { withTimezone: true }).notNull(),
      disconnectedAt: timestamp('disconnected_at', { withTimezone: true }),
      // Insertion order: pages list connections newest first and, at the same instant, in the order they were
      // recorded (the order PowerSync's own storage returns them in); the page cursor names it.
      seq: bigint('seq', { mode: 'bigint' }).notNull().generatedAlwaysAsIdentity(),
    },
    (t) => [
      // Reports and pages by connection time, ties in insertion order.
      index('connection_report_events_connected_seq').on(t.connectedAt.desc(), t.seq),
      // A reconnect finds its day's row; pages per user / client.
      index('connection_report_events_user_client').on(t.userId, t.clientId, t.connectedAt),
      index('connection_report_events_client').on(t.clientId, t.connectedAt),
      // Currently connected clients: open rows by token expiry.
      index('connection_report_events_open').on(t.jwtExp).where(sql`${t.disconnectedAt} IS NULL`),
    ],
  );

  /** Lease rows: a holder refreshes `ts`; a row older than the lease may be taken over. */
  const locks = s.table('locks', {
    name: text('name').primaryKey(),
    lockId: uuid('lock_id').notNull(),
    ts: timestamp('ts', { withTimezone: true }).notNull(),
  });

  /**
   * The PowerSync service's migration log (service-core's MigrationStore: last migration run and the history), kept
   * by `PgStateMigrationAgent`. One row (id 1). Separate from pgstate's own journal, which tracks the SQL files.
   */
  const serviceMigrations = s.table('service_migrations', {
    id: integer('id').primaryKey(),
    lastRun: text('last_run').notNull(),
    log: jsonb('log').notNull(),
  });

  return {
    opIdSequence,
    syncRulesIdSequence,
    syncRules,
    sourceTables,
    bucketData,
    bucketParameters,
    currentData,
    writeCheckpoints,
    customWriteCheckpoints,
    instance,
    locks,
    connectionReportEvents,
    serviceMigrations,
  };
}

export type PowerSyncTables = ReturnType<typeof powersyncTables>;
