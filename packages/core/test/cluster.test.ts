import pg from 'pg';
import { expect, inject, test } from 'vitest';
import { createPool, parseConnectionSettings } from '../src/index.js';
import { createTestDatabase } from '../src/testing.js';

test('a pool from parsed settings reaches a fresh test database on a real server', async () => {
  const db = await createTestDatabase(inject('pgUrl'));
  const pool = createPool(parseConnectionSettings(db.url));
  try {
    const { rows } = await pool.query<{ db: string; v: string }>('SELECT current_database() AS db, version() AS v');
    expect(rows[0]?.db).toBe(db.name);
    expect(rows[0]?.v).toMatch(/^PostgreSQL \d+/);
  } finally {
    await pool.end();
    await db.drop();
  }
  const check = new pg.Client({ connectionString: inject('pgUrl') });
  await check.connect();
  const { rowCount } = await check.query('SELECT 1 FROM pg_database WHERE datname = $1', [db.name]);
  await check.end();
  expect(rowCount).toBe(0);
});
