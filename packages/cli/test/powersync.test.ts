// `pgstate powersync status|migrate|compact|clear` run as the BUILT binary against storage written by the adapter.
import { createTestDatabase } from '@pgstate/core/testing';
import {
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  SaveOperationTag,
  SourceTable,
  syncRulesFromYaml,
  uuidForRow,
} from '@pgstate/powersync';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli } from './helpers.js';

const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used', NO_COLOR: '1' });
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let url: string;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_powersync');
  url = db.url;
});
afterAll(async () => db?.drop());

const cli = (args: string[]) => runCli(['--url', url, 'powersync', '--schema', 'ps_cli', ...args], env);

interface Status {
  streams: { id: number; state: string; ops: number; buckets: number; lastCheckpoint: string | null }[];
}

describe('pgstate powersync', () => {
  it('migrates, reports status, compacts and clears', async () => {
    const migrated = await cli(['migrate', '--json']);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.json()).toEqual({ schema: 'ps_cli', migrated: true });

    // A replicator writes 10 versions of 5 rows into one bucket.
    const factory = new PgStateBucketStorageFactory({
      config: normalizeStorageConfig({ type: 'pgstate', uri: url, sslmode: 'disable', schema: 'ps_cli' }),
    });
    let streamId: number;
    try {
      const stream = await factory.updateSyncRules(
        syncRulesFromYaml('bucket_definitions:\n  global:\n    data: [select * from test]\n'),
      );
      streamId = stream.replicationStreamId;
      const writer = await factory.getInstance(stream).createWriter({
        defaultSchema: 'public',
        zeroLSN: '0/0',
        storeCurrentData: true,
      });
      const { tables } = await writer.resolveTables({
        connection_id: 1,
        source: {
          connectionTag: SourceTable.DEFAULT_TAG,
          objectId: 'test',
          schema: 'public',
          name: 'test',
          replicaIdColumns: [{ name: 'id' }],
        },
        idGenerator: () => '6544e3899293153fa7b38331',
      });
      await writer.markAllSnapshotDone('0/1');
      for (let v = 0; v < 10; v++) {
        for (let i = 0; i < 5; i++) {
          await writer.save({
            sourceTable: tables[0]!,
            tag: v === 0 ? SaveOperationTag.INSERT : SaveOperationTag.UPDATE,
            after: { id: `r${i}`, v: String(v) },
            afterReplicaId: uuidForRow({ id: `r${i}` }),
          });
        }
      }
      await writer.commit('0/2');
      await writer.dispose();
    } finally {
      await factory[Symbol.asyncDispose]();
    }

    const status = await cli(['status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    const before = status.json<Status>();
    expect(before.streams).toMatchObject([
      { id: streamId, state: 'ACTIVE', ops: 50, buckets: 1, lastCheckpoint: '50' },
    ]);
    expect(status.json()).toMatchObject({
      states: { ACTIVE: 1 },
      streams: [{ replicatedRows: 5, parameterRows: 0, snapshotDone: true, lastCheckpointLsn: '0/2' }],
      connectionReports: { rows: 0, connected: 0 },
    });
    const first = status.json<{ streams: { opsBytes: number; replicatedBytes: number }[] }>().streams[0]!;
    expect(first.opsBytes).toBeGreaterThan(50 * 40);
    expect(first.replicatedBytes).toBeGreaterThan(5 * 20);
    const human = await cli(['status']);
    expect(human.stdout).toContain(`#${streamId} ACTIVE`);
    expect(human.stdout).toContain('50 ops');
    expect(human.stdout).toContain('(1 ACTIVE)');
    expect(human.stdout).toContain('5 replicated rows');

    const compacted = await cli(['compact', '--json']);
    expect(compacted.code, compacted.stderr).toBe(0);
    // 45 superseded versions become MOVEs, then collapse into one CLEAR in front of the 5 live rows.
    expect(compacted.json()).toMatchObject({
      stream: streamId,
      buckets: 1,
      moved: 45,
      cleared: 44,
      interrupted: false,
    });
    expect((await cli(['status', '--json'])).json<Status>().streams[0]).toMatchObject({ ops: 6 });

    const refused = await cli(['clear', '--stream', String(streamId)]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--yes');
    const missing = await cli(['clear', '--stream', '999', '--yes']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('does not exist');

    const cleared = await cli([
      'clear',
      '--stream',
      String(streamId),
      '--batch-size',
      '7',
      '--terminate',
      '--yes',
      '--json',
    ]);
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(cleared.json()).toMatchObject({
      stream: streamId,
      terminated: true,
      deleted: { bucketData: 6, currentData: 5, sourceTables: 1 },
    });
    const after = (await cli(['status', '--json'])).json<Status>();
    expect(after.streams).toMatchObject([{ id: streamId, state: 'TERMINATED', ops: 0, lastCheckpoint: null }]);
  });
});
