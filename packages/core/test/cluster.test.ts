import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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

test.runIf(process.getuid?.() === 0)(
  'as root, a data directory the postgres OS user cannot reach is a BAD_SETTING with a fix, not an initdb failure',
  async () => {
    const { findLocalInstallations, startCluster } = await import('../src/cluster.js');
    const installation = findLocalInstallations()[0];
    if (!installation) throw new Error('no local PostgreSQL binaries');
    const privateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-private-')); // mode 0700, owned by root
    try {
      await expect(
        startCluster({ installation, dataDir: path.join(privateDir, 'home', 'data') }),
      ).rejects.toMatchObject({
        code: 'BAD_SETTING',
        fix: expect.stringContaining('PGSTATE_HOME'),
      });
      expect(fs.existsSync(path.join(privateDir, 'home', 'data', 'PG_VERSION'))).toBe(false);
    } finally {
      fs.rmSync(privateDir, { recursive: true, force: true });
    }
  },
);
