// pgstate and the Python Meltano PostgreSQL plugin writing the same states at once, one lane per plugin layout.
// The plugin is not on a package registry, so interop-worker.mjs drives its SQL protocol as its source performs it
// (lock row or advisory lock, read, write, release; see there). The tables are created by the plugin's own DDL
// first, then `pgstate migrate` upgrades them. Each writer is its own process, pauses 0-10 ms between updates, and
// Python and pgstate sessions run in different time zones. Every merge adds a key of its own, so a key missing at
// the end is a lost update; any loss fails the lane. (Python writers share one time zone: the plugin's own stale
// cleanup deletes live rows of Python writers in other zones, which no pgstate change can prevent.)
import path from 'node:path';
import { MeltanoStateStore } from '@pgstate/meltano';
import { migrate } from '@pgstate/schema';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type SuiteContext } from '../../src/kit.js';

const SCHEMA = 'mel_interop';

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

interface RaceOptions {
  layout: 'seed' | 'plugin';
  pythonZone: string;
  pgstateZone: string;
  merges: number;
  /** Characters of filler in the completed part (a large state). */
  filler?: number;
  /**
   * On a private server with fsync on: commits then wait for the disk, as in production, which widens the time
   * between a writer's lock and its read (the test servers run with fsync off).
   */
  durable?: boolean;
}

/**
 * 2 Python-protocol + 2 pgstate writer processes (interop-worker.mjs) merging into one state id; returns the keys
 * whose merge reported success but which are gone.
 */
async function race(ctx: SuiteContext<MeltanoStateStore, object>, stateId: string, o: RaceOptions): Promise<string[]> {
  const table = o.layout === 'seed' ? `${SCHEMA}.meltano_state` : `${SCHEMA}.state`;
  if (o.durable) {
    await ctx.admin.query('ALTER SYSTEM SET fsync = on');
    await ctx.admin.query('SELECT pg_reload_conf()');
  }
  if (o.filler) {
    // In both parts: every merge then rewrites a 1 MB partial part, so each write statement runs for a while.
    const big = JSON.stringify({ singer_state: { filler: 'x'.repeat(o.filler) } });
    await ctx.admin.query(`INSERT INTO ${table} (state_id, partial_state, completed_state) VALUES ($1, $2, $2)`, [
      stateId,
      big,
    ]);
  }
  const script = path.join(import.meta.dirname, 'interop-worker.mjs');
  const children = [0, 1].flatMap((n) => [
    ctx.spawn(script, {
      args: ['python', o.layout, SCHEMA, o.pythonZone, stateId, String(o.merges), `py${n}`],
      timeoutMs: 240_000,
    }),
    ctx.spawn(script, {
      args: ['pgstate', o.layout, SCHEMA, o.pgstateZone, stateId, String(o.merges), `ts${n}`],
      timeoutMs: 240_000,
    }),
  ]);
  const written: string[] = [];
  for (const child of children) {
    const r = await child.done;
    expect(r.code, r.stderr).toBe(0);
    written.push(...(r.result as string[]));
  }
  expect(written).toHaveLength(4 * o.merges);
  const { rows } = await ctx.admin.query(`SELECT partial_state FROM ${table} WHERE state_id = $1`, [stateId]);
  const bookmarks = (JSON.parse(rows[0].partial_state).singer_state?.bookmarks ?? {}) as Record<string, unknown>;
  return written.filter((key) => !(key in bookmarks));
}

function interop(layout: 'seed' | 'plugin') {
  const name = layout === 'seed' ? 'seed-plugin-sql' : 'plugin-sql';
  defineConformance<MeltanoStateStore, object>({
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
        ['all in UTC, commits flushed to disk', { pythonZone: 'UTC', pgstateZone: 'UTC', merges: 150, durable: true }],
        [
          'a 1 MB state, Python in New York, commits flushed to disk',
          { pythonZone: 'America/New_York', pgstateZone: 'UTC', merges: 20, filler: 1 << 20, durable: true },
        ],
      ];
      for (const [title, options] of rounds) {
        test(
          `${layout}: 2 Python + 2 pgstate writers with 0-10 ms pauses lose no update (${title})`,
          async (ctx) => {
            const lost = await race(ctx, `dev:interop-${title}`, { layout, ...options });
            expect(lost, `${lost.length} of ${4 * options.merges} merges lost`).toEqual([]);
            if (layout === 'seed') {
              // Nothing of pgstate's is left behind: its lock rows never commit.
              const { rows } = await ctx.admin.query(`SELECT lock_id FROM ${SCHEMA}.meltano_state_locks`);
              expect(rows).toEqual([]);
            }
          },
          { timeout: 600_000, privateServer: options.durable === true },
        );
      }
    },
  });
}

interop('seed');
interop('plugin');
