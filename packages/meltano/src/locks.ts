/**
 * Per-state locks.
 *
 * - seed layout: rows in `meltano_state_locks` (what the Python seed plugin and the S3 handler's lock files use).
 *   A committed row carries `expires_at`; a holder renews it while alive, so a dead holder's row is taken over
 *   once it expires. Rows without `expires_at` (written by the Python plugin) count as stale after its 5 minutes.
 *   Every step is one statement, so it works behind PgBouncer in transaction mode.
 * - plugin / systemdb layouts: the upstream plugin's session advisory lock (key and lock from `@pgstate/core`).
 */
import { randomUUID } from 'node:crypto';
import {
  acquireAdvisoryLock as acquireSessionLock,
  advisoryLockKey,
  connectClient,
  isPgStateError,
  PgStateError,
  type AdvisoryLock as SessionLock,
  settingsOf,
  toPgStateError,
  withTransaction,
} from '@pgstate/core';
import pg from 'pg';

const { escapeLiteral } = pg;

export interface LockOptions {
  /** Upper bound between two attempts (Meltano's `lock_retry_seconds`, default 1). Attempts back off from 10 ms. */
  retrySeconds?: number;
  /** Give up after this long with LOCK_TIMEOUT (default 30, like the upstream plugin). */
  timeoutSeconds?: number;
}

/** A held lock. `await using lock = await store.acquireLock(id)` releases it at the end of the block. */
export interface MeltanoLock extends AsyncDisposable {
  readonly stateId: string;
  readonly kind: 'row' | 'advisory';
  /** True once the lock is known lost (renewal found the row taken over, or the connection died). */
  readonly lost: boolean;
  release(): Promise<void>;
}

/**
 * SQL: is the existing lock row `l` free to take over? `expires_at` is absolute time: pgstate sets it, and since
 * migration 0002 its column default gives a Python seed-plugin row the plugin's 5 minutes. `locked_at` alone can't
 * be trusted: it is a wall-clock time in the writer's session time zone, which nobody else knows, and PostgreSQL
 * accepts zones up to 167 hours from UTC. So a row without `expires_at` (possible only if someone wrote NULL) is
 * stale only once it is older than 5 minutes in every such zone.
 */
export function expiredCondition(alias: string): string {
  return `(${alias}.expires_at < now() OR (${alias}.expires_at IS NULL AND ${alias}.locked_at < (now() AT TIME ZONE 'UTC') - ${NULL_EXPIRY_STALE_AFTER}))`;
}

/** 167 hours (the widest UTC offset PostgreSQL accepts) + 1 hour of margin + the plugin's 5 minutes. */
export const NULL_EXPIRY_STALE_AFTER = "interval '168 hours 5 minutes'";

/**
 * Takes the lock row of a state (`id`, `lockId`, lifetime in seconds: parameter placeholders), or takes over an
 * expired one; returns the row only when the lock was taken. `INSERT ... ON CONFLICT` sees the newest committed
 * row and waits for an uncommitted one, so it can't miss a holder that committed a moment ago.
 */
export function lockRowUpsert(locksTable: string, id = '$1', lockId = '$2', seconds = '$3'): string {
  return `INSERT INTO ${locksTable} AS l (state_id, locked_at, lock_id, expires_at)
    VALUES (${id}, LOCALTIMESTAMP, ${lockId}, now() + make_interval(secs => ${seconds}))
    ON CONFLICT (state_id) DO UPDATE
      SET locked_at = EXCLUDED.locked_at, lock_id = EXCLUDED.lock_id, expires_at = EXCLUDED.expires_at
      WHERE ${expiredCondition('l')}
    RETURNING lock_id`;
}

/** The lock id and lifetime parameters of `lockRowUpsert`, as text. */
export function lockRowUpsertValues(lockId: string, lifetimeSeconds: number): [string, string] {
  return [lockId, String(lifetimeSeconds)];
}

/**
 * `$n` placeholders of `text` replaced by escaped literals of `values` (SQL NULL for null), for a multi-statement
 * simple query. One pass over the template, so a value that contains `$1` stays as it is.
 */
