/**
 * @pgstate/pulumi (issue 5): checkpoint writes against a bare upsert of the same bytes (and the whole save with its
 * `.bak` against the bare SQL of the same two writes), `stack ls` from the stack index
 * against reading every checkpoint as the CLI does, and bytes on disk of the seed layout against the native one.
 */
import { PulumiStateStore } from '@pgstate/pulumi';
import pg from 'pg';
import { checkpointBytes, MB, RAW_TABLE, rawClient, rawPut } from '../fixtures.js';
import type { Scenario } from '../harness.js';

const CHECKPOINT_KEY = '.pulumi/stacks/bench/dev.json';

/**
 * Issue 5's goal: a checkpoint save within 1.3x of a bare `INSERT ... ON CONFLICT` of the same bytes. The candidate
 * is pgstate's write of the checkpoint key: the blob row plus what pgstate keeps beside it (size/MD5 side row, stack
 * index row with the summary of the checkpoint), i.e. exactly what the Pulumi CLI's checkpoint PutObject costs
 * through the gateway. The `.bak` copy is not part of it: the CLI makes that copy itself, as a separate CopyObject
 * before the put, and the baseline does not write a second copy either. Timing the whole CLI-style save (copy to
 * `.bak` + write) against one INSERT would charge pgstate for the backup the baseline skips; that save is the next
 * scenario, measured against the bare SQL doing the same two writes.
 */
function checkpointWrite(megabytes: number, quickBytes: number): Scenario {
  return {
    suite: 'pulumi',
    name: `checkpoint save ${megabytes} MB`,
    goal: { text: 'within 1.3x of a bare INSERT ... ON CONFLICT of the same bytes', maxRatio: 1.3 },
    runs: megabytes >= 50 ? 5 : 7,
    warmups: megabytes >= 50 ? 1 : 2,
    async prepare({ url, quick }) {
      const bytes = checkpointBytes('bench', 'dev', quick ? quickBytes : megabytes * MB);
      const store = new PulumiStateStore(url);
      await store.ensureMeta();
      const raw = await rawClient(url);
      return {
        candidate: {
          label: 'PulumiBlobStore.put of the checkpoint key (blob + size/MD5 + stack index, one statement)',
          run: async () => {
            await store.blobs.put(CHECKPOINT_KEY, bytes);
          },
        },
        baseline: {
          label: 'bare INSERT ... ON CONFLICT (pg.Client)',
          run: () => rawPut(raw, CHECKPOINT_KEY, bytes),
        },
        units: { objectBytes: 'bytes' },
        extras: async () => ({ objectBytes: bytes.byteLength }),
        async teardown() {
          await store.close();
          await raw.end();
        },
      };
    },
  };
}

/**
 * The whole CLI-style save of `PulumiStateStore.saveCheckpoint` (current checkpoint copied to `.bak`, new one
 * written, side rows and index, one transaction) against the bare SQL floor of the same two writes in one
 * transaction (`INSERT ... SELECT` copy, `INSERT ... ON CONFLICT`). No goal: issue 5's goal is the row above.
 */
function fullSave(megabytes: number, quickBytes: number): Scenario {
  return {
    suite: 'pulumi',
    name: `full save with .bak ${megabytes} MB`,
    runs: megabytes >= 50 ? 5 : 7,
    warmups: megabytes >= 50 ? 1 : 2,
    async prepare({ url, quick }) {
      const bytes = checkpointBytes('bench', 'dev', quick ? quickBytes : megabytes * MB);
      const store = new PulumiStateStore(url);
      await store.ensureMeta();
      const raw = await rawClient(url);
      return {
        candidate: {
          label: 'PulumiStateStore.saveCheckpoint (.bak copy + write + index, one transaction)',
          run: async () => {
            await store.saveCheckpoint('bench', 'dev', bytes);
          },
        },
        baseline: {
          label: 'bare BEGIN; INSERT ... SELECT (.bak); INSERT ... ON CONFLICT; COMMIT (pg.Client)',
          run: async () => {
            await raw.query('BEGIN');
            await raw.query(
              `INSERT INTO ${RAW_TABLE} (key, data, updated_at) SELECT $2, data, now() FROM ${RAW_TABLE} WHERE key = $1
               ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at`,
              [CHECKPOINT_KEY, `${CHECKPOINT_KEY}.bak`],
            );
            await rawPut(raw, CHECKPOINT_KEY, bytes);
            await raw.query('COMMIT');
          },
        },
        units: { objectBytes: 'bytes' },
        extras: async () => ({ objectBytes: bytes.byteLength }),
        async teardown() {
          await store.close();
          await raw.end();
        },
      };
    },
  };
}

/** What the DIY CLI does for `pulumi stack ls`: list the stack files, then read and parse every checkpoint. */
async function listLikeTheCli(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ key: string }>(
    "SELECT key FROM pulumi_state WHERE key LIKE '.pulumi/stacks/%' ORDER BY key",
  );
  let resources = 0;
  for (const { key } of rows) {
    if (!key.endsWith('.json')) continue;
    const { rows: data } = await client.query<{ data: Buffer }>('SELECT data FROM pulumi_state WHERE key = $1', [key]);
    const doc = JSON.parse(data[0]!.data.toString('utf8')) as {
      checkpoint: { latest?: { manifest?: { time?: string }; resources?: unknown[] } };
    };
    resources += doc.checkpoint.latest?.resources?.length ?? 0;
  }
  return resources;
}

