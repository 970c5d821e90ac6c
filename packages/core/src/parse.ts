// PRELIMINARY: a minimal parser so adapters can start; the core issue replaces it with the full libpq-compatible one.
import os from 'node:os';
import pg from 'pg';
import { PgStateError } from './errors.js';
import {
  badSetting,
  type ConnectionInput,
  type ConnectionSettings,
  type ParseOptions,
  type SslMode,
} from './settings.js';

const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

export function parseConnectionSettings(input: ConnectionInput, options: ParseOptions = {}): ConnectionSettings {
  const env = options.env ?? process.env;
  const fields = typeof input === 'string' ? { url: input } : input;
  const url = fields.url ? new URL(fields.url) : undefined;
  if (url && url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw badSetting(`The URL scheme "${url.protocol}" is not PostgreSQL.`, 'Use a postgres:// or postgresql:// URL.');
  }
  const adapterParams: Record<string, string> = {};
  const query = url?.searchParams ?? new URLSearchParams();
  for (const [name, value] of query) {
    if (options.adapterParams?.includes(name)) adapterParams[name] = value;
  }
  const pathParts = url ? url.pathname.split('/').filter(Boolean).map(decodeURIComponent) : [];
  const sslmode = (fields.sslmode ?? query.get('sslmode') ?? env.PGSSLMODE ?? 'prefer') as SslMode;
  if (!SSL_MODES.includes(sslmode)) {
    throw badSetting(`Unknown sslmode "${sslmode}".`, `Use one of ${SSL_MODES.join(', ')}.`);
  }
  const user =
    fields.user ??
    (url?.username ? decodeURIComponent(url.username) : undefined) ??
    env.PGUSER ??
    os.userInfo().username;
  return {
    host: fields.host ?? (url?.hostname || undefined) ?? query.get('host') ?? env.PGHOST ?? 'localhost',
    port: Number(fields.port ?? (url?.port || undefined) ?? env.PGPORT ?? 5432),
    user,
    password: fields.password ?? (url?.password ? decodeURIComponent(url.password) : undefined) ?? env.PGPASSWORD,
    database: fields.database ?? pathParts[0] ?? env.PGDATABASE ?? user,
    sslmode,
    sslRootCert: fields.sslRootCert,
    sslCert: fields.sslCert,
    sslKey: fields.sslKey,
    applicationName: fields.applicationName ?? query.get('application_name') ?? env.PGAPPNAME ?? 'pgstate',
    connectTimeoutMs: undefined,
    statementTimeoutMs: fields.statementTimeoutMs,
    options: query.get('options') ?? undefined,
    schema: fields.schema ?? (options.allowSchemaPath ? pathParts[1] : undefined),
    pool: {
      min: fields.minConnections ?? 0,
      max: fields.maxConnections ?? 10,
      idleTimeoutMs: fields.idleTimeoutMs ?? 10_000,
    },
    adapterParams,
  };
}

export function poolConfig(settings: ConnectionSettings): pg.PoolConfig {
  return {
    host: settings.host,
    port: settings.port,
    user: settings.user,
    password: settings.password,
    database: settings.database,
    application_name: settings.applicationName,
    ssl:
      settings.sslmode === 'disable' || settings.sslmode === 'prefer' || settings.sslmode === 'allow'
        ? false
        : { rejectUnauthorized: false },
    options: settings.options,
    min: settings.pool.min,
    max: settings.pool.max,
    idleTimeoutMillis: settings.pool.idleTimeoutMs,
    statement_timeout: settings.statementTimeoutMs,
  };
}

/** A `pg` pool for these settings. Errors on idle clients are swallowed here so a dropped connection never crashes the process. */
export function createPool(settings: ConnectionSettings): pg.Pool {
  const pool = new pg.Pool(poolConfig(settings));
  pool.on('error', () => {});
  return pool;
}

export { PgStateError };
