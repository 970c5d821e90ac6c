/**
 * Turns what `pg`, Node's sockets and TLS throw into a `PgStateError` with a stable code and a one-line fix.
 * Every message and every cause we keep is scrubbed of the password and of URL userinfo: `pg`'s own errors and Node's
 * (e.g. "Invalid URL" errors carry the input) may otherwise echo a connection string.
 */
import pg from 'pg';
import { PgStateError, type PgStateErrorCode } from './errors.js';
import { type ConnectionSettings, describeConnection } from './settings.js';

type Context = Partial<Pick<ConnectionSettings, 'host' | 'port' | 'user' | 'database' | 'password' | 'sslmode'>> & {
  sslKey?: string | undefined;
};

const REDACTED = '[redacted]';

/** Removes the password (raw and percent-encoded), URL userinfo and `password=...` pairs from text. */
export function redactSecrets(text: string, secrets: ReadonlyArray<string | undefined> = []): string {
  let out = text;
  for (const secret of secrets) {
    if (!secret) continue;
    for (const form of new Set([secret, encodeURIComponent(secret)])) out = out.split(form).join(REDACTED);
  }
  return out
    .replace(/([a-z][a-z0-9+.-]*:\/\/)([^\s/?#:@]*):[^\s/?#]*@/gi, `$1$2:${REDACTED}@`)
    .replace(/(password\s*[=:]\s*)('[^']*'|"[^"]*"|[^\s&,;]+)/gi, `$1${REDACTED}`);
}

const COPIED_FIELDS = [
  'code',
  'errno',
  'syscall',
  'address',
  'port',
  'severity',
  'detail',
  'hint',
  'position',
  'where',
  'schema',
  'table',
  'column',
  'dataType',
  'constraint',
  'routine',
] as const;

/** A scrubbed copy of an error (and its cause chain) that is safe to attach as `cause`. */
export function sanitizeError(error: unknown, secrets: ReadonlyArray<string | undefined>, depth = 0): Error {
  const source = (error ?? {}) as Record<string, unknown>;
  const message = error instanceof Error ? error.message : String(error);
  const copy = new Error(redactSecrets(message, secrets));
  copy.name = error instanceof Error ? error.name : 'Error';
  copy.stack = redactSecrets(
    error instanceof Error && typeof error.stack === 'string' ? error.stack : `${copy.name}: ${copy.message}`,
    secrets,
  );
  const target = copy as unknown as Record<string, unknown>;
  for (const field of COPIED_FIELDS) {
    const v = source[field];
    if (v !== undefined) target[field] = typeof v === 'string' ? redactSecrets(v, secrets) : v;
  }
  const cause = source.cause;
  if (cause !== undefined && depth < 5) {
    Object.defineProperty(copy, 'cause', {
      value: sanitizeError(cause, secrets, depth + 1),
      enumerable: false,
      configurable: true,
      writable: true,
    });
  }
  return copy;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOENT',
  'EACCES',
]);

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
]);

/** The first error with a `code` inside an AggregateError (Node reports dual-stack connect failures that way). */
function innermost(error: unknown): Record<string, unknown> {
  const e = (error ?? {}) as Record<string, unknown>;
  if (e.code === undefined && Array.isArray(e.errors)) {
    const inner = (e.errors as unknown[]).find((x) => (x as Record<string, unknown>)?.code !== undefined);
    if (inner) return inner as Record<string, unknown>;
  }
  return e;
}

interface Classified {
  code: PgStateErrorCode;
  message: string;
  fix: string;
}

function classify(error: unknown, ctx: Context): Classified | undefined {
  const where = ctx.host !== undefined ? describeConnection(ctx as Required<Context>) : 'the server';
  const user = ctx.user ?? 'the user';
  const e = innermost(error);
  const message = typeof e.message === 'string' ? e.message : error instanceof Error ? error.message : String(error);
  const code = typeof e.code === 'string' ? e.code : undefined;

  if (error instanceof pg.DatabaseError && code) {
    const server = error.message;
    switch (true) {
      case code === '28P01':
        return {
          code: 'AUTH_FAILED',
          message: `Password authentication failed for user "${user}" at ${where}.`,
          fix: 'Check the password (password field, URL, PGPASSWORD, secret document or ~/.pgpass) and the user name.',
        };
      case code === '28000' && /no encryption/i.test(server):
        return {
          code: 'TLS_REQUIRED',
          message: `The server at ${where} only accepts encrypted connections for this user and database (sslmode=${ctx.sslmode ?? 'unknown'}).`,
          fix: 'Use sslmode=verify-full with sslrootcert (or sslmode=require) instead of sslmode=disable.',
        };
      case code === '28000' && /(SSL|GSS) encryption/i.test(server):
        return {
          code: 'AUTH_FAILED',
          message: `The server at ${where} has no pg_hba.conf entry allowing user "${user}" over an encrypted connection.`,
          fix: 'Ask the administrator to add a hostssl line for this user in pg_hba.conf (or use sslmode=prefer if plain connections are acceptable).',
        };
      case code === '28000' && /certificate/i.test(server):
        return {
          code: 'AUTH_FAILED',
          message: `Client-certificate authentication failed for user "${user}" at ${where}.`,
          fix: 'Set sslcert and sslkey to a certificate signed by the server’s ssl_ca_file whose CN is the user name.',
        };
      case code === '28000' && /role .* does not exist/i.test(server):
        return {
          code: 'AUTH_FAILED',
          message: `The role "${user}" does not exist at ${where}.`,
          fix: 'Check the user name, or create the role (CREATE ROLE ... LOGIN PASSWORD ...).',
        };
      case code.startsWith('28'):
        return {
          code: 'AUTH_FAILED',
          message: `The server at ${where} refused user "${user}": ${redactSecrets(server, [ctx.password])}`,
          fix: 'Check the user, password and the server’s pg_hba.conf for this client address.',
        };
      case code === '3D000':
        return {
          code: 'DATABASE_MISSING',
          message: `The database "${ctx.database ?? '?'}" does not exist at ${where}.`,
          fix: `Create it (CREATE DATABASE "${ctx.database ?? '...'}") or fix the database name.`,
        };
      case code === '42501':
        return {
          code: 'PERMISSION_DENIED',
          message: `Permission denied for user "${user}": ${redactSecrets(server, [ctx.password])}.`,
          fix: grantFix(server, user),
        };
      case code === '53300' || code === '57P03' || code.startsWith('08') || code === '57P01' || code === '57P02':
        return {
          code: 'UNREACHABLE',
          message: `The server at ${where} is not accepting connections: ${redactSecrets(server, [ctx.password])}`,
          fix:
            code === '53300'
              ? 'Lower maxConnections, close idle clients, or put PgBouncer in front of the server.'
              : 'Wait until the server has started, or check its log.',
        };
      default:
        return undefined;
    }
  }

  if (message === 'The server does not support SSL connections') {
    return {
      code: 'TLS_REQUIRED',
      message: `sslmode=${ctx.sslmode ?? 'require'} requires TLS, but the server at ${where} does not support it.`,
      fix: 'Enable ssl on the server (ssl = on, ssl_cert_file, ssl_key_file), or use sslmode=prefer on a trusted network.',
    };
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') {
    return {
      code: 'TLS_FAILED',
      message: `The server certificate is not valid for the host name "${ctx.host ?? '?'}" (sslmode=verify-full).`,
      fix: 'Connect with a host name listed in the certificate, or use sslmode=verify-ca to check only the CA.',
    };
  }
  if (
    (code !== undefined && (TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))) ||
    message === 'There was an error establishing an SSL connection'
  ) {
    const clientCert = /CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|ALERT/i.test(code ?? '');
    return {
      code: 'TLS_FAILED',
      message: `The TLS handshake with ${where} failed: ${redactSecrets(message, [ctx.password])}${code ? ` (${code})` : ''}.`,
      fix: clientCert
        ? 'The server rejected the client certificate: set sslcert/sslkey to a certificate signed by the server’s CA.'
        : 'Set sslrootcert to the CA that signed the server certificate (or check the certificate’s validity dates).',
    };
  }
  if (
    (code !== undefined && NETWORK_CODES.has(code)) ||
    /^(timeout expired|Connection terminated( unexpectedly| due to connection timeout)?|Client has encountered a connection error and is not queryable|Client was closed and is not queryable)$/.test(
      message,
    )
  ) {
    const reason =
      code === 'ENOTFOUND' || code === 'EAI_AGAIN'
        ? `the host name "${ctx.host ?? '?'}" does not resolve`
        : code === 'ENOENT'
          ? `no server socket in ${ctx.host ?? '?'}`
          : message === 'timeout expired' || code === 'ETIMEDOUT'
            ? 'the connection timed out'
            : code === 'ECONNREFUSED'
              ? 'connection refused'
              : redactSecrets(message, [ctx.password]);
    return {
      code: 'UNREACHABLE',
      message: `Cannot reach PostgreSQL at ${where}: ${reason}${code ? ` (${code})` : ''}.`,
      fix: 'Check that the server is running and that host and port are right (and that no firewall blocks the port).',
    };
  }
  if (/client password must be a string|password must be a string/i.test(message)) {
    return {
      code: 'AUTH_FAILED',
      message: `The server at ${where} asked for a password for user "${user}", and none is configured.`,
      fix: 'Set a password (password field, URL, PGPASSWORD, secret document or ~/.pgpass).',
    };
  }
  return undefined;
}

