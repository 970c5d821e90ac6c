import { PgStateError, validateIdentifier } from '@pgstate/core';
// Types only: the adapter (and PowerSync's sync-rules engine) loads when a powersync command runs, not at every start.
import type {
  ClearResult,
  CompactResult,
  PgStateBucketStorageFactory,
  PgStateSyncRulesStorage,
} from '@pgstate/powersync';
import type { Command } from 'commander';
import type { CommandContext } from '../context.js';
import { UsageError } from '../errors.js';
import { withExamples } from '../help.js';

interface GroupOptions {
  schema?: string;
}

/** 1536 -> "1.5 KiB". */
function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function positiveInt(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${name} "${value}" is not a positive whole number.`);
  return n;
}

interface StreamRow {
  id: number;
  state: string;
  slot_name: string;
  storage_version: number;
  snapshot_done: boolean;
  last_checkpoint: bigint | null;
  last_checkpoint_lsn: string | null;
  last_checkpoint_ts: Date | null;
  last_keepalive_ts: Date | null;
  last_fatal_error: string | null;
}

export function register(program: Command, context: CommandContext): void {
  const powersync = program
    .command('powersync')
    .description('PowerSync bucket storage in PostgreSQL: status, migrate, compact, clear')
    .option('--schema <name>', 'storage schema (default: ?schema= of the URL, else powersync)');
  withExamples(powersync, [
    ['pgstate powersync status', 'streams, checkpoints and sizes in schema powersync'],
    ['pgstate --url "$STORAGE_URL" powersync migrate', 'create the storage tables with a privileged role'],
    ['pgstate powersync --schema ps_staging compact', 'another storage schema'],
  ]);

  async function open(): Promise<PgStateBucketStorageFactory> {
    const settings = await context.settings({ adapterParams: ['schema'] });
    const schema = validateIdentifier(
      powersync.opts<GroupOptions>().schema ?? settings.adapterParams.schema ?? 'powersync',
      'schema name',
    );
    const { DEFAULT_BATCH_LIMITS, PgStateBucketStorageFactory } = await import('@pgstate/powersync');
    const factory = new PgStateBucketStorageFactory({
      config: {
        connection: settings,
        schema,
        defaultStorageVersion: 2,
        batchLimits: DEFAULT_BATCH_LIMITS,
        lockLeaseMs: 60_000,
      },
    });
    context.onClose(() => factory[Symbol.asyncDispose]());
    return factory;
  }

  /** The stream named by --stream, else the serving one. */
  async function streamStorage(factory: PgStateBucketStorageFactory, id?: string): Promise<PgStateSyncRulesStorage> {
    if (id == null) {
      const active = await factory.getActiveSyncConfig();
      if (active == null) {
        throw new PgStateError('NOT_FOUND', 'No replication stream is serving (ACTIVE or ERRORED).', {
          fix: 'Pass --stream <id> (see `pgstate powersync status`).',
        });
      }
      return active.storage as PgStateSyncRulesStorage;
    }
    const streamId = positiveInt(id, '--stream');
    const all = [
      ...(await factory.getReplicatingReplicationStreams()),
      ...(await factory.getStoppedReplicationStreams()),
    ];
    let stream = all.find((s) => s.replicationStreamId === streamId);
    if (stream == null) {
      const active = await factory.getActiveSyncConfig();
      if (active?.replicationStream.replicationStreamId === streamId) stream = active.replicationStream;
    }
    if (stream == null) {
      const row = await factory.db.first<{ state: string }>(
        `SELECT state FROM ${factory.db.names.syncRules} WHERE id = $1`,
        [streamId],
      );
      throw new PgStateError(
        'NOT_FOUND',
        row
          ? `Replication stream ${streamId} is ${row.state}; only PROCESSING, ACTIVE, ERRORED and STOP streams can be compacted or cleared here.`
          : `Replication stream ${streamId} does not exist.`,
        { fix: 'See `pgstate powersync status` for the streams.' },
      );
    }
    return factory.getInstance(stream, { skipLifecycleHooks: true }) as PgStateSyncRulesStorage;
  }

  withExamples(
    powersync
      .command('status')
      .description('replication streams, states, checkpoints, bucket/op counts and sizes')
      .action(async () => {
        const factory = await open();
        await factory.db.ensureMigrated();
        const n = factory.db.names;
        const streams = await factory.db.query<StreamRow>(
          `SELECT id, state, slot_name, storage_version, snapshot_done, last_checkpoint, last_checkpoint_lsn,
                  last_checkpoint_ts, last_keepalive_ts, last_fatal_error
           FROM ${n.syncRules} ORDER BY id`,
        );
        // Per stream: rows and their on-disk size (pg_column_size of the row; indexes are in the table sizes).
        const counts = await factory.db.query<{ group_id: number; buckets: bigint; ops: bigint; bytes: bigint }>(
          `SELECT group_id, count(DISTINCT bucket_name)::int8 AS buckets, count(*)::int8 AS ops,
                  sum(pg_column_size(b.*))::int8 AS bytes
           FROM ${n.bucketData} b GROUP BY group_id`,
        );
        const params = await factory.db.query<{ group_id: number; n: bigint; bytes: bigint }>(
          `SELECT group_id, count(*)::int8 AS n, sum(pg_column_size(p.*))::int8 AS bytes
           FROM ${n.bucketParameters} p GROUP BY group_id`,
        );
        const current = await factory.db.query<{ group_id: number; n: bigint; bytes: bigint }>(
          `SELECT group_id, count(*)::int8 AS n, sum(pg_column_size(c.*))::int8 AS bytes
           FROM ${n.currentData} c GROUP BY group_id`,
        );
        const sizes = await factory.db.first<{ ops: bigint; params: bigint; current: bigint; reports: bigint }>(
          `SELECT pg_total_relation_size($1::regclass)::int8 AS ops, pg_total_relation_size($2::regclass)::int8 AS params,
                  pg_total_relation_size($3::regclass)::int8 AS current,
                  pg_total_relation_size($4::regclass)::int8 AS reports`,
          [n.bucketData, n.bucketParameters, n.currentData, n.connectionReportEvents],
        );
        const reportRows = await factory.db.first<{ n: bigint; open: bigint }>(
          `SELECT count(*)::int8 AS n, count(*) FILTER (WHERE disconnected_at IS NULL AND jwt_exp > now())::int8 AS open
           FROM ${n.connectionReportEvents}`,
        );
        const states: Record<string, number> = {};
        for (const s of streams) states[s.state] = (states[s.state] ?? 0) + 1;
        const doc = {
          schema: factory.db.config.schema,
          states,
          streams: streams.map((s) => {
            const c = counts.find((x) => x.group_id === s.id);
            const p = params.find((x) => x.group_id === s.id);
            const r = current.find((x) => x.group_id === s.id);
            return {
              id: s.id,
              state: s.state,
              slotName: s.slot_name,
              storageVersion: s.storage_version,
              snapshotDone: s.snapshot_done,
              lastCheckpoint: s.last_checkpoint?.toString() ?? null,
              lastCheckpointLsn: s.last_checkpoint_lsn,
              lastCheckpointAt: s.last_checkpoint_ts?.toISOString() ?? null,
              lastKeepaliveAt: s.last_keepalive_ts?.toISOString() ?? null,
              lastFatalError: s.last_fatal_error,
              buckets: Number(c?.buckets ?? 0n),
              ops: Number(c?.ops ?? 0n),
              opsBytes: Number(c?.bytes ?? 0n),
              parameterRows: Number(p?.n ?? 0n),
              parameterBytes: Number(p?.bytes ?? 0n),
              replicatedRows: Number(r?.n ?? 0n),
              replicatedBytes: Number(r?.bytes ?? 0n),
            };
          }),
          sizes: {
            operationsBytes: Number(sizes!.ops),
            parametersBytes: Number(sizes!.params),
            replicationBytes: Number(sizes!.current),
            connectionReportsBytes: Number(sizes!.reports),
          },
          connectionReports: { rows: Number(reportRows?.n ?? 0n), connected: Number(reportRows?.open ?? 0n) },
        };
        if (context.output.json) {
          context.output.emitJson(doc);
          return;
        }
        const out = context.output;
        const stateList = Object.entries(states)
          .map(([state, count]) => `${count} ${state}`)
          .join(', ');
        out.line(
          `schema ${doc.schema}: ${doc.streams.length} replication stream(s)${stateList ? ` (${stateList})` : ''}`,
        );
        for (const s of doc.streams) {
          out.line(
            `  #${s.id} ${s.state.padEnd(10)} v${s.storageVersion} ${s.slotName}  checkpoint ${s.lastCheckpoint ?? '-'} ` +
              `@ ${s.lastCheckpointLsn ?? '-'}${s.lastCheckpointAt ? ` (${s.lastCheckpointAt})` : ''}` +
              `${s.snapshotDone ? '' : '  snapshot in progress'}`,
          );
          out.line(
            `      ${s.buckets} buckets, ${s.ops} ops (${bytes(s.opsBytes)}), ${s.replicatedRows} replicated rows ` +
              `(${bytes(s.replicatedBytes)}), ${s.parameterRows} parameter rows (${bytes(s.parameterBytes)})` +
              (s.lastFatalError ? `  error: ${s.lastFatalError}` : ''),
          );
        }
        out.line(
          `table sizes with indexes: operations ${bytes(doc.sizes.operationsBytes)}, parameters ${bytes(doc.sizes.parametersBytes)}, ` +
            `current data ${bytes(doc.sizes.replicationBytes)}, connection reports ${bytes(doc.sizes.connectionReportsBytes)} ` +
            `(${doc.connectionReports.rows} rows, ${doc.connectionReports.connected} connected)`,
        );
        out.line(
          'checkpoint notifications: `pgstate doctor --adapter powersync` says which mode applies and if it works',
        );
      }),
    [
      ['pgstate powersync status', 'streams, checkpoints and sizes'],
      ['pgstate powersync status --json', 'the same as JSON'],
    ],
  );

  withExamples(
    powersync
      .command('migrate')
      .description('create or update the storage tables (run once with a privileged role)')
      .action(async () => {
        const factory = await open();
        await factory.db.ensureMigrated();
        if (context.output.json) context.output.emitJson({ schema: factory.db.config.schema, migrated: true });
        else context.output.line(`PowerSync storage in schema ${factory.db.config.schema} is up to date.`);
      }),
    [['pgstate powersync migrate --schema powersync', 'create the tables']],
  );

  withExamples(
    powersync
      .command('compact')
      .description('compact bucket operations (MOVE/CLEAR) and parameter lookups up to the current checkpoint')
      .option('--stream <id>', 'replication stream (default: the serving one)')
      .option('--max-op-id <op>', 'compact only ops up to this op id (default: the current checkpoint)')
      .option('--bucket <name...>', 'only these buckets (parameters are then left alone)')
      .option('--no-parameters', 'leave parameter lookups alone')
      .option('--memory-limit-mb <n>', 'cap on rows tracked per bucket (default 64)')
      .action(
        async (opts: {
          stream?: string;
          maxOpId?: string;
          bucket?: string[];
          parameters: boolean;
          memoryLimitMb?: string;
        }) => {
          const factory = await open();
          await factory.db.ensureMigrated();
          const storage = await streamStorage(factory, opts.stream);
          let maxOpId: bigint | undefined;
          if (opts.maxOpId != null) {
            if (!/^\d+$/.test(opts.maxOpId)) throw new UsageError(`--max-op-id "${opts.maxOpId}" is not an op id.`);
            maxOpId = BigInt(opts.maxOpId);
          }
          const abort = new AbortController();
          const stop = () => abort.abort();
          process.once('SIGINT', stop);
          let result: CompactResult;
          try {
            result = await storage.compactWithResult({
              maxOpId,
              compactBuckets: opts.bucket,
              compactParameterData: opts.parameters,
              memoryLimitMB:
                opts.memoryLimitMb == null ? undefined : positiveInt(opts.memoryLimitMb, '--memory-limit-mb'),
              signal: abort.signal,
            });
          } finally {
            process.off('SIGINT', stop);
          }
          const doc = { stream: storage.replicationStreamId, interrupted: abort.signal.aborted, ...result };
          if (context.output.json) context.output.emitJson(doc);
          else
            context.output.line(
              `stream #${doc.stream}: ${result.buckets} buckets, ${result.moved} ops moved, ${result.cleared} ops cleared, ` +
                `${result.parameterRowsDeleted} parameter rows removed${doc.interrupted ? ' (interrupted)' : ''}`,
            );
        },
      ),
    [
      ['pgstate powersync compact', 'compact the serving stream'],
      ['pgstate powersync compact --stream 3 --no-parameters', 'only bucket data of stream 3'],
    ],
  );

  withExamples(
    powersync
      .command('clear')
      .description("delete a replication stream's data in batches (Ctrl-C stops between batches; run again to finish)")
      .requiredOption('--stream <id>', 'replication stream to clear')
      .option('--batch-size <n>', 'rows per DELETE (default 10000)')
      .option('--terminate', 'also mark the stream TERMINATED')
      .option('--yes', 'confirm: the data cannot be recovered')
      .action(async (opts: { stream: string; batchSize?: string; terminate?: boolean; yes?: boolean }) => {
        if (!opts.yes) throw new UsageError('clear deletes replicated data for good: pass --yes to confirm.');
        const factory = await open();
        await factory.db.ensureMigrated();
        const storage = await streamStorage(factory, opts.stream);
        const abort = new AbortController();
        const stop = () => abort.abort();
        process.once('SIGINT', stop);
        let result: ClearResult;
        try {
          const { clearReplicationStream } = await import('@pgstate/powersync');
          result = await clearReplicationStream(factory.db, storage.replicationStreamId, {
            signal: abort.signal,
            batchSize: opts.batchSize == null ? undefined : positiveInt(opts.batchSize, '--batch-size'),
            onProgress: (p) => context.output.debug(`${p.table}: ${p.deleted} rows deleted`),
          });
          if (opts.terminate) await storage.terminate({ clearStorage: false });
        } finally {
          process.off('SIGINT', stop);
        }
        const doc = { stream: storage.replicationStreamId, terminated: Boolean(opts.terminate), deleted: result };
        if (context.output.json) context.output.emitJson(doc);
        else
          context.output.line(
            `stream #${doc.stream} cleared${doc.terminated ? ' and terminated' : ''}: ${result.bucketData} ops, ` +
              `${result.bucketParameters} parameter rows, ${result.currentData} current rows deleted.`,
          );
      }),
    [['pgstate powersync clear --stream 2 --yes', 'delete the data of a stopped stream']],
  );
}
