/**
 * Meltano's state store contract (`StateStoreManager` + `StateService`) on PostgreSQL, in three table layouts.
 */

import { randomUUID } from 'node:crypto';
import { advisoryLockKey, createPool, PgStateError, pgErrorKind, withTransaction } from '@pgstate/core';
import { migrate } from '@pgstate/schema';
import pg from 'pg';
import {
  type MeltanoConnectionOptions,
  type MeltanoLayout,
  type MeltanoLayoutInput,
  parseLayout,
  type ResolvedMeltanoConfig,
  resolveMeltanoConfig,
} from './config.js';
import { globToLike } from './glob.js';
import type { JsonObject } from './json.js';
import {
  AdvisoryLock,
  type AdvisoryLockContext,
  acquireAdvisoryLock,
  acquireRowLock,
  backoff,
  inlineParams,
  type LockOptions,
  lockLostError,
  lockRowUpsert,
  lockRowUpsertValues,
  lockTimeoutError,
  type MeltanoLock,
  RowLock,
  sleep,
} from './locks.js';
import {
  deepMerge,
  type ExportedState,
  isEmpty,
  type MeltanoState,
  type MeltanoStateView,
  mergedView,
  parseExportEntry,
  parseStateInput,
  readStoredPart,
  validateStateId,
  writePart,
} from './state.js';
import { WrittenPartials } from './versions.js';

export interface MeltanoStoreOptions extends MeltanoConnectionOptions {
  /** `pgstate` (default; formerly `seed`, still accepted), `plugin` or `systemdb`. */
  layout?: MeltanoLayout | string;
  /** Meltano's `state_backend.lock_timeout_seconds`: a lock row not renewed for this long is free (default 10). */
  lockTimeoutSeconds?: number;
  /** Meltano's `state_backend.lock_retry_seconds`: the longest pause between lock attempts (default 1). */
  lockRetrySeconds?: number;
  /** How long a write waits for the state's lock before LOCK_TIMEOUT (default 30, like the upstream plugin). */
  lockWaitSeconds?: number;
  /** Use this pool instead of creating one (it is not closed by `close()`). */
  pool?: pg.Pool;
}

export interface WriteOptions {
  /** Require a top-level `singer_state` key, as `meltano state set/merge` do (default true). */
  validate?: boolean;
  /** Write under a lock you already hold (from `acquireLock`) instead of taking it again. */
  lock?: MeltanoLock;
}

export interface ImportOptions {
  onProgress?: (done: number, total: number) => void;
}

interface StoredParts {
  partial_state: string | null;
  completed_state: string | null;
}

interface Row extends StoredParts {
  updated_at: Date | null;
}

type Critical<T> = (client: pg.ClientBase) => Promise<T>;

const EXPORT_BATCH = 1000;

export class MeltanoStateStore {
  readonly layout: MeltanoLayout;
  readonly config: ResolvedMeltanoConfig;
  readonly lockTimeoutSeconds: number;
  readonly lockRetrySeconds: number;
  readonly lockWaitSeconds: number;
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #advisory: AdvisoryLockContext;
  readonly #sql: StateSql;
  /** Partial parts this store wrote, with their row versions: repeated merges skip the read (see #tryUnlocked). */
  readonly #written = new WrittenPartials();

  constructor(options: MeltanoStoreOptions = {}) {
    this.layout = parseLayout(options.layout);
    this.config = resolveMeltanoConfig(this.layout, options);
    this.lockTimeoutSeconds = positive(options.lockTimeoutSeconds ?? 10, 'lockTimeoutSeconds');
    this.lockRetrySeconds = positive(options.lockRetrySeconds ?? 1, 'lockRetrySeconds');
    this.lockWaitSeconds = positive(options.lockWaitSeconds ?? 30, 'lockWaitSeconds');
    this.#pool = options.pool ?? createPool(this.config.settings);
    this.#ownsPool = options.pool === undefined;
    this.#advisory = { pool: this.#pool, poolingChecked: { value: undefined } };
    this.#sql = stateSql(this.config.stateTable, this.config.locksTable);
  }

  get pool(): pg.Pool {
    return this.#pool;
  }

