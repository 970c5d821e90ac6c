/**
 * The bucket-handler contract of @pgstate/core/testing against the Meltano handler (the only layout it serves: the
 * state and lock tables). Keys are `{prefix}/{state_id}/state.json`; bodies are state files in Meltano's own JSON
 * layout (the handler stores the two parts as columns and writes the file back in that layout). The probe reads the
 * state row with SQL. Lock files have rules of their own (bucket.test.ts); the contract covers state files.
 */
import { createTestDatabase, runBucketHandlerContract } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, inject, test } from 'vitest';
import { createMeltanoBucketHandler, MeltanoStateStore } from '../src/index.js';
import { dumpJson } from '../src/json.js';

const SCHEMA = 'mel_contract';
const PREFIX = 'meltano-state';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Pool;
let tables: { state: string; locks: string };

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'meltano_contract');
  sql = new pg.Pool({ connectionString: db.url, max: 2 });
  const store = new MeltanoStateStore({ url: db.url, schema: SCHEMA });
  await store.migrate();
  tables = { state: store.config.stateTable, locks: store.config.locksTable ?? '' };
  await store.close();
});
afterAll(async () => {
  await sql?.end();
  await db?.drop();
});

const stateIdOf = (key: string) => key.slice(PREFIX.length + 1, -'/state.json'.length);
const part = (text: string | null) => (text === null ? {} : JSON.parse(text));

runBucketHandlerContract(
  { describe, test, beforeEach, afterEach },
  {
    name: '@pgstate/meltano',
    open: async () => {
      await sql.query(`TRUNCATE ${tables.state}, ${tables.locks}`);
      return createMeltanoBucketHandler({ storeOptions: { url: db.url, schema: SCHEMA }, prefix: PREFIX });
    },
    probe: {
      async rowFor(key) {
        const { rows } = await sql.query<{ completed_state: string | null; partial_state: string | null }>(
          `SELECT completed_state, partial_state FROM ${tables.state} WHERE state_id = $1`,
          [stateIdOf(key)],
        );
        const row = rows[0];
        return row ? { completed: part(row.completed_state), partial: part(row.partial_state) } : null;
      },
    },
    expectedRow: (_key, body) => {
      const file = JSON.parse(Buffer.from(body).toString('utf8'));
      return { completed: file.completed, partial: file.partial };
    },
    key: (name) => `${PREFIX}/${name}/state.json`,
    body: (n) =>
      Buffer.from(
        dumpJson({
          completed: { singer_state: { bookmarks: { stream: { n } } } },
          partial: n % 2 === 0 ? {} : { singer_state: { partial: n } },
        }),
      ),
    invalidKeys: ['elsewhere/x/state.json', `${PREFIX}/x/other.json`, `${PREFIX}/a/b/state.json`],
  },
);
