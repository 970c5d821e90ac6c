// The real PowerSync client (@powersync/node, its Rust sync core verifying checksums) syncing from @pgstate/powersync
// through a minimal test-only sync endpoint. Rows are written through the adapter's writer as a replicator would.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type BucketStorageBatch,
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  type PgStateSyncRulesStorage,
  SaveOperationTag,
  type SourceTable,
  syncRulesFromYaml,
  uuidForRow,
} from '@pgstate/powersync';
import {
  type AbstractPowerSyncDatabase,
  column,
  PowerSyncDatabase,
  type PowerSyncLogger,
  Schema,
  Table,
  UpdateType,
} from '@powersync/node';
import { expect } from 'vitest';
import { defineConformance } from '../../src/kit.js';
import { type SyncEndpoint, startSyncEndpoint } from './sync-endpoint.js';

const YAML = `
bucket_definitions:
  user_lists:
    parameters: SELECT id AS list_id FROM lists WHERE owner_id = request.user_id()
    data:
      - SELECT id, name, owner_id FROM lists WHERE id = bucket.list_id
      - SELECT id, description, list_id FROM todos WHERE list_id = bucket.list_id
`;
const WRITER = { defaultSchema: 'public', zeroLSN: '00000000/00000000', storeCurrentData: true };
const CLIENT_SCHEMA = new Schema({
  lists: new Table({ name: column.text, owner_id: column.text }),
  todos: new Table({ description: column.text, list_id: column.text }),
});

type Row = Record<string, string>;

/** Why the lane cannot run: the client needs better-sqlite3's native binding (built from source at install). */
function needClient(): string | undefined {
  try {
    const Database = createRequire(import.meta.url)('better-sqlite3');
    new Database(':memory:').close();
    return undefined;
  } catch (error) {
    return `@powersync/node needs better-sqlite3's native binding, which failed to load: ${(error as Error).message}`;
  }
}

/**
 * The "source database": an in-memory model of the tables plus a replicator that writes every change through the
 * adapter's writer and commits at a growing LSN (fixed-width, so LSNs compare as strings).
 */
class Source {
  readonly lists = new Map<string, Row>();
  readonly todos = new Map<string, Row>();
  private lsnCounter = 1;
  head = lsn(1);

  constructor(
    readonly storage: PgStateSyncRulesStorage,
    readonly writer: BucketStorageBatch,
    readonly tables: { lists: SourceTable; todos: SourceTable },
  ) {}

  static async start(factory: PgStateBucketStorageFactory) {
    const stream = await factory.updateSyncRules(syncRulesFromYaml(YAML));
    const storage = factory.getInstance(stream) as PgStateSyncRulesStorage;
    const writer = await storage.createWriter(WRITER);
    const resolve = async (name: string, id: string) =>
      (
        await writer.resolveTables({
          connection_id: 1,
          source: {
            connectionTag: 'default',
            objectId: name,
            schema: 'public',
            name,
            replicaIdColumns: [{ name: 'id' }],
          },
          idGenerator: () => id,
        })
      ).tables[0]!;
    const tables = {
      lists: await resolve('lists', '6544e3899293153fa7b38331'),
      todos: await resolve('todos', '6544e3899293153fa7b38332'),
    };
    await writer.markAllSnapshotDone(lsn(1));
    return new Source(storage, writer, tables);
  }

  nextLsn(): string {
    this.head = lsn(++this.lsnCounter);
    return this.head;
  }

  /** Writes through the adapter (insert/update/delete by presence), without committing. */
  async save(table: 'lists' | 'todos', id: string, row: Row | null): Promise<void> {
    const map = this[table];
    const existed = map.has(id);
    const sourceTable = this.tables[table];
    if (row == null) {
      if (!existed) return;
      map.delete(id);
      await this.writer.save({
        sourceTable,
        tag: SaveOperationTag.DELETE,
        before: { id },
        beforeReplicaId: uuidForRow({ id }),
      });
      return;
    }
    const full = { ...row, id };
    map.set(id, full);
    await this.writer.save({
      sourceTable,
      tag: existed ? SaveOperationTag.UPDATE : SaveOperationTag.INSERT,
      after: full,
      afterReplicaId: uuidForRow({ id }),
    });
  }

