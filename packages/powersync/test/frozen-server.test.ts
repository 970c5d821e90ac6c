// A server that stops answering (a frozen host, a network partition), made here by SIGSTOP of the storage's own
// backends: no server-side timeout can fire, and a pooled connection needs no connect. With storage.query_timeout_ms
// a flush gives up by itself with a clean, retryable error, writes nothing, and succeeds once the server answers.
import fs from 'node:fs';
import { isConnectionLoss, isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import {
  addChecksums,
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  SaveOperationTag,
  type SaveOptions,
  type SourceTable,
} from '../src/index.js';
import { all, bucket, checkpointAt, deploy, GLOBAL_YAML, rid, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
let admin: pg.Pool;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_frozen');
  url = db.url;
  drop = db.drop;
  admin = new pg.Pool({ connectionString: url, max: 1 });
});
afterAll(async () => {
  await admin?.end();
  await drop?.();
});

const SCHEMA = 'ps_frozen';
const lsn = (n: number) => `00000000/${n.toString(16).padStart(8, '0')}`;
const insert = (t: SourceTable, id: string): SaveOptions => ({
  sourceTable: t,
  tag: SaveOperationTag.INSERT,
  after: { id, description: `row ${id}` },
  afterReplicaId: rid(id),
});

/** The storage pool's backends (its application_name), frozen until `thaw()`. */
async function freezeStorageBackends(): Promise<{ pids: number[]; thaw(): void }> {
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgstate-powersync'`,
  );
  const pids = rows.map((r) => r.pid);
  // Only processes of the server this test run started (never a process that merely shares a remote pid).
  for (const pid of pids) expect(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toBe('postgres');
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  return {
    pids,
    thaw: () => {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    },
  };
}

// Freezing backends needs the server's processes on this machine: not a server given by PGSTATE_TEST_DATABASE_URL.
test.skipIf(process.env.PGSTATE_TEST_DATABASE_URL || process.platform !== 'linux')(
  'a flush against a server that stops answering fails by query_timeout_ms, writes nothing, and succeeds after',
  async () => {
    const config = normalizeStorageConfig({
      type: 'pgstate',
      uri: url,
      sslmode: 'disable',
      schema: SCHEMA,
      query_timeout_ms: 1000,
    });
    const factory = new PgStateBucketStorageFactory({ config });
    try {
      await factory.db.ensureMigrated();
      const { stream } = await deploy(factory, GLOBAL_YAML);
      const storage = factory.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      const t = await table(writer, 'todos');
      await writer.markAllSnapshotDone(lsn(1));
      await writer.save(insert(t, 'a'));
      await writer.commit(lsn(1));
      const before = await storage.getCheckpoint();

      await writer.save(insert(t, 'b'));
      const frozen = await freezeStorageBackends();
      expect(frozen.pids.length).toBeGreaterThan(0);
      let error: unknown;
      try {
        // A hang detector, not a timing check: without a client-side timeout the flush would wait for as long as
        // the server is frozen, so give up waiting (and thaw) well after the 1 s limit.
        const hung = new Promise((r) => setTimeout(r, 20_000, 'still waiting'));
        error = await Promise.race([
          writer.flush().then(
            () => undefined,
            (e: unknown) => e,
          ),
          hung,
        ]);
      } finally {
        frozen.thaw();
      }
      expect(error, 'the flush must fail by itself while the server does not answer').not.toBe('still waiting');
      // Typed and retryable, one line a user can read (no stack, no password).
      expect(isPgStateError(error, 'UNREACHABLE'), String(error)).toBe(true);
      expect(isConnectionLoss(error)).toBe(true);
      expect(String(error)).toMatch(/did not answer within storage\.query_timeout_ms \(1000 ms\)/);
      expect(String(error)).not.toMatch(/\n\s+at /);
      expect(String(error)).not.toContain(new URL(url).password || '\u0000');

      // Nothing of the failed flush is stored, and the checkpoint did not move.
      const stored = await admin.query<{ ops: number; rows: number }>(
        `SELECT (SELECT count(*)::int FROM ${SCHEMA}.bucket_data WHERE row_id = 'b') AS ops,
              (SELECT count(*)::int FROM ${SCHEMA}.current_data WHERE group_id = $1) AS rows`,
        [stream.replicationStreamId],
      );
      expect(stored.rows[0]).toEqual({ ops: 0, rows: 1 });
      expect((await storage.getCheckpoint()).checkpoint).toBe(before.checkpoint);

      // The queued row was kept: the next flush and commit land it, and the bucket adds up.
      await writer.commit(lsn(2));
      const checkpoint = await storage.getCheckpoint();
      const request = bucket(stream, 'global[]');
      const chunks = await all(storage.getBucketDataBatch(checkpoint, [request]));
      const data = chunks.flatMap((c) => c.chunkData.data);
      expect(data.map((d) => [d.op, d.object_id])).toEqual([
        ['PUT', 'a'],
        ['PUT', 'b'],
      ]);
      const sums = await storage.getChecksums(checkpointAt(checkpoint.checkpoint), [request]);
      const expected = data.reduce((sum, d) => addChecksums(sum, Number(d.checksum)), 0);
      expect([...sums.values()].map((s) => [s.checksum, s.count])).toEqual([[expected, 2]]);
      await writer[Symbol.asyncDispose]();
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  },
);
