/**
 * @pgstate/powersync (issues 8 and 9): replication writes, bucket drain and checksums beside the raw-SQL floor for
 * the same work on the same server; compaction and live-checkpoint latency when the adapter implements them.
 */

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type BucketDataRequest,
  type BucketStorageBatch,
  type BucketStorageFactory,
  hashData,
  type PersistedReplicationStream,
  pgstateTestSetup,
  type ReplicationCheckpoint,
  SaveOperationTag,
  SourceTable,
  type SyncRulesBucketStorage,
  syncRulesFromYaml,
  uuidForRow,
} from '@pgstate/powersync';
import pg from 'pg';
import { NotRun, type Prepared, perSecond, type Scenario } from '../harness.js';

const SCHEMA = 'powersync';
const TABLE_ID = '6544e3899293153fa7b38331';

/** One bucket per list: `by_list["<list>"]`. */
const BY_LIST_YAML = `
bucket_definitions:
  by_list:
    parameters: SELECT request.parameters() ->> 'list_id' AS list_id
    data:
      - SELECT id, list_id, description FROM todos WHERE list_id = bucket.list_id
`;

/** Replication LSNs compare as text: fixed-width hex. */
const lsn = (n: number) => `00000000/${n.toString(16).toUpperCase().padStart(8, '0')}`;

interface Stream {
  factory: BucketStorageFactory;
  storage: SyncRulesBucketStorage;
  stream: PersistedReplicationStream;
  writer: BucketStorageBatch;
  table: SourceTable;
  groupId: number;
  /** The stored bucket name and request for `by_list["<list>"]` (or `global[]`). */
  bucket(name: string, start?: bigint): BucketDataRequest;
  commit(): Promise<void>;
  close(): Promise<void>;
}

async function openStream(url: string, yaml = BY_LIST_YAML): Promise<Stream> {
  const setup = pgstateTestSetup({ url, schema: SCHEMA });
  const factory = await setup.factory();
  const stream = await factory.updateSyncRules(syncRulesFromYaml(yaml));
  const storage = factory.getInstance(stream);
  const writer = await storage.createWriter({ defaultSchema: 'public', zeroLSN: lsn(0), storeCurrentData: true });
  const { tables } = await writer.resolveTables({
    connection_id: 1,
    source: {
      connectionTag: SourceTable.DEFAULT_TAG,
      objectId: 'todos:id',
      schema: 'public',
      name: 'todos',
      replicaIdColumns: [{ name: 'id', type: 'VARCHAR', typeId: 25 }],
    },
    idGenerator: () => TABLE_ID,
  });
  await writer.markAllSnapshotDone(lsn(1));
  let n = 1;
  const parsed = stream.parsed({ defaultSchema: 'public' });
  const sources = parsed.syncConfigs.flatMap((c) => c.config.bucketDataSources);
  return {
    factory,
    storage,
    stream,
    writer,
    table: tables[0]!,
    groupId: stream.replicationStreamId,
    bucket(name, start = 0n) {
      const at = name.indexOf('[');
      const source = sources.find((s) => s.uniqueName === name.slice(0, at));
      if (!source) throw new Error(`no bucket definition for ${name}`);
      return {
        bucket: parsed.hydrationState.getBucketSourceScope(source).bucketPrefix + name.slice(at),
        start,
        source,
      };
    },
    async commit() {
      n++;
      await writer.commit(lsn(n));
    },
    async close() {
      await writer[Symbol.asyncDispose]();
      await factory[Symbol.asyncDispose]();
    },
  };
}

const checkpointAt = (checkpoint: bigint): ReplicationCheckpoint => ({
  checkpoint,
  lsn: null,
  getParameterSets: async () => [],
});

const todo = (id: string, list: string) => ({ id, list_id: list, description: `todo ${id} of list ${list}` });

async function saveAll(s: Stream, rows: ReturnType<typeof todo>[]): Promise<void> {
  for (const row of rows) {
    await s.writer.save({
      sourceTable: s.table,
      tag: SaveOperationTag.INSERT,
      after: row,
      afterReplicaId: uuidForRow({ id: row.id }),
    });
  }
  await s.commit();
}

/** A second op table shaped like the adapter's (same columns, keys and indexes): where raw baselines write. */
async function copyTable(client: pg.Client, name: string): Promise<void> {
  await client.query(`CREATE TABLE ${name} (LIKE ${SCHEMA}.bucket_data INCLUDING ALL)`);
}

