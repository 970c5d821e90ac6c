// Behaviours of PowerSync's parameter storage suite (clean-room), on storage v1 and v2.
import { createTestDatabase } from '@pgstate/core/testing';
import { BaseJwtPayload, RequestParameters, type SqliteJsonRow } from '@powersync/service-sync-rules';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  type BucketStorageBatch,
  type PersistedReplicationStream,
  pgstateTestSetup,
  type ReplicationCheckpoint,
  SaveOperationTag,
  type SyncRulesBucketStorage,
  type TestStorageConfig,
} from '../src/index.js';
import { bucket, deploy, rid, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_params');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

const USER_YAML = `
bucket_definitions:
  mybucket:
    parameters:
      - SELECT group_id FROM test WHERE id1 = token_parameters.user_id OR id2 = token_parameters.user_id
    data: []
`;

describe.each([1, 2, 3])('storage version %i', (storageVersion) => {
  let setup: TestStorageConfig;
  beforeAll(() => {
    setup = pgstateTestSetup({ url, schema: `ps_params_v${storageVersion}`, storageVersion });
  });

  async function scenario(
    yaml: string,
    fn: (s: {
      stream: PersistedReplicationStream;
      storage: SyncRulesBucketStorage;
      writer: BucketStorageBatch;
      /** Runs the sync rules' querier for a token against a checkpoint; returns lookups seen and buckets. */
      query: (
        checkpoint: ReplicationCheckpoint,
        token: Record<string, unknown>,
        limit?: number,
      ) => Promise<{ rows: SqliteJsonRow[]; buckets: string[] }>;
    }) => Promise<void>,
  ) {
    const factory = await setup.factory();
    try {
      const { stream } = await deploy(factory, yaml, storageVersion);
      const storage = factory.getInstance(stream);
      const writer = await storage.createWriter(WRITER);
      await writer.markAllSnapshotDone('1/1');
      const hydrated = stream.parsed({ defaultSchema: 'public' }).hydratedSyncConfig;
      const query = async (checkpoint: ReplicationCheckpoint, token: Record<string, unknown>, limit = 1000) => {
        const parameters = new RequestParameters(new BaseJwtPayload(token), {});
        const { querier } = hydrated.getBucketParameterQuerier({
          globalParameters: parameters,
          hasDefaultStreams: true,
          streams: {},
        });
        const rows: SqliteJsonRow[] = [];
        const buckets = await querier.queryDynamicBucketDescriptions({
          async getParameterSets(lookups) {
            const sets = await checkpoint.getParameterSets(lookups, limit);
            for (const set of sets) {
              expect(lookups).toContain(set.lookup);
              rows.push(...set.rows);
            }
            return sets;
          },
        });
        return { rows, buckets: buckets.map((b) => b.bucket).sort() };
      };
      await fn({ stream, storage, writer, query });
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  }

  test('save and load parameters', () =>
    scenario(USER_YAML, async ({ stream, storage, writer, query }) => {
      const t = await table(writer, 'test');
      const row = (id: string, id1: string, id2: string, group_id: string) =>
        ({
          sourceTable: t,
          tag: SaveOperationTag.INSERT,
          after: { id, id1, id2, group_id },
          afterReplicaId: rid(id),
        }) as const;
      await writer.save(row('t2', 'user3', 'user4', 'group2a'));
      await writer.save(row('t1', 'user1', 'user2', 'group1a'));
      await writer.commit('1/1');
      const result = await query(await storage.getCheckpoint(), { sub: 'user1' });
      expect(result.rows).toEqual([{ group_id: 'group1a' }]);
      expect(result.buckets).toEqual([bucket(stream, 'mybucket["group1a"]').bucket]);
    }));

  test('it should use the latest version (per checkpoint)', () =>
    scenario(
      `
bucket_definitions:
  mybucket:
    parameters:
      - SELECT group_id FROM test WHERE id = token_parameters.user_id
    data: []
`,
      async ({ storage, writer, query }) => {
        const t = await table(writer, 'test');
        const save = (group_id: string) =>
          writer.save({
            sourceTable: t,
            tag: SaveOperationTag.INSERT,
            after: { id: 'user1', group_id },
            afterReplicaId: rid('user1'),
          });
        await save('group1');
        await writer.commit('1/1');
        const cp1 = await storage.getCheckpoint();
        await save('group2');
        await writer.commit('1/2');
        const cp2 = await storage.getCheckpoint();
        expect((await query(cp1, { sub: 'user1' })).rows).toEqual([{ group_id: 'group1' }]);
        expect((await query(cp2, { sub: 'user1' })).rows).toEqual([{ group_id: 'group2' }]);
      },
    ));

  test('it should use the latest version after updates (removal of one lookup does not hide another)', () =>
    scenario(
      `
bucket_definitions:
  mybucket:
    parameters:
      - SELECT id AS todo_id FROM todos WHERE list_id IN token_parameters.list_id
    data: []
`,
      async ({ storage, writer, query }) => {
        const t = await table(writer, 'todos', 1, ['id', 'list_id']);
        const save = (tag: SaveOperationTag, id: string, list_id: string) =>
          writer.save({ sourceTable: t, tag, after: { id, list_id }, afterReplicaId: rid(id) } as never);
        await save(SaveOperationTag.INSERT, 'todo1', 'list1');
        await save(SaveOperationTag.INSERT, 'todo2', 'list2');
        await writer.commit('1/1');
        await save(SaveOperationTag.UPDATE, 'todo2', 'list1');
        await writer.commit('1/1');
        const { rows } = await query(await storage.getCheckpoint(), {
          sub: 'u1',
          parameters: { list_id: ['list1', 'list2'] },
        });
        expect(rows.map((r) => r.todo_id).sort()).toEqual(['todo1', 'todo2']);
      },
    ));

  test('save and load parameters with different number types', () =>
    scenario(
      `
bucket_definitions:
  mybucket:
    parameters:
      - SELECT group_id FROM test WHERE n1 = token_parameters.n1 and f2 = token_parameters.f2 and f3 = token_parameters.f3
    data: []
`,
      async ({ storage, writer, query }) => {
        const t = await table(writer, 'test');
        await writer.save({
          sourceTable: t,
          tag: SaveOperationTag.INSERT,
          after: { id: 't1', group_id: 'group1', n1: 314n, f2: 314, f3: 3.14 },
          afterReplicaId: rid('t1'),
        });
        await writer.commit('1/1');
        const cp = await storage.getCheckpoint();
        const q = async (parameters: Record<string, unknown>) => (await query(cp, { sub: 'u1', parameters })).rows;
        expect(await q({ n1: 314n, f2: 314, f3: 3.14 })).toEqual([{ group_id: 'group1' }]);
        expect(await q({ n1: 314, f2: 314n, f3: 3.14 })).toEqual([{ group_id: 'group1' }]);
        expect(await q({ n1: 314n, f2: 314, f3: 3 })).toEqual([]);
      },
    ));

  test('truncate parameters', () =>
    scenario(USER_YAML, async ({ storage, writer, query }) => {
      const t = await table(writer, 'test');
      await writer.save({
        sourceTable: t,
        tag: SaveOperationTag.INSERT,
        after: { id: 't2', id1: 'user3', id2: 'user4', group_id: 'group2a' },
        afterReplicaId: rid('t2'),
      });
      await writer.truncate([t]);
      await writer.flush();
      await writer.commit('1/1');
      const result = await query(await storage.getCheckpoint(), { sub: 'user3' });
      expect(result).toEqual({ rows: [], buckets: [] });
    }));

  test('deleting a row removes its parameters at later checkpoints only', () =>
    scenario(USER_YAML, async ({ storage, writer, query }) => {
      const t = await table(writer, 'test');
      await writer.save({
        sourceTable: t,
        tag: SaveOperationTag.INSERT,
        after: { id: 't1', id1: 'user1', id2: 'user2', group_id: 'g1' },
        afterReplicaId: rid('t1'),
      });
      await writer.commit('1/1');
      const before = await storage.getCheckpoint();
      await writer.save({ sourceTable: t, tag: SaveOperationTag.DELETE, beforeReplicaId: rid('t1') });
      await writer.commit('2/1');
      expect((await query(before, { sub: 'user1' })).rows).toEqual([{ group_id: 'g1' }]);
      expect((await query(await storage.getCheckpoint(), { sub: 'user1' })).rows).toEqual([]);
    }));

  test('respects parameter limit', () =>
    scenario(
      `
bucket_definitions:
  mybucket:
    parameters:
      - SELECT group_id FROM test WHERE owner = token_parameters.user_id
    data: []
`,
      async ({ storage, writer, query }) => {
        const t = await table(writer, 'test');
        for (let i = 0; i < 10; i++) {
          await writer.save({
            sourceTable: t,
            tag: SaveOperationTag.INSERT,
            after: { id: `t${i}`, owner: 'u', group_id: `g${i}` },
            afterReplicaId: rid(`t${i}`),
          });
        }
        await writer.commit('1/1');
        const cp = await storage.getCheckpoint();
        await expect(query(cp, { sub: 'u' }, 5)).rejects.toThrow('Too many parameter results (limit was 5)');
        expect((await query(cp, { sub: 'u' }, 10)).rows).toHaveLength(10);
      },
    ));

  test('can request multiple lookups at once', () =>
    scenario(USER_YAML, async ({ storage, writer }) => {
      const t = await table(writer, 'test');
      await writer.save({
        sourceTable: t,
        tag: SaveOperationTag.INSERT,
        after: { id: 't1', id1: 'user1', id2: 'user2', group_id: 'g1' },
        afterReplicaId: rid('t1'),
      });
      await writer.commit('1/1');
      const cp = await storage.getCheckpoint();
      const hydrated = storage.getParsedSyncRules({ defaultSchema: 'public' });
      const { querier } = hydrated.getBucketParameterQuerier({
        globalParameters: new RequestParameters(new BaseJwtPayload({ sub: 'user1' }), {}),
        hasDefaultStreams: true,
        streams: {},
      });
      // Gather the lookups for user1, then ask for them together with an unrelated one.
      let seen: Parameters<ReplicationCheckpoint['getParameterSets']>[0] = [];
      await querier.queryDynamicBucketDescriptions({
        async getParameterSets(lookups) {
          seen = lookups;
          return [];
        },
      });
      const sets = await cp.getParameterSets([...seen, ...seen], 100);
      expect(sets.map((s) => s.rows)).toEqual([[{ group_id: 'g1' }]]);
      expect(seen).toContain(sets[0]!.lookup);
    }));
});