/** A fix naming the GRANT an administrator should run for a "permission denied for X" message. */
function grantFix(server: string, user: string): string {
  const match = /permission denied for (schema|table|relation|sequence|database|function) "?([^"\s]+)"?/i.exec(server);
  const role = `"${user.replaceAll('"', '""')}"`;
  const kind = match?.[1]?.toLowerCase();
  const name = match?.[2];
  if (kind === 'schema') {
    return `Ask an administrator to run: GRANT USAGE ON SCHEMA ${name} TO ${role}; (add CREATE only if pgstate should create tables itself; otherwise run pgstate migrate as an admin).`;
  }
  if (kind === 'table' || kind === 'relation') {
    return `Ask an administrator to run: GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE ${name} TO ${role};`;
  }
  if (kind === 'sequence') return `Ask an administrator to run: GRANT USAGE ON SEQUENCE ${name} TO ${role};`;
  if (kind === 'database') return `Ask an administrator to run: GRANT CONNECT ON DATABASE ${name} TO ${role};`;
  return `Ask an administrator to grant ${role} the rights pgstate needs (see the pgstate README, "Least privilege").`;
}

/**
 * Maps any error from connecting or querying to a `PgStateError`. Errors pgstate cannot classify become
 * QUERY_FAILED; the original is attached as a scrubbed `cause`.
 */
