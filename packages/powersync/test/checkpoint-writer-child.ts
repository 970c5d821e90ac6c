// A separate OS process that replicates into an existing stream (used by checkpoints.test.ts).
// argv: url schema streamId. stdin: one line per commit ("<lsn>"); stdout: "COMMITTED <lsn>" after each.
import { createInterface } from 'node:readline';
import { normalizeStorageConfig, PgStateBucketStorageFactory, SaveOperationTag, uuidForRow } from '../src/index.js';
import { table } from './helpers.js';

const [url, schema, streamId] = process.argv.slice(2);
const factory = new PgStateBucketStorageFactory({
  config: normalizeStorageConfig({ type: 'pgstate', uri: url, sslmode: 'disable', schema }),
});
const stream = (await factory.getReplicatingReplicationStreams()).find(
  (s) => s.replicationStreamId === Number(streamId),
);
if (!stream) throw new Error(`no stream ${streamId}`);
const storage = factory.getInstance(stream);
const writer = await storage.createWriter({ defaultSchema: 'public', zeroLSN: '0/0', storeCurrentData: true });
const t = await table(writer, 'test', 1);
process.stdout.write('READY\n');
let n = 0;
for await (const line of createInterface({ input: process.stdin })) {
  const lsn = line.trim();
  if (!lsn) continue;
  const id = `row${n++}`;
  await writer.save({
    sourceTable: t,
    tag: SaveOperationTag.INSERT,
    after: { id, description: id },
    afterReplicaId: uuidForRow({ id }),
  });
  await writer.commit(lsn);
  process.stdout.write(`COMMITTED ${lsn}\n`);
}
await writer.dispose();
await factory[Symbol.asyncDispose]();
