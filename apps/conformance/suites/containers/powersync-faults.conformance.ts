// PowerSync storage under faults only a container gives, on a private container server of each version (NOT RUN
// where the version does not come from a container), driven through the storage API as the replicator drives it:
// - `docker pause` during a flush: the storage's client-side timeouts (query_timeout_ms, connect_timeout) fire with
//   a clean, retryable error; flush and commit are all-or-nothing (checked in SQL after unpause); a new writer
//   re-applies the transaction after unpause and clients get exactly the source rows.
// - `docker kill` + start with the data volume kept while checkpoints are committed and watched: the watcher (one
//   LISTEN connection per process) resumes by itself, and sees every acknowledged checkpoint, never going back.
import { isConnectionLoss, isPgStateError } from '@pgstate/core';
import {
  addChecksums,
  type BucketStorageBatch,
  type CreateWriterOptions,
  checkpointNotifier,
  type OplogEntry,
  type PersistedReplicationStream,
  type PgStateBucketStorageFactory,
  type PgStateStorageConfig,
  SaveOperationTag,
  type SourceTable,
  type SyncRulesBucketStorage,
  syncRulesFromYaml,
  uuidForRow,
} from '@pgstate/powersync';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type LaneTarget } from '../../src/kit.js';
import { factoryFor, lsn, POWERSYNC_SCHEMA, TODOS } from '../../src/powersync-fixtures.js';

const SCHEMA = POWERSYNC_SCHEMA;
const YAML = 'bucket_definitions:\n  global:\n    data:\n      - SELECT id, description FROM todos\n';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STREAMING: CreateWriterOptions = { zeroLSN: lsn(0), defaultSchema: 'public', storeCurrentData: true };
/** What a user sets so that a frozen server cannot hold the replicator: connect and query timeouts. */
const TIMEOUTS: Partial<PgStateStorageConfig> = { connect_timeout: 2, query_timeout_ms: 2000 };

/** Gives up waiting (a hang detector, not a timing check) and says what did not happen. */
async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(what: string, ms: number, condition: () => boolean): Promise<void> {
  await within(
    what,
    ms,
    (async () => {
      while (!condition()) await sleep(20);
    })(),
  );
}

type Row = { id: string; description: string };
/** Disposes a writer whose connection may be gone (its error is the test's subject elsewhere). */
const quietly = (writer: BucketStorageBatch | undefined) =>
  Promise.resolve(writer?.[Symbol.asyncDispose]()).catch(() => {});
const save = (writer: BucketStorageBatch, table: SourceTable, op: 'insert' | 'update' | 'delete', r: Row) =>
  writer.save(
    op === 'delete'
      ? {
          tag: SaveOperationTag.DELETE,
          sourceTable: table,
          before: { id: r.id },
          beforeReplicaId: uuidForRow({ id: r.id }),
        }
      : {
          tag: op === 'insert' ? SaveOperationTag.INSERT : SaveOperationTag.UPDATE,
          sourceTable: table,
          after: r,
          afterReplicaId: uuidForRow({ id: r.id }),
        },
  );

/** A streaming writer on the resolved `todos` table, as the replicator has after a (re)start. */
async function streamingWriter(storage: SyncRulesBucketStorage, options: CreateWriterOptions = STREAMING) {
  const writer = await storage.createWriter(options);
  const { tables } = await writer.resolveTables({ connection_id: 1, source: TODOS });
  return { writer, table: tables[0]! };
}

/** A deployed stream whose snapshot is done and that serves (ACTIVE) at lsn(1), with `rows` in it. */
async function activeStream(factory: PgStateBucketStorageFactory, rows: Row[]) {
  const stream = await factory.updateSyncRules(syncRulesFromYaml(YAML));
  const storage = factory.getInstance(stream);
  const { writer, table } = await streamingWriter(storage);
  await writer.markTableSnapshotDone([table]);
  await writer.markAllSnapshotDone(lsn(1));
  for (const r of rows) await save(writer, table, 'insert', r);
  expect(await writer.commit(lsn(1))).toEqual({ checkpointBlocked: false, checkpointCreated: true });
  await writer[Symbol.asyncDispose]();
  return { stream, storage };
}

