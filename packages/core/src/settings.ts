import { PgStateError } from './errors.js';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

/** Everything pgstate needs to reach one PostgreSQL database. Produced only by `parseConnectionSettings`. */
export interface ConnectionSettings {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  sslmode: SslMode;
  /** PEM text (already read from a file when a path was given). */
  sslRootCert: string | undefined;
  sslCert: string | undefined;
  sslKey: string | undefined;
  applicationName: string;
  connectTimeoutMs: number | undefined;
  statementTimeoutMs: number | undefined;
  /** Extra `-c name=value` options sent at connection start (e.g. search_path). */
  options: string | undefined;
  /** The adapter's schema when the caller asked for one (Meltano's `/db/schema` path form, `schema` field). */
  schema: string | undefined;
  pool: { min: number; max: number; idleTimeoutMs: number };
  /** Adapter parameters found in the URL query (`table`, `schema`, ...), never sent to the server. */
  adapterParams: Record<string, string>;
}

export interface ConnectionFields {
  host?: string;
  port?: number | string;
  user?: string;
  password?: string;
  database?: string;
  schema?: string;
  sslmode?: SslMode | string;
  sslRootCert?: string;
  sslCert?: string;
  sslKey?: string;
  applicationName?: string;
  connectTimeoutSeconds?: number;
  statementTimeoutMs?: number;
  minConnections?: number;
  maxConnections?: number;
  idleTimeoutMs?: number;
}

export interface ParseOptions {
  /** Query parameters the adapter understands; any other unknown parameter is an error that names it. */
  adapterParams?: readonly string[];
  /** Accept the Meltano seed's `postgres://host/db/schema` path form. */
  allowSchemaPath?: boolean;
  /** Environment to read PG* variables from (default: process.env). */
  env?: Record<string, string | undefined>;
}

export type ConnectionInput = string | (ConnectionFields & { url?: string });

/** Redacted one-line description of where we connect: never contains a password. */
export function describeConnection(settings: Pick<ConnectionSettings, 'host' | 'port' | 'user' | 'database'>): string {
  return `postgres://${encodeURIComponent(settings.user)}@${settings.host.startsWith('/') ? encodeURIComponent(settings.host) : settings.host}:${settings.port}/${encodeURIComponent(settings.database)}`;
}

export function badSetting(message: string, fix: string): PgStateError {
  return new PgStateError('BAD_SETTING', message, { fix });
}
