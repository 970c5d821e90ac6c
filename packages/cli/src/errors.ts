import { type ConnectionSettings, describeConnection, isPgStateError, PgStateError } from '@pgstate/core';
import { EXIT, exitCodeFor } from './exit-codes.js';
import type { Output } from './output.js';

/** A usage error (bad flag combination, bad argument): exit code 2. */
export class UsageError extends Error {
  readonly code = 'USAGE';
  readonly fix: string | undefined;
  constructor(message: string, fix?: string) {
    super(message);
    this.name = 'UsageError';
    this.fix = fix;
  }
}

type Where = Pick<ConnectionSettings, 'host' | 'port' | 'user' | 'database' | 'sslmode'>;

/**
 * Turns whatever `pg`, `net` or `tls` threw while connecting or querying into a PgStateError with a stable code
 * and a fix. Messages are built from the settings (never from a URL), so they carry no password.
 */
export function toPgStateError(error: unknown, where?: Where): PgStateError {
  if (isPgStateError(error)) return error;
  const e = (error ?? {}) as { code?: string; message?: string; errors?: unknown[] };
  const inner = (Array.isArray(e.errors) && (e.errors[0] as typeof e | undefined)) || e;
  const code = e.code ?? inner.code;
  const message = String(e.message || inner.message || error);
  const target = where ? `${where.host}:${where.port}` : 'the server';
  const who = where ? `role "${where.user}"` : 'the role';
  const db = where ? `database "${where.database}"` : 'the database';
  const make = (c: ConstructorParameters<typeof PgStateError>[0], m: string, fix: string) =>
    new PgStateError(c, m, { fix, cause: error });

  switch (code) {
    case 'ECONNREFUSED':
      return make(
        'UNREACHABLE',
        `Nothing is listening on ${target} (connection refused).`,
        'Start the server or correct --host/--port (for pgstate’s own server: pgstate db start).',
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return make('UNREACHABLE', `The host name in ${target} does not resolve.`, 'Correct --host (or the URL host).');
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ECONNRESET':
      return make(
        'UNREACHABLE',
        `Could not reach ${target} (${code}).`,
        'Check the host, port and firewall; raise --connect-timeout on slow networks.',
      );
    case '28P01':
      return make(
        'AUTH_FAILED',
        `Password authentication failed for ${who}.`,
        'Check the password (URL, PGPASSWORD or ~/.pgpass) and the user name.',
      );
    case '28000':
      if (/no encryption/i.test(message))
        return make(
          'TLS_REQUIRED',
          `The server only accepts TLS connections from this host, but sslmode is ${where?.sslmode ?? 'disable'}.`,
          'Use sslmode=verify-full with sslrootcert=<CA file> (or at least sslmode=require).',
        );
      return make(
        'AUTH_FAILED',
        `The server refused ${who} for ${db} (pg_hba.conf has no matching entry).`,
        'Ask the administrator to allow this host/user/database in pg_hba.conf, or use TLS if the entry is hostssl.',
      );
    case '3D000':
      return make(
        'DATABASE_MISSING',
        `The ${db} does not exist.`,
        'Create it (CREATE DATABASE) or correct --database.',
      );
    case '42501':
      return make(
        'PERMISSION_DENIED',
        `Permission denied for ${who}: ${firstLine(message)}.`,
        'Grant the privilege (see pgstate doctor) or run this with a role that has it.',
      );
    case '57P03':
    case '53300':
      return make(
        'UNREACHABLE',
        `The server cannot accept the connection now: ${firstLine(message)}.`,
        'Retry shortly.',
      );
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return make(
        'TLS_FAILED',
        `The server certificate is not valid for the host name "${where?.host ?? '?'}" (sslmode=verify-full).`,
        'Connect with a host name the certificate names, or use sslmode=verify-ca to check only the CA.',
      );
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return make(
        'TLS_FAILED',
        `The server certificate is not signed by a trusted CA (${code}).`,
        'Set --sslrootcert (or PGSSLROOTCERT) to the CA certificate that signed the server certificate.',
      );
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return make('TLS_FAILED', `The server certificate is not valid now (${code}).`, 'Renew the server certificate.');
  }
  if (/does not support SSL/i.test(message))
    return make(
      'TLS_FAILED',
      `The server at ${target} does not offer TLS, but sslmode=${where?.sslmode ?? 'require'} requires it.`,
      'Enable ssl on the server, or use sslmode=prefer for a trusted network.',
    );
  if (/timeout|terminated unexpectedly/i.test(message))
    return make(
      'UNREACHABLE',
      `The connection to ${target} failed: ${firstLine(message)}.`,
      'Check that the server is up and reachable; raise --connect-timeout on slow networks.',
    );
  return make('QUERY_FAILED', redact(firstLine(message)), 'Run again with --debug for details.');
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').replace(/\.$/, '');
}

/** Last line of defence: no `scheme://user:password@` ever reaches the terminal. */
export function redact(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):[^@\s]*@/gi, '$1:***@');
  for (const secret of secrets) if (secret && secret.length >= 4) out = out.split(secret).join('***');
  return out;
}

/** Prints an error as one line (`error [CODE]: message` + `fix: ...`) and returns the exit code. */
export function reportError(
  error: unknown,
  output: Output,
  options: { where?: Where; secrets?: readonly (string | undefined)[] } = {},
): number {
  const usage = error instanceof UsageError;
  const err = usage ? error : toPgStateError(error, options.where);
  const code = err.code;
  const message = redact(err.message, options.secrets);
  const fix = err.fix ? redact(err.fix, options.secrets) : undefined;
  if (output.json) {
    output.emitJson({ ok: false, error: { code, message, ...(fix ? { fix } : {}) } });
  } else {
    output.stderr.write(`${output.styleErr('error', 'red', 'bold')} [${code}]: ${message}\n`);
    if (fix) output.stderr.write(`${output.styleErr('fix', 'cyan')}: ${fix}\n`);
  }
  if (output.debugEnabled) {
    let current: unknown = error;
    for (let depth = 0; current && depth < 5; depth++) {
      const stack = (current as Error).stack ?? String(current);
      output.stderr.write(`${output.styleErr(redact(stack, options.secrets), 'dim')}\n`);
      current = (current as { cause?: unknown }).cause;
    }
  }
  return usage ? EXIT.USAGE : exitCodeFor(code);
}

export { describeConnection };