const writes: Scenario = {
  suite: 'powersync',
  name: 'replication writes, 100k rows into 1k buckets',
  goal: { text: 'within 2x of a bare batched INSERT of the same ops', maxRatio: 2 },
  runs: 5,
  warmups: 1,
  async prepare({ url, quick }): Promise<Prepared> {
    const rows = quick ? 2000 : 100_000;
    const lists = quick ? 100 : 1000;
    const s = await openStream(url);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await copyTable(client, 'bench_ops');
    let round = 0;
    const batch = (r: number) => Array.from({ length: rows }, (_, i) => todo(`r${r}-${i}`, `list-${i % lists}`));
    let candidateRows: ReturnType<typeof todo>[] = [];
    let ops: { bucket: string[]; key: Buffer[]; rowId: string[]; checksum: string[]; data: string[] } | undefined;
    let opId = 0;
    return {
      candidate: {
        label: 'writer.save x rows + commit (current data, op log, checkpoint)',
        async before() {
          candidateRows = batch(round++);
        },
        run: () => saveAll(s, candidateRows),
      },
      baseline: {
        label: 'bare INSERT ... SELECT FROM unnest(...) of the same ops, 2,000 per statement',
        async before() {
          const b = batch(round++);
          ops = { bucket: [], key: [], rowId: [], checksum: [], data: [] };
          for (const row of b) {
            const data = JSON.stringify(row);
            ops.bucket.push(s.bucket(`by_list["${row.list_id}"]`).bucket);
            ops.key.push(Buffer.from(row.id));
            ops.rowId.push(row.id);
            ops.checksum.push(String(hashData('todos', row.id, data)));
            ops.data.push(data);
          }
        },
        async run() {
          const o = ops!;
          for (let at = 0; at < o.bucket.length; at += 2000) {
            const end = at + 2000;
            const ids = o.bucket.slice(at, end).map(() => String(++opId));
            await client.query(
              `INSERT INTO bench_ops (group_id, bucket_name, op_id, op, source_table, source_key, table_name, row_id,
                 checksum, data)
               SELECT $1, u.bucket, u.op_id, 'PUT', $2, u.key, 'todos', u.row_id, u.checksum, u.data
               FROM unnest($3::text[], $4::int8[], $5::bytea[], $6::text[], $7::int8[], $8::text[])
                 AS u(bucket, op_id, key, row_id, checksum, data)`,
              [
                s.groupId,
                TABLE_ID,
                o.bucket.slice(at, end),
                ids,
                o.key.slice(at, end),
                o.rowId.slice(at, end),
                o.checksum.slice(at, end),
                o.data.slice(at, end),
              ],
            );
          }
        },
      },
      units: {
        rows: 'count',
        buckets: 'count',
        candidateRowsPerSecond: 'perSecond',
        baselineRowsPerSecond: 'perSecond',
      },
      extras: async (stats) => ({
        rows,
        buckets: lists,
        candidateRowsPerSecond: perSecond(rows, stats.candidate.medianMs),
        baselineRowsPerSecond: perSecond(rows, stats.baseline.medianMs),
      }),
      async teardown() {
        await client.end();
        await s.close();
      },
    };
  },
};

const GLOBAL_YAML = `
bucket_definitions:
  global:
    data:
      - SELECT id, list_id, description FROM todos
`;