export function toPgStateError(error: unknown, settings?: Context): PgStateError {
  if (error instanceof PgStateError) return error;
  const ctx = settings ?? {};
  const secrets = [ctx.password, ctx.sslKey];
  const cause = sanitizeError(error, secrets);
  const classified = classify(error, ctx);
  if (classified) {
    return new PgStateError(classified.code, redactSecrets(classified.message, secrets), {
      fix: redactSecrets(classified.fix, secrets),
      cause,
    });
  }
  return new PgStateError('QUERY_FAILED', cause.message, {
    fix: 'See the cause for the server’s message.',
    cause,
  });
}

/** True when pgstate knows what this error means (connection, auth, TLS, missing database, permissions). */
export function isConnectionProblem(error: unknown): boolean {
  return error instanceof PgStateError || classify(error, {}) !== undefined;
}

/** Socket-level codes meaning an established (or starting) connection went away. */
const LOST_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTCONN',
  'ERR_SOCKET_CLOSED',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
]);

/** pg's and Node's wording for the same, also when another layer put it inside its own message. */
const LOST_MESSAGE =
  /^timeout expired$|Connection terminated|Client has encountered a connection error|Client was closed and is not queryable|timeout exceeded when trying to connect|\b(write|read) (EPIPE|ECONNRESET)\b/;

/**
 * True when an error (or one of its causes) means the connection to PostgreSQL was lost or could not be made, so the
 * same request may succeed when retried: socket errors such as `write EPIPE`, pg's "Connection terminated", the
 * server shutting down or refusing connections (SQLSTATE 08xxx, 57P01-57P03, 53300), and UNREACHABLE.
 */
export function isConnectionLoss(error: unknown, depth = 0): boolean {
  if (error === null || typeof error !== 'object' || depth > 5) return false;
  if (error instanceof PgStateError && error.code === 'UNREACHABLE') return true;
  const e = innermost(error);
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (code !== undefined && (LOST_CODES.has(code) || /^(08...|57P0[123]|53300)$/.test(code))) return true;
  if (typeof e.message === 'string' && LOST_MESSAGE.test(e.message)) return true;
  return isConnectionLoss((error as { cause?: unknown }).cause, depth + 1);
}
