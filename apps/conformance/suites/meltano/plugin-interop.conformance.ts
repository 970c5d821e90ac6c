// pgstate and the Python Meltano PostgreSQL plugin writing the same states at once, one lane per plugin layout.
// The plugin is not on a package registry, so this drives its SQL protocol as its source performs it (written from
// reading it): `seed` (its first version) -- autocommit INSERT of a lock row (retried while it exists), SELECT the
// state, upsert it, DELETE its lock row, DELETE lock rows older than 5 minutes by `locked_at`; `plugin` (today) --
// pg_try_advisory_lock on the first 8 bytes of MD5(state id) (retried), SELECT, upsert, pg_advisory_unlock.
// The tables are created by the plugin's own DDL first, then `pgstate migrate` upgrades them. Writers pause
// 0-10 ms between updates and run in different session time zones. Every merge adds a key of its own, so a key
// missing at the end is a lost update; any loss fails the lane.
import { type JsonObject, type MeltanoLayout, MeltanoStateStore } from '@pgstate/meltano';
import { migrate } from '@pgstate/schema';
import pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type LaneTarget } from '../../src/kit.js';

type Json = JsonObject;
const SCHEMA = 'mel_interop';
const pause = (maxMs: number) => new Promise((r) => setTimeout(r, Math.random() * maxMs));

/** The plugins' own DDL (their `CREATE TABLE IF NOT EXISTS`), run before pgstate migrates. */
const PLUGIN_DDL: Record<'seed' | 'plugin', string[]> = {
  seed: [
    `CREATE TABLE ${SCHEMA}.meltano_state (state_id VARCHAR(900) PRIMARY KEY, partial_state TEXT,
      completed_state TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)`,
    `CREATE TABLE ${SCHEMA}.meltano_state_locks (state_id VARCHAR(900) PRIMARY KEY,
      locked_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, lock_id VARCHAR(255))`,
  ],
  plugin: [
    `CREATE TABLE ${SCHEMA}.state (state_id VARCHAR(900) PRIMARY KEY, partial_state TEXT,
      completed_state TEXT, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)`,
  ],
};

/** Meltano's deep merge (dicts key by key, newer wins; lists and scalars replaced). */
function deepMerge(base: Json, update: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(update)) {
    const old = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && old && typeof old === 'object' && !Array.isArray(old)
        ? deepMerge(old as Json, v as Json)
        : v;
  }
  return out;
}

