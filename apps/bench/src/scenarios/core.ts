import { createPool, parseConnectionSettings } from '@pgstate/core';
import pg from 'pg';
import type { Scenario } from '../harness.js';

const ROUND_TRIPS = 100;

/**
 * The connection layer's overhead on a trivial round trip (pool checkout included). Two reference rows, no goal:
 * beside a bare `pg.Client` (what any pool costs: checkout, release, idle timer) and beside a plain `pg.Pool` on the
 * same URL (what `@pgstate/core` adds on top of pg's pool: that should be nothing per query). Short runs, so more
 * of them than the default.
 */
function pooledRoundTrip(against: 'client' | 'pool'): Scenario {
  return {
    suite: 'core',
    name:
      against === 'client'
        ? `pooled round trip (${ROUND_TRIPS} x SELECT 1)`
        : `pooled round trip vs pg.Pool (${ROUND_TRIPS} x SELECT 1)`,
    runs: 15,
    warmups: 3,
    async prepare({ url }) {
      const pool = createPool(parseConnectionSettings(url));
      const client = new pg.Client({ connectionString: url });
      const plain = new pg.Pool({ connectionString: url });
      await client.connect();
      await pool.query('SELECT 1');
      await plain.query('SELECT 1');
      return {
        candidate: {
          label: '@pgstate/core pool',
          async run() {
            for (let i = 0; i < ROUND_TRIPS; i++) await pool.query('SELECT 1');
          },
        },
        baseline:
          against === 'client'
            ? {
                label: 'bare pg.Client',
                async run() {
                  for (let i = 0; i < ROUND_TRIPS; i++) await client.query('SELECT 1');
                },
              }
            : {
                label: 'pg.Pool (same URL, defaults)',
                async run() {
                  for (let i = 0; i < ROUND_TRIPS; i++) await plain.query('SELECT 1');
                },
              },
        async teardown() {
          await pool.end();
          await plain.end();
          await client.end();
        },
      };
    },
  };
}

export const coreScenarios: Scenario[] = [pooledRoundTrip('client'), pooledRoundTrip('pool')];