/** What a client holds at the current checkpoint (ops applied in order), and whether the checksums agree. */
async function clientView(storage: SyncRulesBucketStorage, stream: PersistedReplicationStream) {
  const checkpoint = await storage.getCheckpoint();
  const parsed = stream.parsed({ defaultSchema: 'public' });
  const source = parsed.syncConfigs[0]!.config.bucketDataSources[0]!;
  const name = `${parsed.hydrationState.getBucketSourceScope(source).bucketPrefix}[]`;
  const ops: OplogEntry[] = [];
  for (let start = 0n, more = true; more; ) {
    more = false;
    for await (const { chunkData } of storage.getBucketDataBatch(checkpoint, [{ bucket: name, start, source }])) {
      ops.push(...chunkData.data);
      more = chunkData.has_more;
      start = BigInt(chunkData.next_after);
    }
  }
  const rows = new Map<string, unknown>();
  let checksum = 0;
  for (const op of ops) {
    checksum = addChecksums(checksum, Number(op.checksum));
    if (op.op === 'CLEAR') rows.clear();
    else if (op.op === 'PUT') rows.set(op.object_id!, JSON.parse(op.data!));
    else if (op.op === 'REMOVE') rows.delete(op.object_id!);
  }
  const sums = (await storage.getChecksums(checkpoint, [{ bucket: name, source }])).get(name);
  return {
    checkpoint: checkpoint.checkpoint,
    rows: Object.fromEntries([...rows].sort(([a], [b]) => (a < b ? -1 : 1))),
    checksumsAgree: sums?.checksum === (checksum | 0) && sums?.count === ops.length,
  };
}

