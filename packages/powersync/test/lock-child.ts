// A separate OS process that tries to take one replication stream's lock (used by lifecycle.test.ts).
// argv: url schema streamId leaseMs mode ('once' | 'wait')
import { normalizeStorageConfig, PgStateBucketStorageFactory } from '../src/index.js';

const [url, schema, streamId, leaseMs, mode] = process.argv.slice(2);
const factory = new PgStateBucketStorageFactory({
  config: normalizeStorageConfig({
    type: 'pgstate',
    uri: url,
    sslmode: 'disable',
    schema,
    lock_lease_ms: Number(leaseMs),
  }),
});
const stream = (await factory.getReplicatingReplicationStreams()).find(
  (s) => s.replicationStreamId === Number(streamId),
);
if (!stream) throw new Error(`no stream ${streamId}`);
for (;;) {
  try {
    await stream.lock();
    process.stdout.write('LOCKED\n');
    break;
  } catch (error) {
    if (mode !== 'wait') {
      process.stdout.write(`STANDBY ${(error as { code?: string }).code}\n`);
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
// Hold (and keep refreshing) until killed.
setInterval(() => {}, 1 << 30);
