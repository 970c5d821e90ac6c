/**
 * Per-state locks.
 *
 * - seed layout: rows in `meltano_state_locks` (what the Python seed plugin and the S3 handler's lock files use).
 *   A committed row carries `expires_at`; a holder renews it while alive, so a dead holder's row is taken over
 *   once it expires. Rows without `expires_at` (written by the Python plugin) count as stale after its 5 minutes.
 *   Every step is one statement, so it works behind PgBouncer in transaction mode.
 * - plugin / systemdb layouts: the upstream plugin's session advisory lock, on a dedicated connection.
 */
import { randomUUID } from 'node:crypto';
import { PgStateError } from '@pgstate/core';
import pg from 'pg';
import { meltanoAdvisoryKey } from './advisory.js';

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

/** SQL: is the existing lock row `l` free to take over? */
export function expiredCondition(alias: string): string {
  return `(${alias}.expires_at < now() OR (${alias}.expires_at IS NULL AND ${alias}.locked_at < LOCALTIMESTAMP - interval '5 minutes'))`;
}

export function lockRowUpsert(locksTable: string): string {
  return `INSERT INTO ${locksTable} AS l (state_id, locked_at, lock_id, expires_at)
    VALUES ($1, LOCALTIMESTAMP, $2, now() + make_interval(secs => $3))
    ON CONFLICT (state_id) DO UPDATE
      SET locked_at = EXCLUDED.locked_at, lock_id = EXCLUDED.lock_id, expires_at = EXCLUDED.expires_at
      WHERE ${expiredCondition('l')}
    RETURNING lock_id`;
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

/** Does this advisory key belong to a lock this backend holds? (pg_locks splits the int8 key in two oids.) */
export const HOLDS_ADVISORY_SQL = `SELECT EXISTS (
  SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() AND objsubid = 1
    AND classid::int8 = (($1::int8 >> 32) & 4294967295) AND objid::int8 = ($1::int8 & 4294967295)) AS held`;

function needsSessionPooling(): PgStateError {
  return new PgStateError(
    'BAD_SETTING',
    'The plugin/systemdb layouts hold session advisory locks, but this connection goes through a transaction-mode pooler (e.g. PgBouncer pool_mode=transaction).',
    {
      fix: 'Connect those layouts directly or through a session-mode pool, or use the seed layout (its lock table works behind transaction pooling).',
    },
  );
}

/**
 * Detects transaction-mode pooling: with a direct or session-pooled connection the backend pid never changes, and
 * another connection never shares it. Behind transaction pooling, the other connection's open transaction takes the
 * backend we just used (poolers hand back the most recently used one), so one of the two checks trips.
 */
export async function detectTransactionPooling(config: pg.ClientConfig, client: pg.Client): Promise<boolean> {
  const pid = async (c: pg.Client) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
  const first = await pid(client);
  const other = new pg.Client(config);
  other.on('error', () => {});
  await other.connect();
  try {
    await other.query('BEGIN');
    const otherPid = await pid(other);
    const second = await pid(client);
    await other.query('COMMIT');
    return otherPid === first || second !== first;
  } finally {
    await other.end().catch(() => {});
  }
}

export interface AdvisoryLockContext {
  clientConfig: pg.ClientConfig;
  /** Cached pooling check (one probe per store). */
  poolingChecked: { value: Promise<boolean> | undefined };
}

export async function acquireAdvisoryLock(
  ctx: AdvisoryLockContext,
  stateId: string,
  options: LockOptions,
): Promise<AdvisoryLock> {
  const key = meltanoAdvisoryKey(stateId).toString();
  const timeoutSeconds = options.timeoutSeconds ?? 30;
  const client = new pg.Client(ctx.clientConfig);
  const lock = new AdvisoryLock(client, stateId, key);
  client.on('error', () => lock.markLost());
  client.on('end', () => lock.markLost());
  await client.connect();
  try {
    ctx.poolingChecked.value ??= detectTransactionPooling(ctx.clientConfig, client);
    if (await ctx.poolingChecked.value) throw needsSessionPooling();
    // Waiting in the server's lock queue is fair and needs no polling; lock_timeout bounds it.
    await client.query(`SET lock_timeout = ${Math.max(1, Math.round(timeoutSeconds * 1000))}`);
    try {
      await client.query('SELECT pg_advisory_lock($1::int8)', [key]);
    } catch (error) {
      if ((error as { code?: string }).code === '55P03') throw lockTimeoutError(stateId, timeoutSeconds, error);
      throw error;
    }
    await client.query('RESET lock_timeout');
    const { rows } = await client.query<{ held: boolean }>(HOLDS_ADVISORY_SQL, [key]);
    if (rows[0]?.held !== true) throw needsSessionPooling();
    return lock;
  } catch (error) {
    await client.end().catch(() => {});
    throw error;
  }
}

export class AdvisoryLock implements MeltanoLock {
  readonly kind = 'advisory';
  #lost = false;
  #released = false;

  constructor(
    readonly client: pg.Client,
    readonly stateId: string,
    readonly key: string,
  ) {}

  get lost(): boolean {
    return this.#lost;
  }

  markLost(): void {
    if (!this.#released) this.#lost = true;
  }

  /** Checks on the holding connection that the lock is still ours; throws LOCK_LOST otherwise. */
  async verify(): Promise<void> {
    if (this.#released) throw lockLostError(this.stateId, 'it was already released');
    if (this.#lost) throw lockLostError(this.stateId, 'its connection was closed');
    const { rows } = await this.client.query<{ held: boolean }>(HOLDS_ADVISORY_SQL, [this.key]);
    if (rows[0]?.held !== true) throw lockLostError(this.stateId, 'the advisory lock is no longer held');
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    try {
      if (!this.#lost) await this.client.query('SELECT pg_advisory_unlock($1::int8)', [this.key]);
    } finally {
      // Closing the session releases the lock even if the unlock failed.
      await this.client.end().catch(() => {});
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