const drain: Scenario = {
  suite: 'powersync',
  name: 'full bucket drain, 1M ops',
  runs: 3,
  warmups: 1,
  async prepare({ url, quick }): Promise<Prepared> {
    const written = quick ? 2000 : 100_000;
    const copies = quick ? 2 : 10;
    const s = await openStream(url, GLOBAL_YAML);
    await saveAll(
      s,
      Array.from({ length: written }, (_, i) => todo(`t${i}`, `list-${i % 10}`)),
    );
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    // Multiply the written ops into one long log (same rows re-PUT), with op ids above everything written.
    const { rows: maxRows } = await client.query<{ max: string }>(
      `SELECT max(op_id)::text AS max FROM ${SCHEMA}.bucket_data`,
    );
    const top = BigInt(maxRows[0]!.max);
    for (let k = 1; k < copies; k++) {
      await client.query(
        `INSERT INTO ${SCHEMA}.bucket_data
         SELECT group_id, bucket_name, op_id + $1::int8, op, source_table, source_key, table_name, row_id, checksum,
                data, target_op
         FROM ${SCHEMA}.bucket_data WHERE op_id <= $2::int8`,
        [String(top * BigInt(k)), String(top)],
      );
    }
    await client.query(`ANALYZE ${SCHEMA}.bucket_data`);
    const checkpoint = checkpointAt(top * BigInt(copies));
    const request = s.bucket('global[]');
    const total = written * copies;
    const limit = 1000;
    return {
      candidate: {
        label: `getBucketDataBatch, ${limit} ops per call, until has_more is false`,
        async run() {
          let after = 0n;
          let seen = 0;
          for (;;) {
            let more = false;
            for await (const chunk of s.storage.getBucketDataBatch(checkpoint, [{ ...request, start: after }], {
              limit,
            })) {
              seen += chunk.chunkData.data.length;
              after = BigInt(chunk.chunkData.next_after);
              more = chunk.chunkData.has_more;
            }
            if (!more) break;
          }
          if (seen !== total) throw new Error(`drained ${seen} ops, expected ${total}`);
        },
      },
      baseline: {
        label: `bare SELECT ... WHERE op_id > $after ORDER BY op_id LIMIT ${limit}, looped`,
        async run() {
          let after = '0';
          let seen = 0;
          for (;;) {
            const { rows } = await client.query<{ op_id: string }>(
              `SELECT op_id, op, table_name, row_id, checksum, data FROM ${SCHEMA}.bucket_data
               WHERE group_id = $1 AND bucket_name = $2 AND op_id > $3::int8 AND op_id <= $4::int8
               ORDER BY op_id LIMIT ${limit}`,
              [s.groupId, request.bucket, after, String(checkpoint.checkpoint)],
            );
            seen += rows.length;
            if (rows.length < limit) break;
            after = rows.at(-1)!.op_id;
          }
          if (seen !== total) throw new Error(`raw drain read ${seen} ops, expected ${total}`);
        },
      },
      units: { ops: 'count', candidateOpsPerSecond: 'perSecond', baselineOpsPerSecond: 'perSecond' },
      extras: async (stats) => ({
        ops: total,
        candidateOpsPerSecond: perSecond(total, stats.candidate.medianMs),
        baselineOpsPerSecond: perSecond(total, stats.baseline.medianMs),
      }),
      async teardown() {
        await client.end();
        await s.close();
      },
    };
  },
};

function checksums(cache: 'cold' | 'warm'): Scenario {
  return {
    suite: 'powersync',
    name: `getChecksums over 10k buckets (${cache} cache)`,
    async prepare({ url, quick }): Promise<Prepared> {
      const lists = quick ? 200 : 10_000;
      const s = await openStream(url);
      await saveAll(
        s,
        Array.from({ length: lists * 5 }, (_, i) => todo(`t${i}`, `list-${i % lists}`)),
      );
      const { checkpoint } = await s.storage.getCheckpoint();
      const cp = checkpointAt(checkpoint);
      const requests = Array.from({ length: lists }, (_, i) => s.bucket(`by_list["list-${i}"]`));
      const names = requests.map((r) => r.bucket);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const storage = s.storage as SyncRulesBucketStorage & { clearChecksumCache?: () => void };
      if (cache === 'cold' && !storage.clearChecksumCache) {
        throw new NotRun('this @pgstate/powersync has no clearChecksumCache() to measure a cold cache');
      }
      return {
        candidate: {
          label: `getChecksums(${lists} buckets)${cache === 'cold' ? ', cache cleared before each run' : ''}`,
          async before() {
            if (cache === 'cold') storage.clearChecksumCache?.();
          },
          async run() {
            const map = await s.storage.getChecksums(cp, requests);
            if (map.size !== lists) throw new Error(`getChecksums returned ${map.size} buckets`);
          },
        },
        baseline: {
          label: 'bare SELECT bucket, sum(checksum), count(*) ... GROUP BY bucket',
          async run() {
            const { rows } = await client.query(
              `SELECT b.bucket_name, sum(b.checksum) % 4294967296 AS checksum, count(*) AS n
               FROM unnest($2::text[]) AS r(bucket)
               JOIN ${SCHEMA}.bucket_data b ON b.group_id = $1 AND b.bucket_name = r.bucket AND b.op_id <= $3::int8
               GROUP BY b.bucket_name`,
              [s.groupId, names, String(checkpoint)],
            );
            if (rows.length !== lists) throw new Error(`raw checksums returned ${rows.length} buckets`);
          },
        },
        units: { buckets: 'count', ops: 'count' },
        extras: async () => ({ buckets: lists, ops: lists * 5 }),
        async teardown() {
          await client.end();
          await s.close();
        },
      };
    },
  };
}