  async commit(): Promise<string> {
    const at = this.nextLsn();
    const result = await this.writer.commit(at);
    expect(result.checkpointCreated || !result.checkpointBlocked).toBe(true);
    return at;
  }

  /** What the sync rules select for this user. */
  expected(user: string) {
    const mine = new Set([...this.lists.values()].filter((l) => l.owner_id === user).map((l) => l.id!));
    const lists = [...this.lists.values()].filter((l) => mine.has(l.id!));
    const todos = [...this.todos.values()].filter((t) => mine.has(t.list_id!));
    return { lists: sortRows(lists), todos: sortRows(todos) };
  }
}

function lsn(n: number): string {
  return `00000000/${n.toString(16).toUpperCase().padStart(8, '0')}`;
}

function sortRows(rows: Row[]): Row[] {
  return rows.map((r) => ({ ...r })).sort((a, b) => (a.id! < b.id! ? -1 : a.id! > b.id! ? 1 : 0));
}

interface Client {
  db: AbstractPowerSyncDatabase;
  logs: string[];
  rows(): Promise<{ lists: Row[]; todos: Row[] }>;
  close(): Promise<void>;
}

async function connectClient(
  endpoint: SyncEndpoint,
  user: string,
  dir: string,
  uploadData?: (db: AbstractPowerSyncDatabase) => Promise<void>,
): Promise<Client> {
  const logs: string[] = [];
  const logger: PowerSyncLogger = {
    log(record) {
      if (record.level >= 30) logs.push(`${record.level}: ${record.message}`);
    },
  };
  const db = new PowerSyncDatabase({
    schema: CLIENT_SCHEMA,
    database: { dbFilename: `${user}-${Date.now()}.db`, dbLocation: dir },
    logger,
  });
  await db.init();
  await db.connect({
    fetchCredentials: async () => ({ endpoint: endpoint.url, token: await endpoint.token(user) }),
    uploadData: uploadData ?? (async () => {}),
  });
  const rows = async () => ({
    lists: sortRows(await db.getAll<Row>('SELECT id, name, owner_id FROM lists')),
    todos: sortRows(await db.getAll<Row>('SELECT id, description, list_id FROM todos')),
  });
  return {
    db,
    logs,
    rows,
    async close() {
      await db.disconnectAndClear().catch(() => {});
      await db.close();
    },
  };
}

/** Waits until the client's tables equal `expected` (a condition, not a timing assertion; gives up after 60 s). */
async function converge(client: Client, expected: () => { lists: Row[]; todos: Row[] }, what: string) {
  const deadline = Date.now() + 60_000;
  let last: unknown;
  for (;;) {
    last = await client.rows();
    const status = client.db.currentStatus;
    if (canonical(last) === canonical(expected()) && !status.dataFlowStatus.downloading) return;
    if (Date.now() > deadline) {
      expect(last, `${what}: client did not converge; client log:\n${client.logs.join('\n')}`).toEqual(expected());
      return;
    }
    await sleep(50);
  }
}

/** Key-order independent JSON of rows (SQLite returns columns in table order, the model in insertion order). */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v != null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

const mismatches = (client: Client) => client.logs.filter((l) => /checksum/i.test(l));

