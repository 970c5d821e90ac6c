/**
 * @pgstate/pulumi (issue 5): checkpoint saves against a bare upsert of the same bytes, `stack ls` from the stack index
 * against reading every checkpoint as the CLI does, and bytes on disk of the seed layout against the native one.
 */
import { PulumiStateStore } from '@pgstate/pulumi';
import pg from 'pg';
import { checkpointBytes, MB, rawClient, rawPut } from '../fixtures.js';
import type { Scenario } from '../harness.js';

function checkpointSave(megabytes: number, quickBytes: number): Scenario {
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
          label: 'PulumiStateStore.saveCheckpoint (.bak + index, one transaction)',
          run: async () => {
            await store.saveCheckpoint('bench', 'dev', bytes);
          },
        },
        baseline: {
          label: 'bare INSERT ... ON CONFLICT (pg.Client)',
          run: () => rawPut(raw, '.pulumi/stacks/bench/dev.json', bytes),
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
  checkpointSave(1, 64 * 1024),
  checkpointSave(10, 128 * 1024),
  checkpointSave(50, 256 * 1024),
  stackListing,
  storageBytes,
];