/** True when the adapter answers a feature with its "not implemented yet" error (issue 9 still in progress). */
function notImplemented(error: unknown): boolean {
  return /not implemented/i.test(String((error as Error)?.message ?? error));
}

const compaction: Scenario = {
  suite: 'powersync',
  name: 'compaction, 100k ops (90% superseded)',
  runs: 5,
  warmups: 1,
  async prepare({ url, quick }): Promise<Prepared> {
    const distinct = quick ? 200 : 10_000;
    const versions = 10;
    const s = await openStream(url, GLOBAL_YAML);
    try {
      await s.storage.compact();
    } catch (error) {
      await s.close();
      if (notImplemented(error)) throw new NotRun(`compact(): ${(error as Error).message}`);
      throw error;
    }
    for (let v = 0; v < versions; v++) {
      for (let i = 0; i < distinct; i++) {
        await s.writer.save({
          sourceTable: s.table,
          tag: v === 0 ? SaveOperationTag.INSERT : SaveOperationTag.UPDATE,
          after: { ...todo(`t${i}`, 'list-0'), description: `version ${v}` },
          afterReplicaId: uuidForRow({ id: `t${i}` }),
        });
      }
      await s.commit();
    }
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const group = s.groupId;
    // Pristine copies: each run starts from the same uncompacted log.
    await client.query(
      `CREATE TABLE bench_pristine AS SELECT * FROM ${SCHEMA}.bucket_data WHERE group_id = ${Number(group)}`,
    );
    await copyTable(client, 'bench_compact');
    const restore = (table: string) => async () => {
      await client.query(`DELETE FROM ${table} WHERE group_id = ${group}`);
      await client.query(`INSERT INTO ${table} SELECT * FROM bench_pristine`);
      await client.query(`VACUUM ANALYZE ${table}`);
    };
    const { checkpoint } = await s.storage.getCheckpoint();
    return {
      candidate: {
        label: 'storage.compact() (MOVE + CLEAR)',
        before: restore(`${SCHEMA}.bucket_data`),
        run: () => s.storage.compact({ maxOpId: checkpoint }),
      },
      baseline: {
        label: 'one UPDATE marking superseded ops MOVE (window max per row)',
        before: restore('bench_compact'),
        async run() {
          await client.query(
            `UPDATE bench_compact b SET op = 'MOVE', data = NULL, target_op = l.latest
             FROM (SELECT bucket_name, op_id, max(op_id) OVER (PARTITION BY bucket_name, table_name, row_id) AS latest
                   FROM bench_compact WHERE group_id = $1 AND op_id <= $2::int8) l
             WHERE b.group_id = $1 AND b.bucket_name = l.bucket_name AND b.op_id = l.op_id AND l.op_id < l.latest
               AND b.op IN ('PUT', 'REMOVE')`,
            [group, String(checkpoint)],
          );
        },
      },
      units: { ops: 'count', candidateOpsPerSecond: 'perSecond' },
      extras: async (stats) => ({
        ops: distinct * versions,
        candidateOpsPerSecond: perSecond(distinct * versions, stats.candidate.medianMs),
      }),
      async teardown() {
        await client.end();
        await s.close();
      },
    };
  },
};