/** One Python plugin writer: its own autocommit connection, in `timeZone`. */
async function pythonWriter(lane: LaneTarget, layout: 'seed' | 'plugin', timeZone: string) {
  const client = new pg.Client({ connectionString: lane.adminUrl, options: `-c TimeZone=${timeZone}` });
  await client.connect();
  const table = layout === 'seed' ? `${SCHEMA}.meltano_state` : `${SCHEMA}.state`;
  const locks = `${SCHEMA}.meltano_state_locks`;
  const parse = (text: string | null): Json => (text ? (JSON.parse(text) as Json) : {});

  async function lock(stateId: string): Promise<() => Promise<void>> {
    const deadline = Date.now() + 30_000;
    const lockId = `py-${crypto.randomUUID()}`;
    for (;;) {
      if (layout === 'seed') {
        try {
          await client.query(`INSERT INTO ${locks} (state_id, lock_id) VALUES ($1, $2)`, [stateId, lockId]);
          return async () => {
            await client.query(`DELETE FROM ${locks} WHERE state_id = $1 AND lock_id = $2`, [stateId, lockId]);
            await client.query(`DELETE FROM ${locks} WHERE locked_at < CURRENT_TIMESTAMP - INTERVAL '5 minutes'`);
          };
        } catch (error) {
          if ((error as { code?: string }).code !== '23505') throw error;
        }
      } else {
        const key = `('x' || substr(md5($1), 1, 16))::bit(64)::bigint`;
        const { rows } = await client.query(`SELECT pg_try_advisory_lock(${key}) AS ok`, [stateId]);
        if (rows[0].ok) {
          return async () => {
            await client.query(`SELECT pg_advisory_unlock(${key})`, [stateId]);
          };
        }
      }
      if (Date.now() > deadline) throw new Error(`python writer: lock for ${stateId} not free within 30 s`);
      await pause(20); // the plugin sleeps retry_seconds (1 s by default); shorter here to keep the lane quick
    }
  }

  return {
    /** Meltano's `update` of a partial state: lock, read, deep-merge, write both parts, release. */
    async merge(stateId: string, partial: Json): Promise<void> {
      const release = await lock(stateId);
      try {
        const { rows } = await client.query(`SELECT partial_state, completed_state FROM ${table} WHERE state_id = $1`, [
          stateId,
        ]);
        await pause(1); // the plugin parses and dumps JSON in Python between its statements
        const merged = deepMerge(parse(rows[0]?.partial_state ?? null), partial);
        const completed = parse(rows[0]?.completed_state ?? null);
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

interface RaceOptions {
  layout: 'seed' | 'plugin';
  pythonZone: string;
  pgstateZone: string;
  merges: number;
  /** Characters of filler in the completed part (a large state). */
  filler?: number;
}

/** 2 Python + 2 pgstate writers merging into one state id; returns the keys that reported success but are gone. */
async function race(lane: LaneTarget, admin: pg.Pool, stateId: string, o: RaceOptions): Promise<string[]> {
  const pythons = [await pythonWriter(lane, o.layout, o.pythonZone), await pythonWriter(lane, o.layout, o.pythonZone)];
  const pools = [0, 1].map(
    () => new pg.Pool({ connectionString: lane.url, options: `-c TimeZone=${o.pgstateZone}`, max: 2 }),
  );
  const stores = pools.map(
    (pool) => new MeltanoStateStore({ pool, layout: o.layout as MeltanoLayout, schema: SCHEMA, lockWaitSeconds: 60 }),
  );
  const written: string[] = [];
  try {
    if (o.filler) {
      await stores[0]!.set(stateId, { singer_state: { filler: 'x'.repeat(o.filler) } });
    }
    const writer = async (name: string, write: (partial: Json) => Promise<void>) => {
      for (let i = 0; i < o.merges; i++) {
        await pause(10);
        const key = `${name}_${i}`;
        await write({ singer_state: { bookmarks: { [key]: i } } });
        written.push(key);
      }
    };
    await Promise.all([
      ...pythons.map((p, n) => writer(`py${n}`, (partial) => p.merge(stateId, partial))),
      ...stores.map((s, n) => writer(`ts${n}`, (partial) => s.merge(stateId, partial))),
    ]);
  } finally {
    await Promise.all([
      ...pythons.map((p) => p.close()),
      ...stores.map((s) => s.close()),
      ...pools.map((p) => p.end()),
    ]);
  }
  const table = o.layout === 'seed' ? `${SCHEMA}.meltano_state` : `${SCHEMA}.state`;
  const { rows } = await admin.query(`SELECT partial_state FROM ${table} WHERE state_id = $1`, [stateId]);
  const bookmarks = (JSON.parse(rows[0].partial_state).singer_state?.bookmarks ?? {}) as Json;
  return written.filter((key) => !(key in bookmarks));
}

function interop(layout: 'seed' | 'plugin') {
  const name = layout === 'seed' ? 'seed-plugin-sql' : 'plugin-sql';
  defineConformance<MeltanoStateStore, Record<string, never>>({
    adapter: '@pgstate/meltano',
    lanes: [{ name, via: 'direct' }],
    async setup(admin: pg.Pool) {
      await admin.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
      for (const ddl of PLUGIN_DDL[layout]) await admin.query(ddl);
      await migrate(admin, { adapter: 'meltano', layout, schema: SCHEMA });
    },
    create: (lane) => new MeltanoStateStore({ url: lane.url, ...lane.fields, layout, schema: SCHEMA }),
    close: (store) => store.close(),
    probes: () => ({}),
    tests({ test }) {
      const rounds: Array<[string, Omit<RaceOptions, 'layout'>]> = [
        ['Python in New York, pgstate in UTC', { pythonZone: 'America/New_York', pgstateZone: 'UTC', merges: 150 }],
        ['Python in UTC, pgstate in New York', { pythonZone: 'UTC', pgstateZone: 'America/New_York', merges: 150 }],
        ['Python in Tokyo, pgstate in UTC', { pythonZone: 'Asia/Tokyo', pgstateZone: 'UTC', merges: 150 }],
        [
          'a 1 MB state, Python in New York',
          { pythonZone: 'America/New_York', pgstateZone: 'UTC', merges: 30, filler: 1 << 20 },
        ],
      ];
      for (const [title, options] of rounds) {
        test(
          `${layout}: 2 Python + 2 pgstate writers with 0-10 ms pauses lose no update (${title})`,
          async ({ lane, admin }) => {
            const lost = await race(lane, admin, `dev:interop-${title}`, { layout, ...options });
            expect(lost, `${lost.length} of ${4 * options.merges} merges lost`).toEqual([]);
            if (layout === 'seed') {
              // Nothing of pgstate's is left behind: its lock rows never commit.
              const { rows } = await admin.query(`SELECT lock_id FROM ${SCHEMA}.meltano_state_locks`);
              expect(rows).toEqual([]);
            }
          },
          { timeout: 300_000 },
        );
      }
    },
  });
}

interop('seed');
interop('plugin');
