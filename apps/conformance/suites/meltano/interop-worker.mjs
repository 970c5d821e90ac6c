// One writer process of the plugin interop lanes (plugin-interop.conformance.ts), on the packages' dist:
//   node interop-worker.mjs <python|pgstate> <seed|plugin> <schema> <time zone> <state id> <merges> <name>
// Each merge adds the bookmark key `<name>_<i>`; after 0-10 ms pauses. Prints `RESULT ["<key>", ...]`: the keys whose
// merge reported success.
//
// `python` drives the Python plugin's SQL protocol as its source performs it (an autocommit connection):
//  - seed (its first version): INSERT a lock row (a unique violation means locked: sleep, retry), SELECT the state,
//    upsert both parts, DELETE its lock row, DELETE lock rows whose locked_at is older than 5 minutes;
//  - plugin (today): pg_try_advisory_lock(first 8 bytes of MD5(state id) as a signed int64) until it succeeds,
//    SELECT, upsert, pg_advisory_unlock.
import { MeltanoStateStore } from '@pgstate/meltano';
import pg from 'pg';

const lane = JSON.parse(process.env.PGSTATE_LANE ?? '{}');
const [role, layout, schema, timeZone, stateId, merges, name] = process.argv.slice(2);
const pause = (maxMs) => new Promise((r) => setTimeout(r, Math.random() * maxMs));

/** Meltano's deep merge: dicts key by key, the newer value wins; lists and scalars are replaced. */
function deepMerge(base, update) {
  const out = { ...base };
  for (const [k, v] of Object.entries(update)) {
    const old = out[k];
    const dicts = [v, old].every((x) => x && typeof x === 'object' && !Array.isArray(x));
    out[k] = dicts ? deepMerge(old, v) : v;
  }
  return out;
}

async function pythonWriter() {
  const client = new pg.Client({ connectionString: lane.adminUrl, options: `-c TimeZone=${timeZone}` });
  await client.connect();
  const table = layout === 'seed' ? `${schema}.meltano_state` : `${schema}.state`;
  const locks = `${schema}.meltano_state_locks`;
  const key = `('x' || substr(md5($1), 1, 16))::bit(64)::bigint`;
  const parse = (text) => (text ? JSON.parse(text) : {});

  async function lock() {
    const lockId = `py-${crypto.randomUUID()}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (layout === 'seed') {
        try {
          await client.query(`INSERT INTO ${locks} (state_id, lock_id) VALUES ($1, $2)`, [stateId, lockId]);
          return async () => {
            await client.query(`DELETE FROM ${locks} WHERE state_id = $1 AND lock_id = $2`, [stateId, lockId]);
            await client.query(`DELETE FROM ${locks} WHERE locked_at < CURRENT_TIMESTAMP - INTERVAL '5 minutes'`);
          };
        } catch (error) {
          if (error.code !== '23505') throw error;
        }
      } else {
        const { rows } = await client.query(`SELECT pg_try_advisory_lock(${key}) AS ok`, [stateId]);
        if (rows[0].ok) return () => client.query(`SELECT pg_advisory_unlock(${key})`, [stateId]);
      }
      if (Date.now() > deadline) throw new Error(`lock for ${stateId} not free within 60 s`);
      await pause(20); // the plugin sleeps retry_seconds (1 s in Meltano's update); shorter keeps the lane quick
    }
  }

  return {
    /** Meltano's `update` of a partial state: lock, read, deep-merge into the partial part, write both parts. */
    async merge(partial) {
      const release = await lock();
      try {
        const { rows } = await client.query(`SELECT partial_state, completed_state FROM ${table} WHERE state_id = $1`, [
          stateId,
        ]);
        const merged = deepMerge(parse(rows[0]?.partial_state), partial);
        const completed = parse(rows[0]?.completed_state);
        await client.query(
          `INSERT INTO ${table} (state_id, partial_state, completed_state) VALUES ($1, $2, $3)
           ON CONFLICT (state_id) DO UPDATE SET partial_state = EXCLUDED.partial_state,
             completed_state = EXCLUDED.completed_state, updated_at = CURRENT_TIMESTAMP`,
          [stateId, JSON.stringify(merged), Object.keys(completed).length ? JSON.stringify(completed) : null],
        );
      } finally {
        await release();
      }
    },
    close: () => client.end(),
  };
}

async function pgstateWriter() {
  const pool = new pg.Pool({ connectionString: lane.url, options: `-c TimeZone=${timeZone}`, max: 2 });
  const store = new MeltanoStateStore({ pool, layout, schema, lockWaitSeconds: 60 });
  return {
    merge: (partial) => store.merge(stateId, partial),
    close: async () => {
      await store.close();
      await pool.end();
    },
  };
}

const writer = role === 'python' ? await pythonWriter() : await pgstateWriter();
const written = [];
try {
  for (let i = 0; i < Number(merges); i++) {
    await pause(10);
    const k = `${name}_${i}`;
    await writer.merge({ singer_state: { bookmarks: { [k]: i } } });
    written.push(k);
  }
} finally {
  await writer.close();
}
console.log(`RESULT ${JSON.stringify(written)}`);
