// Live checkpoints across processes (LISTEN/NOTIFY with reconnects, polling) and write checkpoints.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseConnectionSettings } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  type CheckpointNotifier,
  checkpointNotifier,
  configureCheckpointNotifications,
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  type PgStateSyncRulesStorage,
  pgstateTestSetup,
  SaveOperationTag,
  type StorageCheckpointUpdate,
  WriteCheckpointMode,
} from '../src/index.js';
import { deploy, GLOBAL_YAML, rid, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_checkpoints');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

const lsn = (n: number) => `00000000/${n.toString(16).toUpperCase().padStart(8, '0')}`;

/** A fresh factory with one ACTIVE stream (snapshot done, first checkpoint at lsn(1)). */
async function activeStream(schema: string) {
  const setup = pgstateTestSetup({ url, schema });
  const factory = (await setup.factory()) as PgStateBucketStorageFactory;
  const { stream } = await deploy(factory, GLOBAL_YAML);
  const storage = factory.getInstance(stream) as PgStateSyncRulesStorage;
  const writer = await storage.createWriter(WRITER);
  const t = await table(writer, 'test', 1);
  await writer.markAllSnapshotDone(lsn(1));
  await writer.commit(lsn(1));
  return { factory, storage, writer, t, stream };
}

/** Collects a watcher's updates in the background. */
function collect(storage: PgStateSyncRulesStorage, user = 'u1') {
  const abort = new AbortController();
  const updates: StorageCheckpointUpdate[] = [];
  const waker: { wake: (() => void) | null } = { wake: null };
  const done = (async () => {
    for await (const update of storage.watchCheckpointChanges({ user_id: user, signal: abort.signal })) {
      updates.push(update);
      waker.wake?.();
    }
  })();
  return {
    updates,
    /** Waits for an update matching `fn` (a condition; gives up after 30 s). */
    async until(fn: (u: StorageCheckpointUpdate) => boolean, what: string) {
      const deadline = Date.now() + 30_000;
      while (!updates.some(fn)) {
        if (Date.now() > deadline) throw new Error(`no update where ${what}; got ${summary(updates)}`);
        await new Promise<void>((resolve) => {
          waker.wake = resolve;
          setTimeout(resolve, 200).unref();
        });
      }
    },
    async stop() {
      abort.abort();
      await done;
    },
  };
}

const summary = (u: StorageCheckpointUpdate[]) =>
  JSON.stringify(u.map((x) => [String(x.base.checkpoint), x.base.lsn, x.writeCheckpoint?.toString() ?? null]));

function writerChild(schema: string, streamId: number) {
  const script = fileURLToPath(new URL('./checkpoint-writer-child.ts', import.meta.url));
  const child: ChildProcess = spawn(
    process.execPath,
    ['--conditions=pgstate-source', '--import', 'tsx', script, url, schema, String(streamId)],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let out = '';
  const waiters: { pattern: string; resolve: () => void }[] = [];
  child.stdout!.on('data', (d) => {
    out += d;
    for (const w of [...waiters]) {
      if (out.includes(w.pattern)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  const waitFor = (pattern: string) =>
    out.includes(pattern)
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          waiters.push({ pattern, resolve });
          child.once('exit', (code) => reject(new Error(`writer child exited ${code} before ${pattern}`)));
        });
  return {
    ready: waitFor('READY'),
    async commit(at: string) {
      child.stdin!.write(`${at}\n`);
      await waitFor(`COMMITTED ${at}`);
    },
    async end() {
      child.stdin!.end();
      await new Promise((resolve) => child.once('exit', resolve));
    },
    kill: () => child.kill('SIGKILL'),
  };
}

function assertMonotonic(updates: StorageCheckpointUpdate[]) {
  for (let i = 1; i < updates.length; i++) {
    const a = updates[i - 1]!.base;
    const b = updates[i]!.base;
    expect(b.checkpoint > a.checkpoint || (b.checkpoint === a.checkpoint && (b.lsn ?? '') >= (a.lsn ?? ''))).toBe(true);
  }
}

/** Polls until `check` holds (10 s at most), then fails naming what did not happen. */
async function eventually(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('checkpoint notifications across processes', () => {
  test('a watcher follows another process’s commits, also after its LISTEN connection was killed, never regressing', async () => {
    const schema = 'ps_notify';
    const { factory, storage } = await activeStream(schema);
    // A dedicated LISTEN role lets the test refuse reconnects for a while (NOLOGIN) without touching other sessions.
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`DROP ROLE IF EXISTS ps_listener`);
    await admin.query(`CREATE ROLE ps_listener LOGIN PASSWORD 'listen'`);
    const listenUrl = new URL(url);
    listenUrl.username = 'ps_listener';
    listenUrl.password = 'listen';
    // No polling and no periodic re-read within the test's time: only LISTEN and reconnect-then-requery deliver.
    configureCheckpointNotifications(factory.db, {
      listenConnection: parseConnectionSettings(listenUrl.toString()),
      pollIntervalMs: 600_000,
      resyncIntervalMs: 600_000,
      healthCheckMs: 600_000,
    });
    const child = writerChild(schema, storage.replicationStreamId);
    const watcher = collect(storage);
    let notifier: CheckpointNotifier | undefined;
    try {
      await child.ready;
      await watcher.until((u) => u.base.lsn === lsn(1), 'the initial checkpoint');
      notifier = checkpointNotifier(factory.db);
      expect(notifier.stats).toMatchObject({ mode: 'listen', listening: true, connects: 1 });

      await child.commit(lsn(2));
      await watcher.until((u) => u.base.lsn === lsn(2), 'lsn 2 (notified)');
      expect(notifier.stats.notifications).toBeGreaterThanOrEqual(1);

      // Kill the LISTEN connection and keep it from coming back while the other process commits.
      await admin.query(`ALTER ROLE ps_listener NOLOGIN`);
      const killed = await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'ps_listener'`,
      );
      expect(killed.rowCount).toBe(1);
      await child.commit(lsn(3));
      await child.commit(lsn(4));
      const seenBefore = watcher.updates.length;
      await admin.query(`ALTER ROLE ps_listener LOGIN`);
      // Reconnect, then re-read: the commits made while nobody listened arrive (the last one at least).
      await watcher.until((u) => u.base.lsn === lsn(4), 'lsn 4 (committed while disconnected)');
      expect(notifier.stats.connects).toBeGreaterThanOrEqual(2);
      expect(watcher.updates.slice(seenBefore).every((u) => u.base.lsn !== lsn(2))).toBe(true);

      // And it listens again.
      await child.commit(lsn(5));
      await watcher.until((u) => u.base.lsn === lsn(5), 'lsn 5 (after reconnect)');
      assertMonotonic(watcher.updates);
      const checkpoints = watcher.updates.map((u) => u.base.checkpoint);
      expect(new Set(checkpoints).size).toBe(checkpoints.length); // each change once
    } finally {
      await watcher.stop();
      await child.end();
      await admin.query(`ALTER ROLE ps_listener LOGIN`).catch(() => {});
      await notifier?.close();
      await factory[Symbol.asyncDispose]();
      await admin.query(`DROP ROLE IF EXISTS ps_listener`).catch(() => {});
      await admin.end();
    }
  });

  test('a watcher whose storage connections are lost while it reads waits for the server and goes on by itself', async () => {
    const schema = 'ps_watch_lost';
    const { factory, writer, t, stream } = await activeStream(schema);
    // The watcher's storage connects as its own role, so the test can cut its connections and refuse new ones
    // (CONNECTION LIMIT 0: "too many connections", a retryable refusal like a restarting server's) for a while.
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`DROP OWNED BY ps_watcher`).catch(() => {});
    await admin.query(`DROP ROLE IF EXISTS ps_watcher`);
    await admin.query(`CREATE ROLE ps_watcher LOGIN PASSWORD 'w-secret'`);
    await admin.query(`GRANT USAGE ON SCHEMA ${schema} TO ps_watcher`);
    await admin.query(`GRANT SELECT ON ALL TABLES IN SCHEMA ${schema} TO ps_watcher`);
    const watcherUrl = new URL(url);
    watcherUrl.username = 'ps_watcher';
    watcherUrl.password = 'w-secret';
    const reader = new PgStateBucketStorageFactory({
      config: normalizeStorageConfig({ type: 'pgstate', uri: watcherUrl.toString(), sslmode: 'disable', schema }),
    });
    const warnings: string[] = [];
    reader.db.logger = { ...reader.db.logger, warn: (message: string) => void warnings.push(message) };
    // LISTEN stays up (another role); no polling or periodic re-read: the notification is what wakes the watcher.
    configureCheckpointNotifications(reader.db, {
      listenConnection: parseConnectionSettings(url),
      pollIntervalMs: 600_000,
      resyncIntervalMs: 600_000,
      healthCheckMs: 600_000,
    });
    const watcher = collect(reader.getInstance(stream) as PgStateSyncRulesStorage);
    try {
      await watcher.until((u) => u.base.lsn === lsn(1), 'the initial checkpoint');
      await admin.query(`ALTER ROLE ps_watcher CONNECTION LIMIT 0`);
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'ps_watcher'`);
      await eventually(() => reader.db.pool.totalCount === 0, 'the pool dropped its terminated connections');

      // A commit while the watcher cannot reach the server: notified, it must read (its write checkpoint) and fail.
      await writer.save({ sourceTable: t, tag: SaveOperationTag.INSERT, after: { id: 'x' }, afterReplicaId: rid('x') });
      await writer.commit(lsn(2));
      await eventually(() => warnings.some((w) => /lost its connection; retrying/.test(w)), 'the watcher retries');
      await admin.query(`ALTER ROLE ps_watcher CONNECTION LIMIT -1`);
      await watcher.until((u) => u.base.lsn === lsn(2), 'lsn 2 (once connections are allowed again)');
      assertMonotonic(watcher.updates);
    } finally {
      await admin.query(`ALTER ROLE ps_watcher CONNECTION LIMIT -1`).catch(() => {});
      await watcher.stop().catch(() => {});
      await checkpointNotifier(reader.db).close();
      await reader[Symbol.asyncDispose]();
      await factory[Symbol.asyncDispose]();
      await admin.query(`DROP OWNED BY ps_watcher`).catch(() => {});
      await admin.query(`DROP ROLE IF EXISTS ps_watcher`).catch(() => {});
      await admin.end();
    }
  });

  test('poll mode (for PgBouncer transaction pooling) needs no LISTEN connection', async () => {
    const schema = 'ps_poll';
    const { factory, storage } = await activeStream(schema);
    configureCheckpointNotifications(factory.db, { mode: 'poll', pollIntervalMs: 100 });
    const child = writerChild(schema, storage.replicationStreamId);
    const watcher = collect(storage);
    try {
      await child.ready;
      await child.commit(lsn(2));
      await child.commit(lsn(3));
      await watcher.until((u) => u.base.lsn === lsn(3), 'lsn 3 (polled)');
      const stats = checkpointNotifier(factory.db).stats;
      expect(stats).toMatchObject({ mode: 'poll', listening: false, connects: 0 });
      assertMonotonic(watcher.updates);
    } finally {
      await watcher.stop();
      await child.end();
      await factory[Symbol.asyncDispose]();
    }
  });

  test('the service config picks the mode: checkpoint_notifications {mode: poll} or a direct LISTEN uri', async () => {
    const { factory, writer, stream } = await activeStream('ps_notify_config');
    const polled = new PgStateBucketStorageFactory({
      config: normalizeStorageConfig({
        type: 'pgstate',
        uri: url,
        sslmode: 'disable',
        schema: 'ps_notify_config',
        checkpoint_notifications: { mode: 'poll', poll_interval_ms: 100 },
      }),
    });
    const direct = new PgStateBucketStorageFactory({
      config: normalizeStorageConfig({
        type: 'pgstate',
        uri: url,
        sslmode: 'disable',
        schema: 'ps_notify_config',
        checkpoint_notifications: { uri: url },
      }),
    });
    const a = collect(polled.getInstance(stream) as PgStateSyncRulesStorage);
    const b = collect(direct.getInstance(stream) as PgStateSyncRulesStorage);
    try {
      await writer.keepalive(lsn(2));
      await a.until((u) => u.base.lsn === lsn(2), 'polled lsn 2');
      await b.until((u) => u.base.lsn === lsn(2), 'listened lsn 2');
      expect(checkpointNotifier(polled.db).stats).toMatchObject({ mode: 'poll', connects: 0 });
      // The watcher may have seen lsn 2 from its first query before its LISTEN connection was up: wait for it.
      await eventually(() => checkpointNotifier(direct.db).stats.connects >= 1, 'the LISTEN connection connects');
      expect(checkpointNotifier(direct.db).stats).toMatchObject({ mode: 'listen', connects: 1 });
      expect(() =>
        normalizeStorageConfig({
          type: 'pgstate',
          uri: url,
          checkpoint_notifications: { mode: 'push' as 'poll' },
        }),
      ).toThrow(expect.objectContaining({ code: 'BAD_SETTING' }));
    } finally {
      await a.stop();
      await b.stop();
      await polled[Symbol.asyncDispose]();
      await direct[Symbol.asyncDispose]();
      await factory[Symbol.asyncDispose]();
    }
  });

  test('watchers of one process share one LISTEN connection, closed with the last watcher', async () => {
    const { factory, storage, writer, t } = await activeStream('ps_shared');
    const a = collect(storage, 'a');
    const b = collect(storage, 'b');
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await a.until(() => true, 'a first update');
      await b.until(() => true, 'b first update');
      await writer.save({ sourceTable: t, tag: SaveOperationTag.INSERT, after: { id: 'x' }, afterReplicaId: rid('x') });
      await writer.commit(lsn(2));
      await a.until((u) => u.base.lsn === lsn(2), 'a sees lsn 2');
      await b.until((u) => u.base.lsn === lsn(2), 'b sees lsn 2');
      const listening = async () =>
        Number(
          (
            await admin.query(
              `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()
                 AND application_name LIKE '%-listen'`,
            )
          ).rows[0].n,
        );
      // A LISTEN backend of the previous test may still be exiting (pg_stat_activity lags a closed client); with
      // one connection per watcher this would stay at 2.
      await eventually(async () => (await listening()) === 1, 'exactly one LISTEN connection for two watchers');
      await a.stop();
      await b.stop();
      const deadline = Date.now() + 10_000;
      while ((await listening()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await listening()).toBe(0);
    } finally {
      await admin.end();
      await factory[Symbol.asyncDispose]();
    }
  });
});

describe('write checkpoints', () => {
  test('managed: monotonic per user, reported once replication reaches the recorded head', async () => {
    const { factory, storage, writer, t } = await activeStream('ps_wc_managed');
    try {
      expect(storage.writeCheckpointMode).toBe(WriteCheckpointMode.MANAGED);
      const first = await storage.createManagedWriteCheckpoints([{ user_id: 'u1', heads: { '1': lsn(5) } }]);
      expect(first.get('u1')).toBe(1n);
      // Concurrent requests for one user each get a distinct, larger value.
      const many = await Promise.all(
        Array.from({ length: 10 }, () =>
          storage.createManagedWriteCheckpoints([{ user_id: 'u1', heads: { '1': lsn(5) } }]),
        ),
      );
      expect(many.map((m) => m.get('u1')!).sort((a, b) => Number(a - b))).toEqual(
        Array.from({ length: 10 }, (_, i) => BigInt(i + 2)),
      );
      const both = await storage.createManagedWriteCheckpoints([
        { user_id: 'u2', heads: { '1': lsn(3) } },
        { user_id: 'u1', heads: { '1': lsn(6) } },
      ]);
      expect([...both].sort()).toEqual([
        ['u1', 12n],
        ['u2', 1n],
      ]);

      expect(await storage.lastWriteCheckpoint({ user_id: 'u1', heads: { '1': lsn(5) } })).toBeNull();
      expect(await storage.lastWriteCheckpoint({ user_id: 'u1', heads: { '1': lsn(6) } })).toBe(12n);
      expect(await storage.lastWriteCheckpoint({ user_id: 'u2', heads: { '1': lsn(6) } })).toBe(1n);
      expect(await storage.lastWriteCheckpoint({ user_id: 'nobody', heads: { '1': lsn(6) } })).toBeNull();
      expect(await storage.lastWriteCheckpoint({ user_id: 'u1', heads: {} })).toBeNull();

      // Through the watcher: u1's write checkpoint appears with the first checkpoint at or past lsn 6.
      const watcher = collect(storage, 'u1');
      await watcher.until((u) => u.base.lsn === lsn(1), 'initial');
      expect(watcher.updates[0]!.writeCheckpoint).toBeNull();
      await writer.save({ sourceTable: t, tag: SaveOperationTag.INSERT, after: { id: 'a' }, afterReplicaId: rid('a') });
      await writer.commit(lsn(5));
      await watcher.until((u) => u.base.lsn === lsn(5), 'lsn 5');
      expect(watcher.updates.at(-1)!.writeCheckpoint).toBeNull();
      await writer.keepalive(lsn(6)); // no new data, only the LSN moves
      await watcher.until((u) => u.writeCheckpoint === 12n, 'write checkpoint 12');
      await watcher.stop();

      // A JWT with `sub: ''` is a valid user for the service: its write checkpoints work like anyone's.
      expect(await storage.lastWriteCheckpoint({ user_id: '', heads: { '1': lsn(6) } })).toBeNull();
      const empty = await storage.createManagedWriteCheckpoints([{ user_id: '', heads: { '1': lsn(6) } }]);
      expect(empty.get('')).toBe(1n);
      expect(await storage.lastWriteCheckpoint({ user_id: '', heads: { '1': lsn(6) } })).toBe(1n);
      const emptyWatcher = collect(storage, '');
      await emptyWatcher.until((u) => u.writeCheckpoint === 1n, "write checkpoint of user ''");
      await emptyWatcher.stop();

      // Not a string at all is still refused, precisely.
      await expect(
        storage.createManagedWriteCheckpoints([{ user_id: undefined as unknown as string, heads: {} }]),
      ).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/string user_id/) });
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });

  test('custom: the replicator sets checkpoints per stream; managed creation is refused', async () => {
    const { factory, storage, writer, t } = await activeStream('ps_wc_custom');
    try {
      storage.setWriteCheckpointMode(WriteCheckpointMode.CUSTOM);
      await expect(
        storage.createManagedWriteCheckpoints([{ user_id: 'u1', heads: { '1': lsn(1) } }]),
      ).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      expect(await storage.lastWriteCheckpoint({ user_id: 'u1' })).toBeNull();
      writer.addCustomWriteCheckpoint({ user_id: 'u1', checkpoint: 42n });
      await writer.save({ sourceTable: t, tag: SaveOperationTag.INSERT, after: { id: 'a' }, afterReplicaId: rid('a') });
      await writer.commit(lsn(2));
      expect(await storage.lastWriteCheckpoint({ user_id: 'u1' })).toBe(42n);
      writer.addCustomWriteCheckpoint({ user_id: 'u1', checkpoint: 43n });
      await writer.commit(lsn(3));
      expect(await storage.lastWriteCheckpoint({ user_id: 'u1' })).toBe(43n);
      writer.addCustomWriteCheckpoint({ user_id: '', checkpoint: 7n });
      await writer.commit(lsn(4));
      expect(await storage.lastWriteCheckpoint({ user_id: '' })).toBe(7n);
      // Another stream does not see this stream's custom checkpoints.
      const { stream: other } = await deploy(factory, `${GLOBAL_YAML}\n# v2\n`);
      const otherStorage = factory.getInstance(other);
      otherStorage.setWriteCheckpointMode(WriteCheckpointMode.CUSTOM);
      expect(await otherStorage.lastWriteCheckpoint({ user_id: 'u1' })).toBeNull();
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });
});
