// Row values from another copy of @powersync/service-sync-rules (found with the real service: its replicator builds
// timestamps with its own copy; with a second copy in the package, the column vanished from every synced row).
import { createTestDatabase } from '@pgstate/core/testing';
import { DateTimeValue, type SqliteRow, TimeValuePrecision } from '@powersync/service-sync-rules';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { pgstateTestSetup, SaveOperationTag } from '../src/index.js';
import { all, bucket, deploy, rid, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_foreign_values');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

const YAML = 'bucket_definitions:\n  global:\n    data:\n      - SELECT id, created_at FROM notes\n';

/** What another copy's DateTimeValue looks like to this copy: same shape, different class. */
class OtherCopyDateTimeValue {
  constructor(readonly iso8601Representation: string) {}
  get sqliteType() {
    return 'text' as const;
  }
  toSqliteValue() {
    return this.iso8601Representation;
  }
}

test("a timestamp made by this package's sync-rules reaches the bucket; one from another copy is refused, not dropped", async () => {
  const factory = await pgstateTestSetup({ url, schema: 'ps_foreign' }).factory();
  try {
    const { stream } = await deploy(factory, YAML);
    const storage = factory.getInstance(stream);
    const rules = storage.getParsedSyncRules({ defaultSchema: 'public' });
    const writer = await storage.createWriter(WRITER);
    const sourceTable = await table(writer, 'notes');
    await writer.markAllSnapshotDone('1/1');

    // What the replicator does: applyRowContext on the decoded row, then save.
    const own = rules.applyRowContext({
      id: 'n1',
      created_at: new DateTimeValue('2025-09-10T13:17:14Z', undefined, {
        subSecondPrecision: TimeValuePrecision.seconds,
        defaultSubSecondPrecision: TimeValuePrecision.seconds,
      }),
    }) as SqliteRow;
    await writer.save({ sourceTable, tag: SaveOperationTag.INSERT, after: own, afterReplicaId: rid('n1') });

    const foreign = rules.applyRowContext({
      id: 'n2',
      created_at: new OtherCopyDateTimeValue('2025-09-11T10:00:00Z') as never,
    }) as SqliteRow;
    await expect(
      writer.save({ sourceTable, tag: SaveOperationTag.INSERT, after: foreign, afterReplicaId: rid('n2') }),
    ).rejects.toMatchObject({
      code: 'BAD_SETTING',
      message: expect.stringContaining('Column created_at of "public"."notes" holds a value made by another copy'),
    });
    await writer.commit('1/2');
    await writer.dispose();

    const chunks = await all(storage.getBucketDataBatch(await storage.getCheckpoint(), [bucket(stream, 'global[]')]));
    expect(chunks.flatMap((c) => c.chunkData.data).map((d) => [d.object_id, JSON.parse(d.data!)])).toEqual([
      ['n1', { id: 'n1', created_at: '2025-09-10 13:17:14Z' }],
    ]);
  } finally {
    await factory[Symbol.asyncDispose]();
  }
});
