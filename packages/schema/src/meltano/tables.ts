import { sql } from 'drizzle-orm';
import { index, text, timestamp, varchar } from 'drizzle-orm/pg-core';
import { schemaFor, tableName } from '../names.js';

export const MELTANO_DEFAULT_SCHEMA = 'public';
export const MELTANO_DEFAULT_STATE_TABLE = 'state';
/**
 * Byte-order index on the state id: `state_id COLLATE "C" LIKE 'prefix%'` (glob listings) and
 * `ORDER BY state_id COLLATE "C"` (S3 listings, export pages) use it under any database collation.
 */
const STATE_ID_C_INDEX_SUFFIX = '_state_id_c_idx';

export interface MeltanoSeedNames {
  /** Default `public` (the seed takes it from the URL path `/database/schema`). */
  schema?: string;
}

/**
 * The seed plugin's two tables (fixed table names, configurable schema). `expires_at` is pgstate's addition: a
 * real lease expiry, in absolute time. Its default gives a lock row written by the Python seed plugin (which names
 * only `state_id` and `lock_id`) the plugin's own 5-minute life, measured on the server clock: the plugin's
 * `locked_at` is a wall-clock time in the writer's session time zone, which no other session can interpret.
 */
export const SEED_LOCK_LIFETIME = "interval '5 minutes'";

export function meltanoSeedTables(names: MeltanoSeedNames = {}) {
  const schema = schemaFor(names.schema ?? MELTANO_DEFAULT_SCHEMA);
  const state = schema.table(
    'meltano_state',
    {
      stateId: varchar('state_id', { length: 900 }).primaryKey(),
      partialState: text('partial_state'),
      completedState: text('completed_state'),
      updatedAt: timestamp('updated_at').defaultNow(),
    },
    (t) => [index(`meltano_state${STATE_ID_C_INDEX_SUFFIX}`).using('btree', sql`${t.stateId} COLLATE "C"`)],
  );
  const locks = schema.table('meltano_state_locks', {
    stateId: varchar('state_id', { length: 900 }).primaryKey(),
    lockedAt: timestamp('locked_at').defaultNow(),
    lockId: varchar('lock_id', { length: 255 }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).default(sql.raw(`now() + ${SEED_LOCK_LIFETIME}`)),
  });
  return { state, locks };
}

export interface MeltanoStateTableNames {
  /** Default `public`. */
  schema?: string;
  /** Default `state`. */
  table?: string;
  /**
   * `plugin` (meltano-state-backend-postgresql: `updated_at DEFAULT CURRENT_TIMESTAMP`) or `systemdb` (Meltano's
   * system database: no server default). Same four columns either way.
   */
  layout?: 'plugin' | 'systemdb';
}

/** The one-table `state` layout shared by the upstream postgresql plugin and Meltano's systemdb. */
export function meltanoStateTable(names: MeltanoStateTableNames = {}) {
  const schema = schemaFor(names.schema ?? MELTANO_DEFAULT_SCHEMA);
  const table = tableName(names.table ?? MELTANO_DEFAULT_STATE_TABLE, STATE_ID_C_INDEX_SUFFIX.length);
  const updatedAt = timestamp('updated_at');
  return schema.table(
    table,
    {
      stateId: varchar('state_id', { length: 900 }).primaryKey(),
      partialState: text('partial_state'),
      completedState: text('completed_state'),
      updatedAt: names.layout === 'systemdb' ? updatedAt : updatedAt.defaultNow(),
    },
    (t) => [index(`${table}${STATE_ID_C_INDEX_SUFFIX}`).using('btree', sql`${t.stateId} COLLATE "C"`)],
  );
}

export type MeltanoSeedTables = ReturnType<typeof meltanoSeedTables>;
export type MeltanoStateTable = ReturnType<typeof meltanoStateTable>;
