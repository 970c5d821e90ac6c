import type { PgStateErrorCode } from '@pgstate/core';

/**
 * Exit codes of every pgstate command. Scripts rely on these: never renumber one.
 * Documented in the package README.
 */
export const EXIT = {
  /** Success (doctor: no check failed; warnings still exit 0). */
  OK: 0,
  /** The command failed, or a check failed (doctor, `migrate --dry-run` with pending migrations is NOT a failure). */
  FAILURE: 1,
  /** Usage error: unknown command or option, bad option value, invalid setting or identifier. */
  USAGE: 2,
  /** Could not connect: server unreachable, authentication failed, TLS required or failed, database missing. */
  CONNECTION: 3,
  /** Connected, but the role lacks a privilege the command needs. */
  PERMISSION: 4,
  /** The schema is not migrated (run `pgstate migrate`). */
  MIGRATIONS_PENDING: 5,
  /** A lock could not be taken in time, or a concurrent writer won (conflict / precondition failed). */
  CONFLICT: 6,
  /** Interrupted (Ctrl-C / SIGINT). */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit code for an error code; unknown codes are plain failures. */
export function exitCodeFor(code: PgStateErrorCode | string): ExitCode {
  switch (code) {
    case 'BAD_SETTING':
    case 'INVALID_IDENTIFIER':
    case 'INVALID_INPUT':
    case 'USAGE':
      return EXIT.USAGE;
    case 'UNREACHABLE':
    case 'AUTH_FAILED':
    case 'TLS_REQUIRED':
    case 'TLS_FAILED':
    case 'DATABASE_MISSING':
      return EXIT.CONNECTION;
    case 'PERMISSION_DENIED':
      return EXIT.PERMISSION;
    case 'MIGRATIONS_PENDING':
      return EXIT.MIGRATIONS_PENDING;
    case 'LOCK_TIMEOUT':
    case 'LOCK_LOST':
    case 'CONFLICT':
    case 'PRECONDITION_FAILED':
      return EXIT.CONFLICT;
    default:
      return EXIT.FAILURE;
  }
}