defineConformance({
  adapter: '@pgstate/powersync',
  lanes: [{ name: 'powersync-node client', via: 'direct', requires: needClient }],
  create: (lane) => lane,
  probes: () => ({}),
  tests({ test }) {
    let schemaCounter = 0;
    /** A factory on its own schema, a source, an endpoint and a temp dir; all closed after the test. */
    async function world(
      t: { lane: { url: string }; onCleanup(fn: () => unknown): void },
      endpointOptions: Partial<Parameters<typeof startSyncEndpoint>[0]> = {},
    ) {
      const schema = `ps_client_${process.pid}_${++schemaCounter}`;
      const factory = new PgStateBucketStorageFactory({
        config: normalizeStorageConfig({ type: 'pgstate', uri: t.lane.url, schema }),
      });
      t.onCleanup(() => factory[Symbol.asyncDispose]());
      const source = await Source.start(factory);
      const endpoint = await startSyncEndpoint({
        storage: () => source.storage,
        currentHead: () => source.head,
        ...endpointOptions,
      });
      t.onCleanup(() => endpoint.close());
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-ps-client-'));
      t.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
      return { factory, source, endpoint, dir };
    }

    test(
      'the client holds exactly the rows its sync rules select, and follows updates, deletes and moves between buckets',
      async (t) => {
        const { source, endpoint, dir } = await world(t);
        await source.save('lists', 'L1', { name: 'groceries', owner_id: 'u1' });
        await source.save('lists', 'L2', { name: 'work', owner_id: 'u2' });
        await source.save('lists', 'L3', { name: 'garden', owner_id: 'u1' });
        for (const [id, list] of [
          ['t1', 'L1'],
          ['t2', 'L1'],
          ['t3', 'L1'],
          ['t4', 'L2'],
          ['t5', 'L2'],
          ['t6', 'L3'],
        ] as const) {
          await source.save('todos', id, { description: `todo ${id}`, list_id: list });
        }
        await source.commit();

        const client = await connectClient(endpoint, 'u1', dir);
        t.onCleanup(() => client.close());
        const expected = () => source.expected('u1');
        await converge(client, expected, 'initial sync');
        expect((await client.rows()).todos.map((r) => r.id)).toEqual(['t1', 't2', 't3', 't6']);

        await source.save('todos', 't1', { description: 'todo t1, edited', list_id: 'L1' });
        await source.save('todos', 't2', null);
        await source.commit();
        await converge(client, expected, 'update + delete');

        await source.save('todos', 't3', { description: 'todo t3', list_id: 'L2' }); // leaves u1's buckets
        await source.save('todos', 't4', { description: 'todo t4', list_id: 'L1' }); // enters them
        await source.commit();
        await converge(client, expected, 'rows moved between buckets');

        await source.save('lists', 'L2', { name: 'work', owner_id: 'u1' }); // a parameter change: L2's bucket joins
        await source.commit();
        await converge(client, expected, 'bucket gained through a parameter change');
        expect((await client.rows()).todos.map((r) => r.id)).toEqual(['t1', 't3', 't4', 't5', 't6']);

        await source.save('lists', 'L3', null); // L3's bucket leaves: its todos go with it
        await source.commit();
        await converge(client, expected, 'bucket removed');
        expect((await client.rows()).todos.map((r) => r.id)).toEqual(['t1', 't3', 't4', 't5']);

        expect(endpoint.stats.checkpointsCompleted).toBeGreaterThanOrEqual(5);
        expect(mismatches(client)).toEqual([]);
      },
      { timeout: 180_000 },
    );

    test(
      'a local write uploads, and the managed write checkpoint holds it until replication reaches the recorded head',
      async (t) => {
        const { source, endpoint, dir } = await world(t);
        await source.save('lists', 'L1', { name: 'groceries', owner_id: 'u1' });
        await source.commit();
        // The "backend": applies uploads to the source; replication happens later, when the test says so.
        const pending: { table: 'lists' | 'todos'; id: string; row: Row | null }[] = [];
        const client = await connectClient(endpoint, 'u1', dir, async (db) => {
          const tx = await db.getNextCrudTransaction();
          if (!tx) return;
          for (const op of tx.crud) {
            const table = op.table as 'lists' | 'todos';
            const current = table === 'lists' ? source.lists.get(op.id) : source.todos.get(op.id);
            const row = op.op === UpdateType.DELETE ? null : ({ ...current, ...op.opData } as Row);
            pending.push({ table, id: op.id, row });
          }
          source.nextLsn(); // the source's WAL moved past the upload
          await tx.complete();
        });
        t.onCleanup(() => client.close());
        await converge(client, () => source.expected('u1'), 'initial sync');

        await client.db.execute('INSERT INTO todos (id, description, list_id) VALUES (?, ?, ?)', [
          'local-1',
          'written on the client',
          'L1',
        ]);
        const deadline = Date.now() + 60_000;
        while (endpoint.stats.writeCheckpoints === 0 && Date.now() < deadline) await sleep(50);
        expect(endpoint.stats.writeCheckpoints).toBe(1);
        expect(pending.map((p) => p.id)).toEqual(['local-1']);
        const head = source.head;
        // Before replication catches up, no checkpoint may report the write checkpoint.
        const { lsn: servedLsn } = await source.storage.getCheckpoint();
        expect(servedLsn! < head).toBe(true);
        expect(await source.storage.lastWriteCheckpoint({ user_id: 'u1', heads: { '1': servedLsn! } })).toBeNull();
        expect((await client.db.getAll('SELECT id FROM ps_crud')).length).toBe(0); // uploaded...
        expect((await client.rows()).todos.map((r) => r.id)).toEqual(['local-1']); // ...and still shown locally

        for (const p of pending.splice(0)) await source.save(p.table, p.id, p.row);
        const replicatedAt = await source.commit();
        expect(replicatedAt >= head).toBe(true);
        expect(await source.storage.lastWriteCheckpoint({ user_id: 'u1', heads: { '1': replicatedAt } })).toBe(1n);
        await converge(client, () => source.expected('u1'), 'upload came back through replication');
        expect((await client.rows()).todos).toEqual([
          { id: 'local-1', description: 'written on the client', list_id: 'L1' },
        ]);
        expect(mismatches(client)).toEqual([]);
      },
      { timeout: 180_000 },
    );

    test(
      'compaction in the middle of a sync: the client converges and its own checksum checks never fail',
      async (t) => {
        let compactOnce: (() => Promise<void>) | null = null;
        let compacted = 0;
        const { source, endpoint, dir } = await world(t, {
          batchLimit: 25,
          afterDataLine: async ({ user }) => {
            if (user !== 'u1' || compactOnce == null) return;
            const run = compactOnce;
            compactOnce = null;
            await run();
          },
        });
        await source.save('lists', 'L1', { name: 'groceries', owner_id: 'u1' });
        // 30 rows, each rewritten 10 times over 10 checkpoints: 300+ ops, most of them superseded.
        for (let round = 0; round < 10; round++) {
          for (let i = 0; i < 30; i++) {
            await source.save('todos', `t${String(i).padStart(2, '0')}`, {
              description: `round ${round}`,
              list_id: 'L1',
            });
          }
          await source.commit();
        }
        // After the client has its first batch of the first checkpoint: new writes, a new checkpoint, compaction.
        compactOnce = async () => {
          for (let i = 0; i < 30; i += 2) {
            await source.save('todos', `t${String(i).padStart(2, '0')}`, { description: 'final', list_id: 'L1' });
          }
          await source.save('todos', 't29', null);
          await source.commit();
          const result = await source.storage.compactWithResult();
          compacted = result.moved;
        };
        const client = await connectClient(endpoint, 'u1', dir);
        t.onCleanup(() => client.close());
        await converge(client, () => source.expected('u1'), 'sync across a compaction');
        expect(compacted).toBeGreaterThan(250);
        // The first checkpoint could not complete (ops moved past it); the next one did, and checksums held.
        expect(endpoint.stats.checkpointsInvalidated).toBeGreaterThanOrEqual(1);
        expect(endpoint.stats.checkpointsCompleted).toBeGreaterThanOrEqual(1);
        expect(mismatches(client)).toEqual([]);

        // A second client starting after compaction gets the compacted log and the same rows.
        const dir2 = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-ps-client-'));
        t.onCleanup(() => fs.rmSync(dir2, { recursive: true, force: true }));
        const late = await connectClient(endpoint, 'u1', dir2);
        t.onCleanup(() => late.close());
        await converge(late, () => source.expected('u1'), 'fresh client after compaction');
        expect(mismatches(late)).toEqual([]);
      },
      { timeout: 180_000 },
    );
  },
});