const expected = (rows: Map<string, Row>) =>
  Object.fromEntries([...rows.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((r) => [r.id, r]));

/** A failure as a user sees it: typed, retryable, one line, no password. */
function expectCleanRetryable(error: unknown, lane: LaneTarget, what: string) {
  expect(isPgStateError(error), `${what}: ${String(error)}`).toBe(true);
  expect(isConnectionLoss(error), `${what} is retryable: ${String(error)}`).toBe(true);
  expect(String(error)).not.toMatch(/\n\s+at /);
  const password = new URL(lane.url).password;
  if (password) expect(String(error)).not.toContain(password);
}

defineConformance({
  adapter: '@pgstate/powersync',
  lanes: [{ name: 'container-faults', via: 'direct' as const }],
  async setup(_admin, lane) {
    const factory = factoryFor(lane.adminUrl);
    await factory.db.ensureMigrated();
    await factory[Symbol.asyncDispose]();
  },
  create: (lane) => factoryFor(lane.url, TIMEOUTS),
  close: (factory) => factory[Symbol.asyncDispose](),
  probes: (admin: pg.Pool) => ({
    /** The stream's checkpoint row and what is stored beyond a checkpoint. */
    async stored(groupId: number, after: bigint) {
      const { rows } = await admin.query<{
        last_checkpoint: string;
        last_checkpoint_lsn: string;
        ops_after: number;
        current_rows: number;
      }>(
        `SELECT s.last_checkpoint::text, s.last_checkpoint_lsn,
                (SELECT count(*)::int FROM ${SCHEMA}.bucket_data b WHERE b.group_id = s.id AND b.op_id > $2) AS ops_after,
                (SELECT count(*)::int FROM ${SCHEMA}.current_data c WHERE c.group_id = s.id) AS current_rows
           FROM ${SCHEMA}.sync_rules s WHERE s.id = $1`,
        [groupId, String(after)],
      );
      return rows[0]!;
    },
  }),
  tests({ test }) {
    test(
      'docker pause during a flush and a commit: the client timeouts fire cleanly, nothing is half-written, a new writer resumes after unpause',
      async ({ adapter: factory, lane, faults, probes }) => {
        const source = new Map<string, Row>();
        const initial = ['a', 'b', 'c'].map((id) => ({ id, description: `first ${id}` }));
        for (const r of initial) source.set(r.id, r);
        const { stream, storage } = await activeStream(factory, initial);
        const groupId = stream.replicationStreamId;
        const c1 = (await storage.getCheckpoint()).checkpoint;

        // One source transaction: inserts, an update, a delete.
        const change: (readonly ['insert' | 'update' | 'delete', Row])[] = [
          ...Array.from({ length: 40 }, (_, i) => ['insert', { id: `n${i}`, description: `new ${i}` }] as const),
          ['update', { id: 'a', description: 'changed a' }],
          ['delete', { id: 'b', description: '' }],
        ];

        // The server freezes as the flush starts (the writer's own hook: between save() and the first statement).
        let paused = false;
        const { writer, table } = await streamingWriter(storage, {
          ...STREAMING,
          hooks: {
            beforeBatchFlush: async () => {
              if (paused) return;
              await faults.pauseServer();
              paused = true;
            },
          },
        });
        let flushError: unknown;
        try {
          for (const [op, r] of change) await save(writer, table, op, r);
          flushError = await within('a flush against the frozen server', 60_000, writer.flush()).then(
            () => 'flushed',
            (e: unknown) => e,
          );
        } finally {
          if (paused) await faults.unpauseServer();
        }
        expect(paused).toBe(true);
        expectCleanRetryable(flushError, lane, 'the flush');
        expect(String(flushError)).toMatch(/query_timeout_ms/);
        // Nothing of that flush: no op past the checkpoint, current data as before, the checkpoint unmoved.
        expect(await probes.stored(groupId, c1)).toMatchObject({
          last_checkpoint: String(c1),
          last_checkpoint_lsn: lsn(1),
          ops_after: 0,
          current_rows: 3,
        });
        await quietly(writer);

        // The replicator restarts: a new writer re-applies the transaction; this time the server freezes at commit.
        const again = await streamingWriter(storage);
        for (const [op, r] of change) await save(again.writer, again.table, op, r);
        const flushed = await again.writer.flush();
        expect(flushed?.flushed_op).toBeTypeOf('bigint');
        await faults.pauseServer();
        let commitError: unknown;
        try {
          commitError = await within('a commit against the frozen server', 60_000, again.writer.commit(lsn(2))).then(
            () => 'committed',
            (e: unknown) => e,
          );
        } finally {
          await faults.unpauseServer();
        }
        expectCleanRetryable(commitError, lane, 'the commit');
        // The abandoned commit statement may still run once the server thaws, but only whole: the old checkpoint
        // at lsn(1), or the new one at lsn(2) covering every op the flush wrote.
        const afterCommit = await probes.stored(groupId, c1);
        expect([
          { last_checkpoint: String(c1), last_checkpoint_lsn: lsn(1) },
          { last_checkpoint: String(flushed!.flushed_op), last_checkpoint_lsn: lsn(2) },
        ]).toContainEqual({
          last_checkpoint: afterCommit.last_checkpoint,
          last_checkpoint_lsn: afterCommit.last_checkpoint_lsn,
        });
        await quietly(again.writer);

        // Work resumes: the replicator re-applies the transaction once more and commits.
        const last = await streamingWriter(storage);
        for (const [op, r] of change) await save(last.writer, last.table, op, r);
        expect(await last.writer.commit(lsn(2))).toMatchObject({ checkpointBlocked: false });
        await last.writer[Symbol.asyncDispose]();
        for (const [op, r] of change) {
          if (op === 'delete') source.delete(r.id);
          else source.set(r.id, r);
        }
        const view = await clientView(storage, stream);
        expect(view.rows).toEqual(expected(source));
        expect(view.checksumsAgree).toBe(true);
      },
      { privateServer: 'container', timeout: 300_000 },
    );

    test(
      'docker kill + start with the data volume during live checkpoints: the watcher resumes by itself and misses no acknowledged checkpoint',
      async ({ adapter: factory, faults, probes, admin }) => {
        const startedAt = async () =>
          (await admin.query<{ t: string }>('SELECT pg_postmaster_start_time()::text AS t')).rows[0]!.t;
        const startedBefore = await startedAt();
        const { stream, storage } = await activeStream(factory, [{ id: 'r0', description: 'row 0' }]);
        const groupId = stream.replicationStreamId;

        // A sync connection's view: every checkpoint the storage reports, in order.
        const observed: bigint[] = [];
        const watching = new AbortController();
        let watchError: unknown;
        const watcher = (async () => {
          for await (const update of storage.watchCheckpointChanges({ user_id: 'u1', signal: watching.signal })) {
            observed.push(update.base.checkpoint);
          }
        })().catch((error: unknown) => {
          watchError = error;
        });
        const seen = (checkpoint: bigint) => observed.some((c) => c >= checkpoint);
        await until('the first checkpoint observed', 30_000, () => observed.length > 0);

        // The replicator: one transaction (one row) per checkpoint; on an error, a new writer re-applies it.
        const acked: { checkpoint: bigint; i: number; afterRestart: boolean }[] = [];
        let restarted = false;
        let stop = false;
        const replicator = (async () => {
          let current: Awaited<ReturnType<typeof streamingWriter>> | undefined;
          for (let i = 1; !stop; ) {
            try {
              current ??= await streamingWriter(storage);
              await save(current.writer, current.table, 'insert', { id: `r${i}`, description: `row ${i}` });
              const result = await current.writer.commit(lsn(1 + i));
              if (!result.checkpointCreated) throw new Error(`commit ${i} created no checkpoint`);
              const checkpoint = current.writer.last_flushed_op!;
              acked.push({ checkpoint, i, afterRestart: restarted });
              // Wait for the watcher before the next commit, so each checkpoint must be seen on its own.
              await until(`checkpoint ${checkpoint} observed`, 60_000, () => seen(checkpoint) || watchError != null);
              i++;
            } catch {
              // The server went away mid-call: as the replicator does, start over with a new writer.
              await quietly(current?.writer);
              current = undefined;
              await sleep(200);
            }
          }
          await quietly(current?.writer);
        })();

        let lastBefore: (typeof acked)[number] | undefined;
        try {
          await until('5 checkpoints before the restart', 60_000, () => acked.length >= 5);
          lastBefore = acked.at(-1)!;
          await faults.restartServer('kill');
          restarted = true;
          await until(
            '5 checkpoints after the restart',
            120_000,
            () => acked.filter((a) => a.afterRestart).length >= 5,
          );
        } finally {
          stop = true;
          await replicator;
        }
        const notifier = checkpointNotifier(factory.db);
        watching.abort();
        await watcher;

        expect(watchError, String(watchError)).toBeUndefined();
        // The LISTEN connection was replaced after the restart, without anyone asking.
        expect(notifier.stats.connects).toBeGreaterThanOrEqual(2);
        // Every acknowledged checkpoint was observed (the last one before the restart and every one after it); the
        // watcher never went backwards.
        expect(
          lastBefore != null && seen(lastBefore.checkpoint),
          'the last checkpoint acknowledged before the restart',
        ).toBe(true);
        for (const a of acked) expect(seen(a.checkpoint), `checkpoint ${a.checkpoint} (row r${a.i})`).toBe(true);
        expect(observed).toEqual([...observed].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
        expect(new Set(observed).size).toBe(observed.length);
        // Nothing acknowledged was lost: the stored checkpoint covers the last one, and every acked row is served.
        const maxAcked = acked.at(-1)!.checkpoint;
        expect(BigInt((await probes.stored(groupId, 0n)).last_checkpoint)).toBeGreaterThanOrEqual(maxAcked);
        const view = await clientView(storage, stream);
        for (const a of acked)
          expect(view.rows[`r${a.i}`], `row r${a.i}`).toEqual({ id: `r${a.i}`, description: `row ${a.i}` });
        expect(view.checksumsAgree).toBe(true);
        // The server really restarted (the replicator may or may not have had a call in flight at that moment).
        expect(await startedAt()).not.toBe(startedBefore);
      },
      { privateServer: 'container', timeout: 300_000 },
    );
  },
});
