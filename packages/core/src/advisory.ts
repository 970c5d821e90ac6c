/**
 * Session advisory locks, for interoperating with host tools that use them (Meltano's PostgreSQL state plugin).
 * A session lock belongs to a connection, so it is held on a dedicated connection for as long as the lock lives;
 * behind PgBouncer in transaction mode session locks do not work at all (use lease locks there).
 *
 * With several hosts the lock connection always goes to the primary (a standby has its own lock table). When that
 * connection drops -- the primary failed, or its backend was killed -- the server has released the lock: `lost` turns
 * true and `signal` aborts at once, and `verify()` asks the server, so a holder never goes on believing it holds a
 * lock that someone on the new primary may have taken.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { connectClient, settingsOf } from './client.js';
import { toPgStateError } from './connection-errors.js';
import { PgStateError } from './errors.js';
import { type ConnectionSettings, onPrimary } from './settings.js';

/** Meltano's key: the first 8 bytes of MD5(text) as a big-endian signed 64-bit integer. */
export function advisoryLockKey(text: string): bigint {
  return createHash('md5').update(text, 'utf8').digest().readBigInt64BE(0);
}

export interface AdvisoryLock extends AsyncDisposable {
  readonly key: bigint;
  /** True once the connection holding the lock dropped (the server released the lock then). */
  readonly lost: boolean;
  /** Aborted (with a LOCK_LOST PgStateError as reason) as soon as the lock is known to be lost. */
  readonly signal: AbortSignal;
  /**
   * Asks the server on the lock's own connection whether it still holds the lock; throws LOCK_LOST (and marks the
   * lock lost) when it does not or cannot answer. Call it before work the lock protects.
   */
  verify(): Promise<void>;
  release(): Promise<void>;
}

export interface AdvisoryLockOptions {
  /** Give up with LOCK_TIMEOUT after this long (default 30 s; 0 = try once). */
  timeoutMs?: number;
  /** Pause between attempts (default 250 ms). */
  retryMs?: number;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Takes `pg_advisory_lock(key)` on a connection of its own. With a pool from `createPool` the connection is opened
 * with the pool's settings (outside the pool); with another pool a client is checked out and destroyed afterwards.
 */
export async function acquireAdvisoryLock(
  source: ConnectionSettings | pg.Pool,
  key: bigint,
  options: AdvisoryLockOptions = {},
): Promise<AdvisoryLock> {
  if (typeof key !== 'bigint' || key < INT64_MIN || key > INT64_MAX) {
    throw new PgStateError('INVALID_INPUT', 'An advisory lock key must be a signed 64-bit bigint.', {
      fix: 'Use advisoryLockKey(text) to derive one.',
    });
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  const retryMs = options.retryMs ?? 250;
  const settings = source instanceof pg.Pool ? settingsOf(source) : source;
  let client: pg.ClientBase;
  let close: () => Promise<void>;
  if (settings) {
    const dedicated = await connectClient(onPrimary(settings));
    client = dedicated;
    close = () => dedicated.end().catch(() => {});
  } else {
    const pooled = await (source as pg.Pool).connect().catch((error: unknown) => {
      throw toPgStateError(error);
    });
    client = pooled;
    // Destroy instead of returning it: the pool must never hand out a connection with our session state.
    close = async () => pooled.release(true);
  }
  const controller = new AbortController();
  const lose = (why: string) => {
    if (controller.signal.aborted) return;
    controller.abort(
      new PgStateError('LOCK_LOST', `The advisory lock ${key} was lost: ${why}.`, {
        fix: 'Stop the work the lock protects: another session may hold it now. Take the lock again and start over.',
      }),
    );
  };
  client.on('error', () => lose('its connection failed'));
  client.on('end', () => lose('its connection was closed'));
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [
        key.toString(),
      ]);
      if (rows[0]?.ok) break;
      if (Date.now() + retryMs > deadline) {
        throw new PgStateError('LOCK_TIMEOUT', `The advisory lock ${key} is held by another session.`, {
          fix: "Wait for the other process to finish (SELECT pid, application_name FROM pg_locks JOIN pg_stat_activity USING (pid) WHERE locktype = 'advisory' shows it).",
        });
      }
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  } catch (error) {
    await close();
    throw error instanceof PgStateError ? error : toPgStateError(error, settings);
  }
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    try {
      if (!controller.signal.aborted) await client.query('SELECT pg_advisory_unlock($1::bigint)', [key.toString()]);
    } finally {
      await close();
    }
  };
  const verify = async () => {
    if (released) {
      throw new PgStateError('LOCK_LOST', `The advisory lock ${key} was already released.`, {
        fix: 'Take the lock again before the work it protects.',
      });
    }
    if (!controller.signal.aborted) {
      // pg_locks shows a bigint key as classid (high 32 bits) and objid (low 32 bits) with objsubid 1.
      const held = await client
        .query<{ held: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
                     AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = $1::bigint) AS held`,
          [key.toString()],
        )
        .then(
          (r) => r.rows[0]?.held === true,
          () => false,
        );
      if (!held) lose('the server no longer holds it for this session');
    }
    if (controller.signal.aborted) throw controller.signal.reason;
  };
  return {
    key,
    get lost() {
      return controller.signal.aborted;
    },
    signal: controller.signal,
    verify,
    release,
    [Symbol.asyncDispose]: release,
  };
}
