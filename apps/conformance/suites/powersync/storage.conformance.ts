// @pgstate/powersync on every lane: the behaviours a PowerSync service relies on, with PowerSync's checksum vectors.
import {
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  type ReplicationCheckpoint,
  SaveOperationTag,
  SourceTable,
  syncRulesFromYaml,
  uuidForRow,
} from '@pgstate/powersync';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance } from '../../src/kit.js';

const SCHEMA = 'powersync';
const YAML = `
bucket_definitions:
  global:
    data:
      - SELECT id, description FROM "%"
`;
const WRITER = { defaultSchema: 'public', zeroLSN: '0/0', storeCurrentData: true };
const PUT_TEST1 = 2871785649;
const REMOVE_TEST1 = 2872534815;

const factoryFor = (uri: string) =>
  new PgStateBucketStorageFactory({ config: normalizeStorageConfig({ type: 'pgstate', uri, schema: SCHEMA }) });
const at = (checkpoint: bigint): ReplicationCheckpoint => ({ checkpoint, lsn: null, getParameterSets: async () => [] });

defineConformance({
  adapter: '@pgstate/powersync',
  lanes: ['direct', 'pgbouncer', 'least-privilege'],
  async setup(_admin, lane) {
    // Migrations run as the administrator; the lanes' users then only need DML.
    const factory = factoryFor(lane.adminUrl);
    await factory.db.ensureMigrated();
    await factory[Symbol.asyncDispose]();
  },
  create: (lane) => factoryFor(lane.url),
  close: (factory) => factory[Symbol.asyncDispose](),
  probes: (admin: pg.Pool) => ({
    async ops(groupId: number) {
      const { rows } = await admin.query<{ op: string; checksum: string }>(
        `SELECT op, checksum::text FROM ${SCHEMA}.bucket_data WHERE group_id = $1 ORDER BY op_id`,
        [groupId],
      );
      return rows.map((r) => ({ op: r.op, checksum: Number(r.checksum) }));
    },
    async state(groupId: number) {
      const { rows } = await admin.query<{ state: string }>(`SELECT state FROM ${SCHEMA}.sync_rules WHERE id = $1`, [
        groupId,
      ]);
      return rows[0]?.state;
    },
  }),
  tests({ test }) {
    test('a replicated insert + delete lands as PUT/REMOVE with PowerSync checksums, readable at the checkpoint', async (t) => {
      const stream = await t.adapter.updateSyncRules(syncRulesFromYaml(YAML));
      const storage = t.adapter.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      const { tables } = await writer.resolveTables({
        connection_id: 1,
        source: {
          connectionTag: SourceTable.DEFAULT_TAG,
          objectId: 1,
          schema: 'public',
          name: 'test',
          replicaIdColumns: [{ name: 'id' }],
        },
        idGenerator: () => '6544e3899293153fa7b38331',
      });
      const table = tables[0]!;
      await writer.markAllSnapshotDone('1/1');
      await writer.save({
        sourceTable: table,
        tag: SaveOperationTag.INSERT,
        after: { id: 'test1', description: 'test1' },
        afterReplicaId: uuidForRow({ id: 'test1' }),
      });
      await writer.save({
        sourceTable: table,
        tag: SaveOperationTag.DELETE,
        beforeReplicaId: uuidForRow({ id: 'test1' }),
      });
      expect(await writer.commit('1/1')).toEqual({ checkpointBlocked: false, checkpointCreated: true });
      expect(await t.probes.ops(stream.replicationStreamId)).toEqual([
        { op: 'PUT', checksum: PUT_TEST1 },
        { op: 'REMOVE', checksum: REMOVE_TEST1 },
      ]);
      expect(await t.probes.state(stream.replicationStreamId)).toBe('ACTIVE');

      const { checkpoint } = await storage.getCheckpoint();
      const parsed = stream.parsed({ defaultSchema: 'public' });
      const source = parsed.syncConfigs[0]!.config.bucketDataSources[0]!;
      const name = `${parsed.hydrationState.getBucketSourceScope(source).bucketPrefix}[]`;
      const chunks = [];
      for await (const c of storage.getBucketDataBatch(at(checkpoint), [{ bucket: name, start: 0n, source }])) {
        chunks.push(c);
      }
      expect(chunks[0]?.chunkData.data.map((d) => [d.op, d.object_id, d.checksum])).toEqual([
        ['PUT', 'test1', PUT_TEST1],
        ['REMOVE', 'test1', REMOVE_TEST1],
      ]);
      const sums = await storage.getChecksums(at(checkpoint), [{ bucket: name, source }]);
      expect(sums.get(name)).toEqual({ bucket: name, checksum: (PUT_TEST1 + REMOVE_TEST1) & 0xffffffff, count: 2 });
    });

    test('a commit before the snapshot LSN is blocked and creates no checkpoint', async (t) => {
      const stream = await t.adapter.updateSyncRules(syncRulesFromYaml(`${YAML}# blocked\n`));
      const storage = t.adapter.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      await writer.markAllSnapshotDone('3/1');
      expect(await writer.commit('2/1')).toEqual({ checkpointBlocked: true, checkpointCreated: false });
      expect((await storage.getCheckpoint()).lsn).toBeNull();
      expect(await t.probes.state(stream.replicationStreamId)).toBe('PROCESSING');
      expect(await writer.commit('3/1')).toEqual({ checkpointBlocked: false, checkpointCreated: true });
      expect(await t.probes.state(stream.replicationStreamId)).toBe('ACTIVE');
    });

    test('only one holder of a replication stream lock; released locks can be taken again', async (t) => {
      const stream = await t.adapter.updateSyncRules(syncRulesFromYaml(`${YAML}# locks\n`));
      const other = await t.create();
      const lock = await stream.lock();
      const rival = (await other.getReplicatingReplicationStreams()).find(
        (s) => s.replicationStreamId === stream.replicationStreamId,
      )!;
      await expect(rival.lock()).rejects.toMatchObject({ code: 'CONFLICT' });
      await lock.release();
      await (await rival.lock()).release();
    });
  },
});