export function inlineParams(text: string, values: readonly (string | null)[]): string {
  return text.replace(/\$(\d+)/g, (match, n: string) => {
    const index = Number(n) - 1;
    if (index < 0 || index >= values.length) throw new Error(`no value for ${match}`);
    const value = values[index];
    return value === null || value === undefined ? 'NULL' : escapeLiteral(value);
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Jittered exponential backoff from 10 ms up to `maxMs`. */
export function backoff(attempt: number, maxMs: number): number {
  const base = Math.min(maxMs, 10 * 2 ** Math.min(attempt, 16));
  return base / 2 + Math.random() * (base / 2);
}

export function lockTimeoutError(stateId: string, seconds: number, cause?: unknown): PgStateError {
  return new PgStateError('LOCK_TIMEOUT', `Could not acquire the lock for state "${stateId}" within ${seconds} s.`, {
    fix: 'Another Meltano run (or pgstate) is writing this state; retry later, or raise the timeout.',
    cause,
  });
}

export function lockLostError(stateId: string, why: string): PgStateError {
  return new PgStateError('LOCK_LOST', `The lock for state "${stateId}" was lost: ${why}.`, {
    fix: 'Nothing was written. Retry; if it happens often, raise lock_timeout_seconds.',
  });
}

export interface RowLockContext {
  pool: pg.Pool;
  locksTable: string;
  lockTimeoutSeconds: number;
}

/** A committed lock row with expiry, renewed every third of the timeout while held. */
export async function acquireRowLock(ctx: RowLockContext, stateId: string, options: LockOptions): Promise<RowLock> {
  const lockId = `pgstate:${randomUUID()}`;
  const timeoutSeconds = options.timeoutSeconds ?? 30;
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (let attempt = 0; ; attempt++) {
    const { rowCount } = await ctx.pool.query(lockRowUpsert(ctx.locksTable), [stateId, lockId, ctx.lockTimeoutSeconds]);
    if (rowCount === 1) return new RowLock(ctx, stateId, lockId);
    if (Date.now() >= deadline) throw lockTimeoutError(stateId, timeoutSeconds);
    await sleep(Math.min(backoff(attempt, (options.retrySeconds ?? 1) * 1000), Math.max(0, deadline - Date.now())));
  }
}

export class RowLock implements MeltanoLock {
  readonly kind = 'row';
  #lost = false;
  #released = false;
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly ctx: RowLockContext,
    readonly stateId: string,
    readonly lockId: string,
  ) {
    // Renewal keeps a live holder's row from expiring; it also bumps locked_at so the Python plugin's 5-minute
    // stale cleanup never removes a live pgstate lock.
    this.#timer = setInterval(() => void this.renew(), Math.max(250, (ctx.lockTimeoutSeconds * 1000) / 3));
    this.#timer.unref();
  }

  get lost(): boolean {
    return this.#lost;
  }

  async renew(): Promise<void> {
    if (this.#released || this.#lost) return;
    try {
      const { rowCount } = await this.ctx.pool.query(
        `UPDATE ${this.ctx.locksTable} SET expires_at = now() + make_interval(secs => $3), locked_at = LOCALTIMESTAMP
         WHERE state_id = $1 AND lock_id = $2`,
        [this.stateId, this.lockId, this.ctx.lockTimeoutSeconds],
      );
      if (rowCount === 0) this.#lost = true;
    } catch {
      // A failed renewal is retried on the next tick; the row only expires after the full timeout.
    }
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#timer);
    await this.ctx.pool.query(`DELETE FROM ${this.ctx.locksTable} WHERE state_id = $1 AND lock_id = $2`, [
      this.stateId,
      this.lockId,
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/** Which backend holds the granted session/transaction advisory lock on this int8 key (pg_locks splits it in two). */
const ADVISORY_HOLDER_SQL = `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
    AND classid::int8 = (($1::int8 >> 32) & 4294967295) AND objid::int8 = ($1::int8 & 4294967295)`;

function needsSessionPooling(): PgStateError {
  return new PgStateError(
    'BAD_SETTING',
    'The plugin/systemdb layouts hold session advisory locks, but this connection goes through a transaction-mode pooler (e.g. PgBouncer pool_mode=transaction).',
    {
      fix: 'Connect those layouts directly or through a session-mode pool, or use the pgstate layout (its lock table works behind transaction pooling).',
    },
  );
}

/** Two sessions of our own: dedicated connections when the pool came from `createPool`, else pooled ones. */
async function session(pool: pg.Pool): Promise<{ client: pg.ClientBase; close: () => Promise<void> }> {
  const settings = settingsOf(pool);
  if (settings) {
    const client = await connectClient(settings);
    return { client, close: () => client.end().catch(() => {}) };
  }
  const client = await pool.connect().catch((error: unknown) => {
    throw toPgStateError(error);
  });
  return { client, close: async () => client.release(true) };
}

/**
 * Detects transaction-mode pooling: with a direct or session-pooled connection the backend pid never changes, and
 * another connection never shares it. Behind transaction pooling, the other connection's open transaction takes the
 * backend we just used (poolers hand back the most recently used one), so one of the two checks trips.
 */
export async function detectTransactionPooling(pool: pg.Pool): Promise<boolean> {
  const pid = async (c: pg.ClientBase) =>
    (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
  const a = await session(pool);
  try {
    const b = await session(pool);
    try {
      const first = await pid(a.client);
      return await withTransaction(b.client, async (inside) => {
        const otherPid = await pid(inside);
        const second = await pid(a.client);
        return otherPid === first || second !== first;
      });
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

export interface AdvisoryLockContext {
  pool: pg.Pool;
  /** Cached pooling check (one probe per store). */
  poolingChecked: { value: Promise<boolean> | undefined };
}

/**
 * The upstream plugin's session lock (`advisoryLockKey(stateId)`), taken with `@pgstate/core`'s
 * `acquireAdvisoryLock` on a connection of its own, polling every `retrySeconds` like the plugin. The holder's
 * backend pid is recorded so each write under the lock can check, in its own transaction, that it still holds.
 */
export async function acquireAdvisoryLock(
  ctx: AdvisoryLockContext,
  stateId: string,
  options: LockOptions,
): Promise<AdvisoryLock> {
  const key = advisoryLockKey(stateId);
  const timeoutSeconds = options.timeoutSeconds ?? 30;
  ctx.poolingChecked.value ??= detectTransactionPooling(ctx.pool).catch((error: unknown) => {
    ctx.poolingChecked.value = undefined; // a failed probe (server down) is retried next time
    throw error;
  });
  if (await ctx.poolingChecked.value) throw needsSessionPooling();
  let held: SessionLock;
  try {
    held = await acquireSessionLock(ctx.pool, key, {
      timeoutMs: timeoutSeconds * 1000,
      retryMs: Math.max(10, (options.retrySeconds ?? 1) * 1000),
    });
  } catch (error) {
    if (isPgStateError(error) && error.code === 'LOCK_TIMEOUT') throw lockTimeoutError(stateId, timeoutSeconds, error);
    throw error;
  }
  try {
    const { rows } = await ctx.pool.query<{ pid: number }>(ADVISORY_HOLDER_SQL, [key.toString()]);
    const pid = rows[0]?.pid;
    if (pid === undefined) throw needsSessionPooling(); // granted, yet nobody holds it: the session is not ours
    return new AdvisoryLock(held, stateId, pid);
  } catch (error) {
    await held.release().catch(() => {});
    throw error;
  }
}

export class AdvisoryLock implements MeltanoLock {
  readonly kind = 'advisory';
  #released = false;

  constructor(
    readonly held: SessionLock,
    readonly stateId: string,
    /** Backend pid of the session holding the lock. */
    readonly holderPid: number,
  ) {}

  get key(): bigint {
    return this.held.key;
  }

  get lost(): boolean {
    return !this.#released && this.held.lost;
  }

  /**
   * Fencing for a write under this lock: run inside the write's transaction, it checks that the recorded session
   * still holds the key (a dead connection's lock is gone, and someone else may hold it now). Throws LOCK_LOST.
   */
  async verify(client: pg.ClientBase): Promise<void> {
    if (this.#released) throw lockLostError(this.stateId, 'it was already released');
    if (this.held.lost) throw lockLostError(this.stateId, 'its connection was closed');
    const { rows } = await client.query<{ pid: number }>(ADVISORY_HOLDER_SQL, [this.key.toString()]);
    if (rows[0]?.pid !== this.holderPid) throw lockLostError(this.stateId, 'the advisory lock is no longer held');
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.held.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