const stackListing: Scenario = {
  suite: 'pulumi',
  name: 'stack listing, 1,000 stacks',
  goal: { text: '>= 20x faster than reading every checkpoint as the CLI does', maxRatio: 0.05 },
  async prepare({ url, quick }) {
    const stacks = quick ? 20 : 1000;
    const eachBytes = quick ? 4096 : 32 * 1024;
    const store = new PulumiStateStore(url);
    await store.ensureMeta();
    for (let i = 0; i < stacks; i++) {
      const project = `proj-${i % 10}`;
      const stack = `stack-${i}`;
      await store.saveCheckpoint(project, stack, checkpointBytes(project, stack, eachBytes, i));
    }
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    let listed = 0;
    return {
      candidate: {
        label: 'PulumiStateStore.listStacks (stack index)',
        run: async () => {
          listed = (await store.listStacks()).length;
          if (listed !== stacks) throw new Error(`listStacks returned ${listed} stacks, expected ${stacks}`);
        },
      },
      baseline: {
        label: 'list keys + read and parse every checkpoint (CLI)',
        run: async () => {
          await listLikeTheCli(client);
        },
      },
      units: { stacks: 'count', checkpointBytes: 'bytes' },
      extras: async () => ({ stacks: listed, checkpointBytes: eachBytes }),
      async teardown() {
        await store.close();
        await client.end();
      },
    };
  },
};

async function relationBytes(client: pg.Client, tables: string[]): Promise<number> {
  let total = 0;
  for (const table of tables) {
    await client.query(`VACUUM FULL ${table}`);
    const { rows } = await client.query<{ n: string }>('SELECT pg_total_relation_size($1::regclass) AS n', [table]);
    total += Number(rows[0]!.n);
  }
  return total;
}

const storageBytes: Scenario = {
  suite: 'pulumi',
  name: 'storage bytes, seed layout vs native layout',
  goal: {
    text: 'seed layout (with its side tables) <= 0.8x the bytes of the native table',
    maxRatio: 0.8,
    on: {
      candidate: 'seedBytes',
      baseline: 'nativeBytes',
      unit: 'bytes',
      candidateLabel: 'seed layout: blob table + side tables',
      baselineLabel: 'native blob table',
    },
  },
  runs: 5,
  async prepare({ url, quick }) {
    const stacks = quick ? 10 : 200;
    const data = Array.from({ length: stacks }, (_, i) => ({
      project: `proj-${i % 5}`,
      stack: `stack-${i}`,
      bytes: checkpointBytes(`proj-${i % 5}`, `stack-${i}`, quick ? 8192 : 64 * 1024, i),
    }));
    const seed = new PulumiStateStore({ connection: url, table: 'seed_state' });
    const native = new PulumiStateStore({ connection: url, table: 'native_state', layout: 'native' });
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const writeAll = (store: PulumiStateStore) => async () => {
      for (const d of data) await store.saveCheckpoint(d.project, d.stack, d.bytes);
    };
    return {
      candidate: { label: `seed layout (bytea): save ${stacks} checkpoints`, run: writeAll(seed) },
      baseline: { label: `native layout (json base64): save ${stacks} checkpoints`, run: writeAll(native) },
      units: {
        seedBytes: 'bytes',
        seedBlobTableBytes: 'bytes',
        nativeBytes: 'bytes',
        nativeSideTablesBytes: 'bytes',
        checkpointBytes: 'bytes',
      },
      extras: async () => {
        // Compacted sizes (VACUUM FULL), so dead rows of the repeated runs do not count on either side.
        const seedBlobTableBytes = await relationBytes(client, ['seed_state']);
        const seedSide = await relationBytes(client, ['seed_state_objects', 'seed_state_stacks']);
        const nativeBytes = await relationBytes(client, ['native_state']);
        const nativeSide = await relationBytes(client, ['native_state_objects', 'native_state_stacks']);
        const logical = data.reduce((n, d) => n + d.bytes.byteLength, 0);
        return {
          seedBytes: seedBlobTableBytes + seedSide,
          seedBlobTableBytes,
          nativeBytes,
          nativeSideTablesBytes: nativeSide,
          checkpointBytes: logical * 2, // each checkpoint and its .bak
        };
      },
      async teardown() {
        await seed.close();
        await native.close();
        await client.end();
      },
    };
  },
};

export const pulumiScenarios: Scenario[] = [
  checkpointWrite(1, 64 * 1024),
  checkpointWrite(10, 128 * 1024),
  checkpointWrite(50, 256 * 1024),
  fullSave(1, 64 * 1024),
  fullSave(10, 128 * 1024),
  fullSave(50, 256 * 1024),
  stackListing,
  storageBytes,
];