const notification: Scenario = {
  suite: 'powersync',
  name: 'live checkpoint latency (commit -> watcher), 50 checkpoints',
  runs: 5,
  warmups: 1,
  async prepare({ url, quick }): Promise<Prepared> {
    const rounds = quick ? 5 : 50;
    const s = await openStream(url, GLOBAL_YAML);
    const abort = new AbortController();
    let updates: AsyncIterator<{ base: { checkpoint: bigint } }>;
    try {
      const iterable = s.storage.watchCheckpointChanges({ user_id: 'bench-user', signal: abort.signal });
      updates = (iterable as AsyncIterable<{ base: { checkpoint: bigint } }>)[Symbol.asyncIterator]();
      await s.commit();
      await updates.next();
    } catch (error) {
      abort.abort();
      await s.close();
      if (notImplemented(error)) throw new NotRun(`watchCheckpointChanges(): ${(error as Error).message}`);
      throw error;
    }
    const listener = new pg.Client({ connectionString: url });
    const notifier = new pg.Client({ connectionString: url });
    await listener.connect();
    await notifier.connect();
    await listener.query('LISTEN bench_checkpoints');
    await notifier.query('CREATE TABLE bench_checkpoint (id int PRIMARY KEY, checkpoint int8)');
    await notifier.query('INSERT INTO bench_checkpoint VALUES (1, 0)');
    let waiting: (() => void) | undefined;
    listener.on('notification', () => waiting?.());
    const candidateLatencies: number[] = [];
    const baselineLatencies: number[] = [];
    let i = 0;
    return {
      candidate: {
        label: 'writer.save + commit, until watchCheckpointChanges yields it',
        async run() {
          for (let r = 0; r < rounds; r++) {
            const start = performance.now();
            await s.writer.save({
              sourceTable: s.table,
              tag: SaveOperationTag.INSERT,
              after: todo(`n${i}`, 'list-0'),
              afterReplicaId: uuidForRow({ id: `n${i++}` }),
            });
            await s.commit();
            const { checkpoint } = await s.storage.getCheckpoint();
            for (;;) {
              const next = await updates.next();
              if (next.done) throw new Error('watchCheckpointChanges ended');
              if (next.value.base.checkpoint >= checkpoint) break;
            }
            candidateLatencies.push(performance.now() - start);
          }
        },
      },
      baseline: {
        label: 'bare UPDATE + pg_notify in one statement, until LISTEN receives it',
        async run() {
          for (let r = 0; r < rounds; r++) {
            const start = performance.now();
            const got = new Promise<void>((resolve) => {
              waiting = resolve;
            });
            await notifier.query(
              `WITH u AS (UPDATE bench_checkpoint SET checkpoint = checkpoint + 1 WHERE id = 1 RETURNING checkpoint)
               SELECT pg_notify('bench_checkpoints', checkpoint::text) FROM u`,
            );
            await got;
            baselineLatencies.push(performance.now() - start);
          }
        },
      },
      units: { candidateP50Ms: 'ms', candidateP99Ms: 'ms', baselineP50Ms: 'ms', baselineP99Ms: 'ms' },
      extras: async () => {
        const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.ceil(p * xs.length) - 1] ?? 0;
        const r = (x: number) => Math.round(x * 100) / 100;
        return {
          candidateP50Ms: r(q(candidateLatencies, 0.5)),
          candidateP99Ms: r(q(candidateLatencies, 0.99)),
          baselineP50Ms: r(q(baselineLatencies, 0.5)),
          baselineP99Ms: r(q(baselineLatencies, 0.99)),
        };
      },
      async teardown() {
        abort.abort();
        await updates.return?.();
        await listener.end();
        await notifier.end();
        await s.close();
      },
    };
  },
};

/**
 * Rows to clear: `--powersync-clear-rows=N` (or PGSTATE_BENCH_POWERSYNC_CLEAR_ROWS); 1M by default, because filling
 * 10M rows twice takes minutes on a shared 2-core machine. Run the 10M case as
 * `pnpm bench powersync --powersync-clear-rows=10000000`.
 */
function clearRows(quick: boolean): number {
  const flag = process.argv.find((a) => a.startsWith('--powersync-clear-rows='))?.split('=')[1];
  const value = Number(flag ?? process.env.PGSTATE_BENCH_POWERSYNC_CLEAR_ROWS ?? (quick ? 20_000 : 1_000_000));
  if (!Number.isInteger(value) || value <= 0) throw new Error(`bad --powersync-clear-rows: ${flag}`);
  return value;
}

/**
 * The child that clears: plain JavaScript on the built dist (no loader in the measured process), reporting its idle
 * RSS, its peak RSS and the clear's own duration.
 */
const CLEAR_CHILD = `
import { clearReplicationStream, normalizeStorageConfig, StorageDb } from '@pgstate/powersync';
const { BENCH_URL, BENCH_SCHEMA, BENCH_GROUP } = process.env;
const db = new StorageDb(normalizeStorageConfig({ type: 'pgstate', uri: BENCH_URL, sslmode: 'disable', schema: BENCH_SCHEMA }));
await db.query('SELECT 1');
globalThis.gc?.();
const idleRss = process.memoryUsage().rss;
const start = performance.now();
const result = await clearReplicationStream(db, Number(BENCH_GROUP));
const ms = performance.now() - start;
await db.end();
process.stdout.write(JSON.stringify({ ms, idleRss, maxRss: process.resourceUsage().maxRSS * 1024, result }) + '\\n');
`;

