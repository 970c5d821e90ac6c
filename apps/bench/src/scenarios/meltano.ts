/**
 * @pgstate/meltano (issue 7): get / set / merge latency against a bare single-row select / upsert on one connection,
 * and `list` with a glob over 100,000 state ids against the raw index range scan that answers the same question.
 * The latency runs are short (200 round trips), so they take more runs than the default to steady the medians.
 */
import { listQuery, MeltanoStateStore } from '@pgstate/meltano';
import pg from 'pg';
import type { Prepared, Scenario } from '../harness.js';

const IDS = 20;
const stateId = (i: number) => `dev:tap-github-to-target-postgres-${i % IDS}`;

/** A Singer state like a tap with ten streams writes. */
function singerState(n: number): string {
  const bookmarks: Record<string, unknown> = {};
  for (let s = 0; s < 10; s++) {
    bookmarks[`stream_${s}`] = {
      replication_key: 'updated_at',
      replication_key_value: `2026-01-${String((n % 28) + 1).padStart(2, '0')}T00:00:${String(s).padStart(2, '0')}Z`,
      version: 1700000000000 + n,
    };
  }
  return JSON.stringify({ singer_state: { bookmarks, currently_syncing: null } });
}

const UPSERT = `INSERT INTO meltano_state (state_id, partial_state, completed_state, updated_at) VALUES ($1, NULL, $2, now())
  ON CONFLICT (state_id) DO UPDATE SET partial_state = EXCLUDED.partial_state,
    completed_state = EXCLUDED.completed_state, updated_at = EXCLUDED.updated_at`;

const LATENCY_RUNS = 15;

function latency(op: 'get' | 'set' | 'merge', maxRatio: number): Scenario {
  const baselineText = op === 'get' ? 'single-row SELECT' : 'single-row upsert';
  return {
    suite: 'meltano',
    name: `${op} latency (200 ${op === 'get' ? 'reads' : 'writes'} per run)`,
    goal: { text: `<= ${maxRatio}x a bare ${baselineText} round trip`, maxRatio },
    runs: LATENCY_RUNS,
    warmups: 3,
    async prepare({ url, quick }): Promise<Prepared> {
      const ops = quick ? 20 : 200;
      const store = new MeltanoStateStore({ url });
      await store.migrate();
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const values = Array.from({ length: ops }, (_, i) => singerState(i));
      for (let i = 0; i < IDS; i++) await store.set(stateId(i), values[i]!);
      const candidate = {
        get: async () => {
          for (let i = 0; i < ops; i++) if (!(await store.get(stateId(i)))) throw new Error('state missing');
        },
        set: async () => {
          for (let i = 0; i < ops; i++) await store.set(stateId(i), values[i]!);
        },
        merge: async () => {
          for (let i = 0; i < ops; i++) await store.merge(stateId(i), values[i]!);
        },
      }[op];
      const baseline =
        op === 'get'
          ? async () => {
              for (let i = 0; i < ops; i++) {
                await client.query('SELECT partial_state, completed_state FROM meltano_state WHERE state_id = $1', [
                  stateId(i),
                ]);
              }
            }
          : async () => {
              for (let i = 0; i < ops; i++) await client.query(UPSERT, [stateId(i), values[i]]);
            };
      return {
        candidate: {
          label: `MeltanoStateStore.${op} (seed layout${op === 'get' ? '' : ', guarded by the lock'})`,
          run: candidate,
        },
        baseline: { label: `bare ${baselineText} (pg.Client)`, run: baseline },
        units: { operations: 'count', candidatePerSecond: 'perSecond' },
        extras: async (stats) => ({
          operations: ops,
          candidatePerSecond: Math.round((ops * 1000) / stats.candidate.medianMs),
        }),
        async teardown() {
          await store.close();
          await client.end();
        },
      };
    },
  };
}

/**
 * The merge's other case: the store did not write the row's current version itself (a one-shot `pgstate meltano
 * state merge`, or another process wrote since), so it reads the row before the conditional write. Every run uses
 * a new store and its own 200 state ids (each already has a completed and a partial part). No goal of its own:
 * the merge goal is the row above; this row shows the cost of the read.
 */
