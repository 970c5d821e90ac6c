/** Stable error codes. Users and scripts match on these; never rename one. */
export type PgStateErrorCode =
  | 'BAD_SETTING'
  | 'UNREACHABLE'
  | 'AUTH_FAILED'
  | 'TLS_REQUIRED'
  | 'TLS_FAILED'
  | 'DATABASE_MISSING'
  | 'PERMISSION_DENIED'
  | 'INVALID_IDENTIFIER'
  | 'MIGRATIONS_PENDING'
  | 'LOCK_TIMEOUT'
  | 'LOCK_LOST'
  | 'NOT_FOUND'
  | 'PRECONDITION_FAILED'
  | 'INVALID_INPUT'
  | 'CONFLICT'
  | 'QUERY_FAILED';

/** The one error type users see from pgstate. `fix` says what to do about it. */
export class PgStateError extends Error {
  readonly code: PgStateErrorCode;
  readonly fix: string | undefined;

  constructor(code: PgStateErrorCode, message: string, options: { fix?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PgStateError';
    this.code = code;
    this.fix = options.fix;
  }

  override toString(): string {
    return `${this.name} [${this.code}]: ${this.message}${this.fix ? ` (fix: ${this.fix})` : ''}`;
  }
}

export function isPgStateError(error: unknown, code?: PgStateErrorCode): error is PgStateError {
  return error instanceof PgStateError && (code === undefined || error.code === code);
}