const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function runClearChild(url: string, group: number): Promise<{ ms: number; idleRss: number; maxRss: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', CLEAR_CHILD], {
      cwd: benchDir,
      env: { ...process.env, BENCH_URL: url, BENCH_SCHEMA: SCHEMA, BENCH_GROUP: String(group) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`clear child exited ${code}: ${err.slice(-2000)}`));
      else resolve(JSON.parse(out.trim().split('\n').at(-1)!));
    });
  });
}

const clearAtScale: Scenario = {
  suite: 'powersync',
  name: 'clear at scale, bounded memory (rows per --powersync-clear-rows)',
  runs: 1,
  warmups: 0,
  async prepare({ url, quick }): Promise<Prepared> {
    const rows = clearRows(quick);
    const s = await openStream(url, GLOBAL_YAML);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const baselineGroup = s.groupId + 1000;
    // One stream's worth of data: `rows` ops over 1,000 buckets, a tenth as many current rows, a hundredth as many
    // parameter rows; written server-side in 1M-row statements (untimed).
    const fill = async (group: number) => {
      for (let from = 1; from <= rows; from += 1_000_000) {
        const to = Math.min(rows, from + 999_999);
        await client.query(
          `INSERT INTO ${SCHEMA}.bucket_data
             (group_id, bucket_name, op_id, op, source_table, source_key, table_name, row_id, checksum, data)
           SELECT $1, 'b' || (g % 1000), g, 'PUT', $4, int8send(g), 'todos', 't' || g, g % 4294967296,
                  '{"id":"t' || g || '","description":"todo number ' || g || '"}'
           FROM generate_series($2::int8, $3::int8) g`,
          [group, from, to, TABLE_ID],
        );
        await client.query(
          `INSERT INTO ${SCHEMA}.current_data (group_id, source_table, source_key, buckets, data, lookups)
           SELECT $1, $4, int8send(g), jsonb_build_array(jsonb_build_object('bucket', 'b' || (g % 1000), 'table', 'todos',
                  'id', 't' || g)), '\\x0500000000'::bytea, '{}'
           FROM generate_series($2::int8, $3::int8) g WHERE g % 10 = 0`,
          [group, from, to, TABLE_ID],
        );
        await client.query(
          `INSERT INTO ${SCHEMA}.bucket_parameters (id, group_id, source_table, source_key, lookup, bucket_parameters)
           SELECT g, $1, $4, int8send(g), int8send(g % 1000), '[{"list_id":"x"}]'
           FROM generate_series($2::int8, $3::int8) g WHERE g % 100 = 0`,
          [
            group,
            from + (group === baselineGroup ? 2 ** 40 : 0),
            to + (group === baselineGroup ? 2 ** 40 : 0),
            TABLE_ID,
          ],
        );
      }
      await client.query(`ANALYZE ${SCHEMA}.bucket_data`);
    };
    const total = rows + Math.floor(rows / 10) + Math.floor(rows / 100);
    let candidate: { ms: number; idleRss: number; maxRss: number } | undefined;
    return {
      candidate: {
        label: 'clearReplicationStream() in a child (keyset batches of 10,000, cancellable)',
        before: () => fill(s.groupId),
        async run() {
          candidate = await runClearChild(url, s.groupId);
          return candidate.ms;
        },
      },
      baseline: {
        label: 'bare DELETE ... WHERE group_id = $1 per table (one statement each, not cancellable)',
        before: () => fill(baselineGroup),
        async run() {
          for (const table of ['bucket_data', 'bucket_parameters', 'current_data']) {
            await client.query(`DELETE FROM ${SCHEMA}.${table} WHERE group_id = $1`, [baselineGroup]);
          }
        },
      },
      units: {
        rows: 'count',
        candidateRowsPerSecond: 'perSecond',
        baselineRowsPerSecond: 'perSecond',
        candidatePeakRssBytes: 'bytes',
        candidatePeakOverIdleBytes: 'bytes',
      },
      extras: async (stats) => ({
        rows: total,
        candidateRowsPerSecond: perSecond(total, stats.candidate.medianMs),
        baselineRowsPerSecond: perSecond(total, stats.baseline.medianMs),
        candidatePeakRssBytes: candidate?.maxRss ?? 0,
        candidatePeakOverIdleBytes: candidate ? candidate.maxRss - candidate.idleRss : 0,
      }),
      async teardown() {
        await client.end();
        await s.close();
      },
    };
  },
};

export const powersyncScenarios: Scenario[] = [
  writes,
  drain,
  checksums('cold'),
  checksums('warm'),
  compaction,
  notification,
  clearAtScale,
];