const coldMerge: Scenario = {
  suite: 'meltano',
  name: 'merge latency, cold (read + conditional write; 200 writes per run)',
  runs: LATENCY_RUNS,
  warmups: 3,
  async prepare({ url, quick }): Promise<Prepared> {
    const ops = quick ? 20 : 200;
    const setup = new MeltanoStateStore({ url });
    await setup.migrate();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const values = Array.from({ length: ops }, (_, i) => singerState(i));
    let round = 0;
    let store: MeltanoStateStore | undefined;
    const ids = (r: number) => Array.from({ length: ops }, (_, i) => `dev:tap-cold-${r}-to-target-${i}`);
    return {
      candidate: {
        label: 'MeltanoStateStore.merge, row version not known to the store (seed layout)',
        async before() {
          await store?.close();
          round++;
          for (const [i, id] of ids(round).entries()) {
            await setup.set(id, values[i]!);
            await setup.merge(id, values[(i + 1) % ops]!);
          }
          store = new MeltanoStateStore({ url });
          await store.get('dev:warm-the-pool');
        },
        run: async () => {
          for (const [i, id] of ids(round).entries()) await store!.merge(id, values[(i + 2) % ops]!);
        },
      },
      baseline: {
        label: 'bare single-row upsert (pg.Client)',
        run: async () => {
          for (let i = 0; i < ops; i++) await client.query(UPSERT, [stateId(i), values[i]]);
        },
      },
      units: { operations: 'count' },
      extras: async () => ({ operations: ops }),
      async teardown() {
        await store?.close();
        await setup.close();
        await client.end();
      },
    };
  },
};

const list: Scenario = {
  suite: 'meltano',
  name: 'list with a pattern, 100,000 state ids',
  goal: { text: '<= 2x the raw indexed query (index range scan)', maxRatio: 2 },
  async prepare({ url, quick }): Promise<Prepared> {
    const count = quick ? 2000 : 100_000;
    const store = new MeltanoStateStore({ url });
    await store.migrate();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    // ids like dev:tap-0042-to-target-12042; the pattern picks one tap in one environment.
    const ids = `(ARRAY['dev','staging','prod'])[(i / 1000) % 3 + 1] || ':tap-' || lpad((i % 1000)::text, 4, '0') || '-to-target-' || i`;
    await client.query(
      `INSERT INTO meltano_state (state_id, partial_state, completed_state, updated_at)
       SELECT ${ids}, NULL, '{"singer_state": {}}', now() FROM generate_series(1, $1) AS i`,
      [count],
    );
    // The floor: the same ids in a table whose key sorts bytewise, answered by an index range scan.
    await client.query('CREATE TABLE bench_state_ids (state_id text COLLATE "C" PRIMARY KEY)');
    await client.query('INSERT INTO bench_state_ids SELECT state_id FROM meltano_state');
    await client.query('ANALYZE meltano_state');
    await client.query('ANALYZE bench_state_ids');
    const pattern = 'dev:tap-0042-to-*';
    const prefix = 'dev:tap-0042-to-';
    const upper = 'dev:tap-0042-to.'; // '-' + 1
    let found = 0;
    let expected = 0;
    return {
      candidate: {
        label: `MeltanoStateStore.list('${pattern}')`,
        run: async () => {
          found = (await store.list(pattern)).length;
        },
      },
      baseline: {
        label: 'bare SELECT ... WHERE id >= prefix AND id < upper (C-collated primary key)',
        run: async () => {
          const { rows } = await client.query(
            'SELECT state_id FROM bench_state_ids WHERE state_id >= $1 AND state_id < $2 ORDER BY state_id',
            [prefix, upper],
          );
          expected = rows.length;
        },
      },
      units: { stateIds: 'count', matched: 'count', indexRangeScan: 'count' },
      extras: async () => {
        if (found !== expected || found === 0) throw new Error(`list matched ${found}, the raw query ${expected}`);
        // The goal is "index-backed": the plan of exactly what list runs must be a range scan on the byte-order
        // index, never a sequential scan.
        const query = listQuery(store.config.stateTable, pattern);
        const { rows } = await store.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${query.text}`, query.values);
        const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
        const indexRange =
          /Index (Only )?Scan using meltano_state_state_id_c_idx/.test(plan) && /Index Cond/.test(plan);
        if (!indexRange || /Seq Scan/.test(plan)) throw new Error(`list is not an index range scan:\n${plan}`);
        return { stateIds: count, matched: found, indexRangeScan: 1 };
      },
      async teardown() {
        await store.close();
        await client.end();
      },
    };
  },
};

export const meltanoScenarios: Scenario[] = [
  latency('get', 1.5),
  latency('set', 2),
  latency('merge', 3),
  coldMerge,
  list,
];
