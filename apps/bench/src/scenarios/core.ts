import { createPool, parseConnectionSettings } from '@pgstate/core';
import pg from 'pg';
import type { Scenario } from '../harness.js';

/** The connection layer's overhead on a trivial round trip (pool checkout included), beside a bare pg client. No goal: a reference row. */
export const coreScenarios: Scenario[] = [
  {
    suite: 'core',
    name: 'pooled round trip (100 x SELECT 1)',
    async prepare({ url }) {
      const pool = createPool(parseConnectionSettings(url));
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await pool.query('SELECT 1');
      return {
        candidate: {
          label: '@pgstate/core pool',
          async run() {
            for (let i = 0; i < 100; i++) await pool.query('SELECT 1');
          },
        },
        baseline: {
          label: 'bare pg.Client',
          async run() {
            for (let i = 0; i < 100; i++) await client.query('SELECT 1');
          },
        },
        async teardown() {
          await pool.end();
          await client.end();
        },
      };
    },
  },
];
