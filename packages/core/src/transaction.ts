/**
 * One way to run a transaction. BEGIN carries every option in the one statement (no SET outside the transaction), so
 * it behaves the same behind PgBouncer in transaction mode. A pooled connection whose COMMIT or ROLLBACK failed, or
 * that was lost, is destroyed instead of going back to the pool: its state is unknown (it may still be inside the
 * transaction, or dead), and the next caller would inherit it.
 */
import pg from 'pg';
import { settingsOf } from './client.js';
import { toPgStateError } from './connection-errors.js';
import { PgStateError } from './errors.js';

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

export interface TransactionOptions {
  /** Default: the server's `default_transaction_isolation` (READ COMMITTED unless changed). */
  isolation?: IsolationLevel;
  /** READ ONLY: the server refuses every write inside (SQLSTATE 25006). */
  readOnly?: boolean;
  /** DEFERRABLE (only with serializable + readOnly): waits for a snapshot that cannot fail serialization. */
  deferrable?: boolean;
}

const ISOLATION: Record<IsolationLevel, string> = {
  'read committed': 'ISOLATION LEVEL READ COMMITTED',
  'repeatable read': 'ISOLATION LEVEL REPEATABLE READ',
  serializable: 'ISOLATION LEVEL SERIALIZABLE',
};

/** The BEGIN statement for these options. */
function beginStatement(options: TransactionOptions = {}): string {
  const parts = ['BEGIN'];
  if (options.isolation !== undefined) {
    const level = ISOLATION[options.isolation];
    if (level === undefined) {
      throw new PgStateError('BAD_SETTING', `Unknown isolation level ${JSON.stringify(options.isolation)}.`, {
        fix: 'Use "read committed", "repeatable read" or "serializable".',
      });
    }
    parts.push(level);
  }
  if (options.readOnly) parts.push('READ ONLY');
  if (options.deferrable) parts.push('DEFERRABLE');
  return parts.join(' ');
}

/**
 * Runs `fn` inside BEGIN .. COMMIT and returns its result; on any error it rolls back and rethrows that error.
 *
 * `source` is a pool, or anything with a pool's `connect()` (a client is checked out for the transaction and
 * released after), or a client the caller owns (a dedicated connection, e.g. one holding a session lock): then the
 * caller releases or ends it, and a failed ROLLBACK / COMMIT is the caller's sign to discard it (the error is
 * rethrown either way).
 *
 * Errors from `fn` and from COMMIT reach the caller unchanged (adapters inspect their SQLSTATE, see `pgErrorKind`);
 * only a failure to check a connection out of the pool becomes a `PgStateError`, as in `withClient`.
 */
export async function withTransaction<T>(
  source: Pick<pg.Pool, 'connect'> | pg.ClientBase,
  fn: (client: pg.ClientBase) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const begin = beginStatement(options);
  if (isClient(source)) return settle(await run(source, begin, fn));
  const client = await source.connect().catch((error: unknown) => {
    throw toPgStateError(error, settingsOf(source as pg.Pool));
  });
  const outcome = await run(client, begin, fn);
  // release(error) makes pg-pool destroy the connection instead of handing it to the next caller.
  client.release(outcome.ok ? undefined : outcome.discard);
  return settle(outcome);
}

/** A connection (a pg.Client, pooled or not) rather than a pool: clients have `connect()` too, for their socket. */
function isClient(source: Pick<pg.Pool, 'connect'> | pg.ClientBase): source is pg.ClientBase {
  return source instanceof pg.Client || 'processID' in source;
}

type Outcome<T> = { ok: true; result: T } | { ok: false; error: unknown; discard?: Error };

function settle<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.result;
  throw outcome.error;
}

async function run<T>(
  client: pg.ClientBase,
  begin: string,
  fn: (client: pg.ClientBase) => Promise<T>,
): Promise<Outcome<T>> {
  try {
    await client.query(begin);
  } catch (error) {
    // BEGIN itself failed: the connection is lost, or in a state we do not know.
    return { ok: false, error, discard: reason(error) };
  }
  let result: T;
  try {
    result = await fn(client);
  } catch (error) {
    try {
      await client.query('ROLLBACK');
      return { ok: false, error };
    } catch (rollbackError) {
      return { ok: false, error, discard: reason(rollbackError) };
    }
  }
  try {
    await client.query('COMMIT');
    return { ok: true, result };
  } catch (error) {
    // COMMIT failed (lost connection, deferred constraint, serialization failure): whether the server ended the
    // transaction is not something to guess about on a connection that is shared afterwards.
    return { ok: false, error, discard: reason(error) };
  }
}

function reason(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
