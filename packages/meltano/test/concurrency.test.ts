import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { MeltanoStateStore } from '../src/index.js';
import { LAYOUTS, openStore, runWorker } from './helpers.js';

const PROCESSES = 16;
const ROUNDS = Number(process.env.MELTANO_TEST_ROUNDS ?? 100);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'meltano_conc');
  sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
});
afterAll(async () => {
  await sql?.end();
  await db?.drop();
});

describe.each(LAYOUTS)('%s layout', (layout) => {
  let store: MeltanoStateStore;
  const schema = `mel_${layout}`;
  beforeAll(async () => {
    store = await openStore(db.url, layout);
  });
  afterAll(async () => {
    await store?.close();
  });

  test(`${PROCESSES} processes x ${ROUNDS} merges on one state id lose no update`, { timeout: 600_000 }, async () => {
    const stateId = `dev:tap-concurrent-to-target:${layout}`;
    await store.set(stateId, { singer_state: { bookmarks: { seed: true } } });
    const workers = Array.from({ length: PROCESSES }, (_, worker) =>
      runWorker('workers/worker.ts', {
        URL: db.url,
        LAYOUT: layout,
        SCHEMA: schema,
        STATE_ID: stateId,
        WORKER: String(worker),
        ROUNDS: String(ROUNDS),
        MODE: 'merge',
      }),
    );
    const results = await Promise.all(workers.map((w) => w.done));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const state = await store.get(stateId);
    const bookmarks =
      (state?.merged.singer_state as { bookmarks: Record<string, unknown> } | undefined)?.bookmarks ?? {};
    const missing: string[] = [];
    for (let w = 0; w < PROCESSES; w++) {
      for (let r = 0; r < ROUNDS; r++) if (bookmarks[`p${w}_${r}`] !== r) missing.push(`p${w}_${r}`);
    }
    expect(missing).toEqual([]);
    expect(bookmarks.seed).toBe(true);
    expect(Object.keys(bookmarks)).toHaveLength(PROCESSES * ROUNDS + 1);
  });

  test('a SIGKILLed lock holder: the next writer gets the lock (seed: after expiry; plugin/systemdb: at once)', async () => {
    const stateId = `dev:killed-holder:${layout}`;
    const holder = runWorker('workers/worker.ts', {
      URL: db.url,
      LAYOUT: layout,
      SCHEMA: schema,
      STATE_ID: stateId,
      MODE: 'hold',
      LOCK_TIMEOUT: '3',
    });
    await holder.waitFor('LOCKED');
    const impatient = await openStore(db.url, layout, { lockWaitSeconds: 0.5, lockRetrySeconds: 0.05 });
    try {
      // While the holder lives, nobody else gets in.
      await expect(impatient.merge(stateId, { singer_state: { a: 1 } })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      holder.kill('SIGKILL');
      expect((await holder.done).signal).toBe('SIGKILL');
      if (layout === 'pgstate') {
        // The dead holder's row is still there until it expires...
        const rows = await sql.query(`SELECT lock_id FROM ${schema}.meltano_state_locks WHERE state_id = $1`, [
          stateId,
        ]);
        expect(rows.rowCount).toBe(1);
        // ...then a writer willing to wait past the expiry takes it over.
        const patient = await openStore(db.url, layout, { lockWaitSeconds: 30 });
        try {
          await patient.merge(stateId, { singer_state: { a: 1 } });
        } finally {
          await patient.close();
        }
        const left = await sql.query(`SELECT 1 FROM ${schema}.meltano_state_locks WHERE state_id = $1`, [stateId]);
        expect(left.rowCount).toBe(0);
      } else {
        // The server dropped the session lock with the connection: the impatient writer gets in now.
        await impatient.merge(stateId, { singer_state: { a: 1 } });
      }
      expect((await store.get(stateId))?.merged).toEqual({ singer_state: { a: 1 } });
    } finally {
      await impatient.close();
    }
  });
});
