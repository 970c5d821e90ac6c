/**
 * What a PostgreSQL error means to a caller deciding what to do next: retry the transaction, retry later, report a
 * conflict, or tell the user to migrate / grant. The one place pgstate reads SQLSTATEs for that; connection loss is
 * `isConnectionLoss`'s job (it also knows Node's socket errors and pg's own wording).
 */
import pg from 'pg';
import { isConnectionLoss } from './connection-errors.js';

export type PgErrorKind =
  /** The connection went away or could not be made (socket errors, 08xxx, 57P01-57P03, 53300). */
  | 'connection-lost'
  /** 40001: the transaction lost a race under REPEATABLE READ / SERIALIZABLE; run it again. */
  | 'serialization-failure'
  /** 40P01: the server aborted one side of a deadlock; run it again. */
  | 'deadlock'
  /** 55P03: lock_timeout expired or NOWAIT found the lock taken. */
  | 'lock-not-available'
  /** 25006: a write in a read-only transaction, e.g. on a standby or a primary being demoted during failover. */
  | 'read-only-transaction'
  /** 53xxx other than 53300: out of disk, memory or another server resource. */
  | 'insufficient-resources'
  /** 57014: statement_timeout or a cancel request. */
  | 'query-canceled'
  /** 23505 */
  | 'unique-violation'
  /** 23503 */
  | 'foreign-key-violation'
  /** 42P01: a table is missing (usually: migrations not applied). */
  | 'undefined-table'
  /** 42703: a column is missing (migrations not applied, or a table of another layout). */
  | 'undefined-column'
  /** 42501 */
  | 'insufficient-privilege'
  /** Anything else, including errors that did not come from PostgreSQL. */
  | 'other';

const BY_SQLSTATE: Readonly<Record<string, PgErrorKind>> = {
  '40001': 'serialization-failure',
  '40P01': 'deadlock',
  '55P03': 'lock-not-available',
  '25006': 'read-only-transaction',
  '57014': 'query-canceled',
  '23505': 'unique-violation',
  '23503': 'foreign-key-violation',
  '42P01': 'undefined-table',
  '42703': 'undefined-column',
  '42501': 'insufficient-privilege',
};

/**
 * The SQLSTATE of a server error, also when it is the cause (at any depth) of another error, e.g. of a PgStateError.
 * Only errors that came from the server count (pg's DatabaseError, or a scrubbed copy of one, which keeps
 * `severity`): Node's own codes such as `EPIPE` have the same shape.
 */
export function sqlStateOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current !== null && typeof current === 'object'; depth++) {
    const e = current as { code?: unknown; severity?: unknown; cause?: unknown };
    const fromServer = current instanceof pg.DatabaseError || typeof e.severity === 'string';
    if (fromServer && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code;
    current = e.cause;
  }
  return undefined;
}

/** Classifies an error; see `PgErrorKind`. */
export function pgErrorKind(error: unknown): PgErrorKind {
  if (isConnectionLoss(error)) return 'connection-lost';
  const state = sqlStateOf(error);
  if (state === undefined) return 'other';
  const known = BY_SQLSTATE[state];
  if (known !== undefined) return known;
  if (state.startsWith('53')) return 'insufficient-resources';
  return 'other';
}

/** Serialization failure or deadlock: the server rolled the transaction back, and running it again may succeed. */
export function isRetryableTransactionError(error: unknown): boolean {
  const kind = pgErrorKind(error);
  return kind === 'serialization-failure' || kind === 'deadlock';
}

const TRANSIENT = new Set<PgErrorKind>([
  'connection-lost',
  'serialization-failure',
  'deadlock',
  'lock-not-available',
  'read-only-transaction',
  'insufficient-resources',
]);

/**
 * True when the same request may succeed if the client tries again a little later (what an HTTP service answers
 * with 503): the connection was lost, the transaction lost a race, a lock was busy, the server is short of
 * resources or is (during a failover) read-only. False for errors that will repeat, such as a missing table.
 */
export function isTransientError(error: unknown): boolean {
  return TRANSIENT.has(pgErrorKind(error));
}