  /** Creates the layout's tables if missing (adopting existing ones) via `@pgstate/schema`'s migrator. */
  async migrate(): Promise<void> {
    await migrate(this.#pool, {
      adapter: 'meltano',
      layout: this.layout,
      schema: this.config.schema,
      ...(this.layout === 'pgstate' ? {} : { table: this.config.table }),
    });
  }

  async close(): Promise<void> {
    if (this.#ownsPool) await this.#pool.end();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- reads ---------------------------------------------------------------------------------------------------

  /** The state as Meltano reads it (`merged` = partial over completed) plus its raw parts; null when absent. */
  async get(stateId: string): Promise<MeltanoStateView | null> {
    validateStateId(stateId);
    return this.#read(this.#pool, stateId);
  }

  async #read(client: pg.Pool | pg.ClientBase, stateId: string): Promise<MeltanoStateView | null> {
    const { rows } = await client.query<Row>(this.#sql.read, [stateId]);
    const row = rows[0];
    return row ? toView(stateId, row) : null;
  }

  /** State ids matching a glob as the layout's host matches it (see `globToLike`), in byte order. */
  async list(pattern?: string): Promise<string[]> {
    const { rows } = await this.#pool.query<{ state_id: string }>(
      listQuery(this.config.stateTable, pattern, this.layout),
    );
    return rows.map((r) => r.state_id);
  }

  /** Every state, in batches (keyset pagination, so memory stays flat for large stores). */
  async *states(pattern?: string): AsyncGenerator<MeltanoStateView> {
    const { like } = globToLike(pattern, this.layout);
    let after = '';
    for (;;) {
      const { rows } = await this.#pool.query<Row & { state_id: string }>(
        `SELECT state_id, partial_state, completed_state, updated_at FROM ${this.config.stateTable}
         WHERE state_id COLLATE "C" > $1 AND state_id COLLATE "C" LIKE $2 ESCAPE '\\'
         ORDER BY state_id COLLATE "C" LIMIT ${EXPORT_BATCH}`,
        [after, like],
      );
      for (const row of rows) yield toView(row.state_id, row);
      const last = rows[rows.length - 1];
      if (!last || rows.length < EXPORT_BATCH) return;
      after = last.state_id;
    }
  }

  /** `meltano state export`: `{state_id: {"completed": ..., "partial": ...}}`. */
  async export(pattern?: string): Promise<Record<string, ExportedState>> {
    const out: Record<string, ExportedState> = {};
    for await (const s of this.states(pattern)) {
      Object.defineProperty(out, s.stateId, {
        value: { completed: s.completed, partial: s.partial },
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }

  async count(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.config.stateTable}`);
    return Number(rows[0]?.n ?? 0);
  }

  // ---- writes (Meltano's StateService / StateStoreManager) -------------------------------------------------------

  /**
   * Meltano's `update`: a state without a completed part is deep-merged into the current partial (the completed
   * part is kept); a completed state replaces the row.
   *
   * Without a held lock this first tries the lock-free way, guarded in the same statement by "nobody holds the
   * state's lock" (seed: no lock row; plugin/systemdb: `pg_try_advisory_xact_lock` on the upstream key): a completed
   * state is one guarded upsert; a merge reads the row and its version (`xmin`), merges in JS and writes only if the
   * row is still that version. If the state is locked, or another writer got in between, it falls back to the
   * locked transaction (which waits for the lock like Meltano's `update`).
   */
  async update(state: MeltanoState, options: Pick<WriteOptions, 'lock'> = {}): Promise<void> {
    validateStateId(state.stateId);
    if (options.lock) {
      await this.#underHeldLock(state.stateId, options.lock, (client) => this.#applyLocked(client, state));
      return;
    }
    if (await this.#tryUnlocked(state)) return;
    await this.#critical(state.stateId, undefined, (client) => this.#applyLocked(client, state));
  }

  /** `meltano state set`: a completed state (partial cleared). JSON text or an object. */
  async set(stateId: string, value: string | JsonObject, options: WriteOptions = {}): Promise<void> {
    validateStateId(stateId);
    const completed = parseStateInput(value, { requireSingerState: options.validate !== false });
    await this.update({ stateId, completed, partial: {} }, options);
  }

  /** `meltano state merge`: deep-merge into the partial state under the lock (lists are replaced). */
  async merge(stateId: string, value: string | JsonObject, options: WriteOptions = {}): Promise<void> {
    validateStateId(stateId);
    const partial = parseStateInput(value, { requireSingerState: options.validate !== false });
    await this.update({ stateId, completed: {}, partial }, options);
  }

  /** `meltano state merge --from-state-id SRC DST`: merge SRC's merged state into DST. */
  async mergeFrom(sourceId: string, destinationId: string): Promise<void> {
    const source = await this.get(validateStateId(sourceId, 'source state id'));
    await this.merge(destinationId, source?.merged ?? {});
  }

  /** `meltano state copy`: set DST to SRC's merged state (validated like `set`, as Meltano does). */
  async copy(sourceId: string, destinationId: string): Promise<void> {
    validateStateId(destinationId, 'destination state id');
    const source = await this.get(validateStateId(sourceId, 'source state id'));
    await this.set(destinationId, source?.merged ?? {});
  }

  /** `meltano state move`: copy, then clear the source. */
  async move(sourceId: string, destinationId: string): Promise<void> {
    await this.copy(sourceId, destinationId);
    await this.clear(sourceId);
  }

  /** Removes the row without taking the lock (Meltano's `delete`). True when a row was removed. */
  async delete(stateId: string): Promise<boolean> {
    validateStateId(stateId);
    this.#written.delete(stateId);
    const { rowCount } = await this.#pool.query(`DELETE FROM ${this.config.stateTable} WHERE state_id = $1`, [stateId]);
    return rowCount === 1;
  }

  /** `meltano state clear ID`: delete under the lock. */
  async clear(stateId: string, options: Pick<WriteOptions, 'lock'> = {}): Promise<boolean> {
    validateStateId(stateId);
    this.#written.delete(stateId);
    return this.#critical(stateId, options.lock, async (client) => {
      const { rowCount } = await client.query(`DELETE FROM ${this.config.stateTable} WHERE state_id = $1`, [stateId]);
      return rowCount === 1;
    });
  }

  /** `meltano state clear --all`: returns how many states were removed. */
  async clearAll(): Promise<number> {
    this.#written.clear();
    const { rowCount } = await this.#pool.query(`DELETE FROM ${this.config.stateTable}`);
    return rowCount ?? 0;
  }

  /**
   * `meltano state import`: overwrite every state in the input (the `export` format). Everything is validated
   * first and written in one transaction, so bad input writes nothing.
   */
  async import(input: string | Record<string, unknown>, options: ImportOptions = {}): Promise<number> {
    const data = typeof input === 'string' ? parseStateInput(input, { what: 'import file' }) : input;
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new PgStateError('INVALID_INPUT', 'The import data must be a JSON object of state ids.', {
        fix: 'Use the format `meltano state export` writes.',
      });
    }
    const states = Object.keys(data).map((id) => parseExportEntry(id, (data as Record<string, unknown>)[id]));
    this.#written.clear();
    // One transaction: bad input or a failure writes nothing (and a connection whose ROLLBACK failed is dropped).
    await withTransaction(this.#pool, async (client) => {
      for (let i = 0; i < states.length; i += EXPORT_BATCH) {
        const batch = states.slice(i, i + EXPORT_BATCH);
        await client.query(
          `INSERT INTO ${this.config.stateTable} (state_id, partial_state, completed_state, updated_at)
           SELECT * , now() FROM unnest($1::text[], $2::text[], $3::text[])
           ON CONFLICT (state_id) DO UPDATE SET partial_state = EXCLUDED.partial_state,
             completed_state = EXCLUDED.completed_state, updated_at = EXCLUDED.updated_at`,
          [
            batch.map((s) => s.stateId),
            batch.map((s) => writePart(s.partial, this.#emptyAs)),
            batch.map((s) => writePart(s.completed, this.#emptyAs)),
          ],
        );
        options.onProgress?.(Math.min(i + batch.length, states.length), states.length);
      }
    });
    return states.length;
  }

  // ---- locks -------------------------------------------------------------------------------------------------

  /**
   * Holds the state's lock until released: `await using lock = await store.acquireLock(id)`. Pass it to writes as
   * `{lock}`. seed: an expiring lock row (renewed while held); plugin/systemdb: the upstream plugin's session
   * advisory lock on a dedicated connection (needs session pooling; detected and reported otherwise).
   */
  async acquireLock(stateId: string, options: LockOptions = {}): Promise<MeltanoLock> {
    validateStateId(stateId);
    const opts = {
      retrySeconds: options.retrySeconds ?? this.lockRetrySeconds,
      timeoutSeconds: options.timeoutSeconds ?? this.lockWaitSeconds,
    };
    if (this.config.locksTable) {
      return acquireRowLock(
        { pool: this.#pool, locksTable: this.config.locksTable, lockTimeoutSeconds: this.lockTimeoutSeconds },
        stateId,
        opts,
      );
    }
    return acquireAdvisoryLock(this.#advisory, stateId, opts);
  }

  get #emptyAs(): 'null' | 'braces' {
    return this.layout === 'systemdb' ? 'braces' : 'null';
  }

  /** The two parts as stored (empty as NULL, or `'{}'` in systemdb). */
  #parts(state: MeltanoState): [partial: string | null, completed: string | null] {
    return [writePart(state.partial, this.#emptyAs), writePart(state.completed, this.#emptyAs)];
  }

  /**
   * Meltano's merge of a partial state into a stored partial part: the new partial part as stored. (The completed
   * part is kept as stored: merge writes leave that column alone.)
   */
  #mergedPartial(stateId: string, partial: JsonObject, stored: string | null): string | null {
    return writePart(deepMerge(partial, readStoredPart(stored, stateId, 'partial_state')), this.#emptyAs);
  }

  /**
   * One attempt without the lock; false when the state is locked, or changed under us twice (nothing written then).
   * A completed state: a guarded UPDATE, or for a new state id a guarded upsert. A merge: a guarded UPDATE on the
   * condition that the row is still the version this store last wrote (no read at all), else read the row and its
   * version and write on that condition.
   */
  async #tryUnlocked(state: MeltanoState): Promise<boolean> {
    const { stateId } = state;
    if (!isEmpty(state.completed)) {
      this.#written.delete(stateId);
      const parts = this.#parts(state);
      if (this.config.locksTable) {
        // seed: one upsert, so the lock row is taken once (an UPDATE first would take it twice for a new id).
        return (await this.#guarded(this.#sql.guardedUpsert, [stateId, ...parts])).rowCount === 1;
      }
      const updated = await this.#guarded(this.#sql.guardedReplace, [stateId, ...parts]);
      if (updated.rowCount === 1) return true;
      const upserted = await this.#guarded(this.#sql.guardedUpsert, [stateId, ...parts]);
      return upserted.rowCount === 1;
    }
    const known = this.#written.get(stateId);
    if (known) {
      const partial = this.#mergedPartial(stateId, state.partial, known.partial);
      if (await this.#mergeIfVersion(stateId, partial, known.version)) return true;
    }
    const { rows } = await this.#pool.query<StoredParts & { version: string }>(this.#sql.readVersion, [stateId]);
    const row = rows[0];
    if (!row) {
      const parts = this.#parts(state);
      const inserted = await this.#guarded<{ version: string }>(this.#sql.guardedInsertIfAbsent, [stateId, ...parts]);
      const version = inserted.rows[0]?.version;
      if (version !== undefined) this.#written.set(stateId, { version, partial: parts[0] });
      return version !== undefined;
    }
    // Read like Meltano's update reads (a corrupt stored part fails here, before anything is written).
    readStoredPart(row.completed_state, stateId, 'completed_state');
    const partial = this.#mergedPartial(stateId, state.partial, row.partial_state);
    return this.#mergeIfVersion(stateId, partial, row.version);
  }

  async #mergeIfVersion(stateId: string, partial: string | null, version: string): Promise<boolean> {
    const { rows } = await this.#guarded<{ version: string }>(this.#sql.guardedMergeIfVersion, [
      stateId,
      partial,
      version,
    ]);
    const written = rows[0]?.version;
    if (written === undefined) {
      this.#written.delete(stateId);
      return false;
    }
    this.#written.set(stateId, { version: written, partial });
    return true;
  }

  /**
   * Runs one guarded write (`$1` the state id, `$2`, `$3` its values). plugin/systemdb: one statement with the
   * upstream advisory key as `$4`. seed: the statement takes the lock row itself (its `lk` CTE, lock id `$4`,
   * lifetime `$5`) and a second statement deletes that row again, sent as one simple query: one round trip, one
   * implicit transaction, so the row is never committed and a Python `INSERT` of its lock row waits for it. The
   * values are inlined as escaped literals (the simple protocol has no parameters).
   */
  async #guarded<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values: (string | null)[],
  ): Promise<pg.QueryResult<R>> {
    const stateId = values[0]!;
    if (!this.config.locksTable) return this.#pool.query<R>(text, [...values, advisoryLockKey(stateId).toString()]);
    const lockId = `pgstate:w:${randomUUID()}`;
    const script = `${inlineParams(text, [...values, ...lockRowUpsertValues(lockId, this.lockTimeoutSeconds)])};
      DELETE FROM ${this.config.locksTable} WHERE state_id = ${pg.escapeLiteral(stateId)} AND lock_id = ${pg.escapeLiteral(lockId)}`;
    const results = (await this.#pool.query(script)) as unknown as pg.QueryResult<R>[];
    return results[0]!;
  }

  /**
   * Meltano's `update` inside a transaction that holds the state's lock. Lock-free writers do not wait for a lock
   * taken inside a transaction, so the row is read FOR UPDATE (they then fail their version check and come here)
   * and a first insert only happens if nobody inserted meanwhile (else read again).
   */
  async #applyLocked(client: pg.ClientBase, state: MeltanoState): Promise<void> {
    const { stateId } = state;
    this.#written.delete(stateId);
    if (!isEmpty(state.completed)) {
      await client.query(this.#sql.upsert, [stateId, ...this.#parts(state)]);
      return;
    }
    for (;;) {
      const { rows } = await client.query<StoredParts>(this.#sql.readForUpdate, [stateId]);
      const row = rows[0];
      if (row) {
        readStoredPart(row.completed_state, stateId, 'completed_state');
        const partial = this.#mergedPartial(stateId, state.partial, row.partial_state);
        await client.query(this.#sql.mergeLocked, [stateId, partial]);
        return;
      }
      const { rowCount } = await client.query(this.#sql.insertIfAbsent, [stateId, ...this.#parts(state)]);
      if (rowCount === 1) return;
    }
  }

  /**
   * Runs `fn` in one transaction that holds the state's lock. Without a held lock the lock is transaction-scoped
   * (it cannot outlive a crash, and it works behind PgBouncer transaction pooling):
   * - seed: the lock row is inserted inside the transaction and deleted before commit; concurrent writers queue
   *   on the row, a live committed row (another holder) means retry, an expired one is taken over;
   * - plugin/systemdb: `pg_advisory_xact_lock` with the upstream plugin's key (excludes its session locks too).
   */
  async #critical<T>(stateId: string, lock: MeltanoLock | undefined, fn: Critical<T>): Promise<T> {
    if (lock) return this.#underHeldLock(stateId, lock, fn);
    const deadline = Date.now() + this.lockWaitSeconds * 1000;
    for (let attempt = 0; ; attempt++) {
      let outcome: { held: true; result: T } | { held: false };
      try {
        outcome = await withTransaction(this.#pool, async (client) => {
          const waitMs = Math.max(1, deadline - Date.now());
          await client.query(`SET LOCAL lock_timeout = ${Math.round(waitMs)}`);
          if (this.config.locksTable) {
            const { rowCount } = await client.query(lockRowUpsert(this.config.locksTable), [
              stateId,
              'pgstate:txn',
              this.lockTimeoutSeconds,
            ]);
            // Another live holder: nothing was written, so committing this empty transaction is a rollback.
            if (rowCount !== 1) return { held: false };
          } else {
            await client.query('SELECT pg_advisory_xact_lock($1::int8)', [advisoryLockKey(stateId).toString()]);
          }
          await client.query('SET LOCAL lock_timeout = 0');
          const result = await fn(client);
          if (this.config.locksTable) {
            await client.query(`DELETE FROM ${this.config.locksTable} WHERE state_id = $1`, [stateId]);
          }
          return { held: true, result };
        });
      } catch (error) {
        if (pgErrorKind(error) === 'lock-not-available') throw lockTimeoutError(stateId, this.lockWaitSeconds, error);
        throw error;
      }
      if (outcome.held) return outcome.result;
      if (Date.now() >= deadline) throw lockTimeoutError(stateId, this.lockWaitSeconds);
      await sleep(Math.min(backoff(attempt, this.lockRetrySeconds * 1000), Math.max(0, deadline - Date.now())));
    }
  }

  async #underHeldLock<T>(stateId: string, lock: MeltanoLock, fn: Critical<T>): Promise<T> {
    if (lock.stateId !== stateId) {
      throw new PgStateError('INVALID_INPUT', `The lock passed is for "${lock.stateId}", not "${stateId}".`, {
        fix: 'Pass the lock acquired for this state id.',
      });
    }
    if (lock.lost) throw lockLostError(stateId, 'it expired or its connection closed');
    return withTransaction(this.#pool, async (client) => {
      if (lock instanceof AdvisoryLock) await lock.verify(client);
      if (lock instanceof RowLock) {
        // Fencing: the row is locked until commit, so nobody can take it over between this check and the write.
        const { rowCount } = await client.query(
          `SELECT 1 FROM ${this.config.locksTable} WHERE state_id = $1 AND lock_id = $2 AND expires_at > now() FOR UPDATE`,
          [stateId, lock.lockId],
        );
        if (rowCount !== 1) throw lockLostError(stateId, 'its lock row expired and was taken over');
      }
      return fn(client);
    });
  }
}

interface StateSql {
  read: string;
  readVersion: string;
  readForUpdate: string;
  upsert: string;
  insertIfAbsent: string;
  mergeLocked: string;
  guardedReplace: string;
  guardedUpsert: string;
  guardedInsertIfAbsent: string;
  guardedMergeIfVersion: string;
}

/**
 * The statements on one state table: `$1` the state id, `$2` the partial part, `$3` the completed part (or, for a
 * merge, the row version `xmin` it expects), `$4` the advisory key of the plugin/systemdb guard. `$1::text` so the
 * id has one type in SELECT lists and WHERE clauses; the parts stay untyped, so json/varchar columns work too.
 */
function stateSql(table: string, locksTable: string | undefined): StateSql {
  const columns = 'partial_state, completed_state, updated_at';
  const onConflict = `ON CONFLICT (state_id) DO UPDATE SET partial_state = EXCLUDED.partial_state,
    completed_state = EXCLUDED.completed_state, updated_at = EXCLUDED.updated_at`;
  // Nobody holds the lock, checked in the statement itself. seed: no lock row at all (a live one is a holder; an
  // expired one is left to the locked path, which takes it over and removes it); plugin/systemdb: the upstream key
  // is free now and stays ours until this statement's transaction ends, so a Python session lock is respected both
  // ways.
  const free = locksTable ? 'EXISTS (SELECT FROM lk)' : 'pg_try_advisory_xact_lock($4::int8)';
  const lk = locksTable ? `WITH lk AS (${lockRowUpsert(locksTable, '$1::text', '$4', '$5')}) ` : '';
  const insert = `INSERT INTO ${table} (state_id, ${columns}) SELECT $1::text, $2, $3, now()`;
  const mergeSet = `UPDATE ${table} SET partial_state = $2, updated_at = now() WHERE state_id = $1::text`;
  return {
    read: `SELECT ${columns} FROM ${table} WHERE state_id = $1::text`,
    readVersion: `SELECT partial_state, completed_state, xmin::text AS version FROM ${table} WHERE state_id = $1::text`,
    readForUpdate: `SELECT partial_state, completed_state FROM ${table} WHERE state_id = $1::text FOR UPDATE`,
    upsert: `${insert} ${onConflict}`,
    insertIfAbsent: `${insert} ON CONFLICT (state_id) DO NOTHING`,
    mergeLocked: mergeSet,
    // An UPDATE first: its guard costs less to plan than the upsert's; the upsert is for new state ids.
    guardedReplace: `${lk}UPDATE ${table} SET partial_state = $2, completed_state = $3, updated_at = now()
      WHERE state_id = $1::text AND ${free}`,
    guardedUpsert: `${lk}${insert} WHERE ${free} ${onConflict}`,
    guardedInsertIfAbsent: `${lk}${insert} WHERE ${free} ON CONFLICT (state_id) DO NOTHING RETURNING xmin::text AS version`,
    guardedMergeIfVersion: `${lk}${mergeSet} AND xmin = $3::xid AND ${free} RETURNING xmin::text AS version`,
  };
}

/**
 * `list`'s SQL. `state_id COLLATE "C"` matches the layouts' `<table>_state_id_c_idx` index, so a pattern with a
 * literal prefix (`dev:*`) is an index range scan whatever the database collation, and the order is byte order.
 */
export function listQuery(
  stateTable: string,
  pattern?: string,
  layout: MeltanoLayoutInput = 'pgstate',
): pg.QueryConfig {
  const { like, matchesAll } = globToLike(pattern, layout);
  if (matchesAll) return { text: `SELECT state_id FROM ${stateTable} ORDER BY state_id COLLATE "C"`, values: [] };
  return {
    text: `SELECT state_id FROM ${stateTable} WHERE state_id COLLATE "C" LIKE $1 ESCAPE '\\' ORDER BY state_id COLLATE "C"`,
    values: [like],
  };
}

function toView(stateId: string, row: Row): MeltanoStateView {
  const completed = readStoredPart(row.completed_state, stateId, 'completed_state');
  const partial = readStoredPart(row.partial_state, stateId, 'partial_state');
  return { stateId, completed, partial, merged: mergedView({ completed, partial }), updatedAt: row.updated_at };
}

function positive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new PgStateError('BAD_SETTING', `${name} must be a positive number of seconds, not ${value}.`, {
      fix: `Set ${name} to e.g. 10.`,
    });
  }
  return value;
}
