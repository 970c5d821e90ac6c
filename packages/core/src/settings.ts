import { PgStateError } from './errors.js';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

export type TlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

/** Where the password came from (never the password itself), for `doctor`-style reports. */
export type PasswordSource = 'field' | 'url' | 'secret' | 'env' | 'pgpass' | 'none';

/** Everything pgstate needs to reach one PostgreSQL database. Produced only by `parseConnectionSettings`. */
export interface ConnectionSettings {
  /** Host name, IP address, or an absolute Unix-socket directory. */
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
  /** libpq `hostaddr`: the IP to connect to while `host` is used for certificate checks and .pgpass. */
  hostaddr?: string | undefined;
  /** `sslrootcert=system`: verify against the system's trusted roots (forces verify-full, like libpq 16). */
  sslRootCertSystem?: boolean;
  /** The `search_path` set through `options`, when there is one. */
  searchPath?: string[] | undefined;
  clientEncoding?: string | undefined;
  fallbackApplicationName?: string | undefined;
  keepAlive?: boolean;
  keepAliveIdleMs?: number | undefined;
  /** `channel_binding=prefer` (default) uses SCRAM-SHA-256-PLUS when the server offers it over TLS. */
  channelBinding?: 'disable' | 'prefer';
  sslMinProtocolVersion?: TlsVersion | undefined;
  sslMaxProtocolVersion?: TlsVersion | undefined;
  /** libpq `sslsni` (default on): send the host name in the TLS handshake. */
  sslSni?: boolean;
  /** libpq `sslnegotiation`: `direct` starts TLS without the SSLRequest round trip (PostgreSQL 17+). */
  sslNegotiation?: 'postgres' | 'direct';
  passwordSource?: PasswordSource;
  /** Things a user should know that did not stop parsing (e.g. a .pgpass file ignored for its permissions). */
  warnings?: string[];
}

export interface ConnectionFields {
  host?: string;
  port?: number | string;
  user?: string;
  password?: string;
  /** Name of an environment variable holding the password (Meltano's style). */
  passwordEnv?: string;
  database?: string;
  schema?: string;
  sslmode?: SslMode | string;
  /** File path or PEM text; `system` for the system's trusted roots. */
  sslRootCert?: string;
  /** File path or PEM text. */
  sslCert?: string;
  /** File path or PEM text. */
  sslKey?: string;
  applicationName?: string;
  connectTimeoutSeconds?: number | string;
  statementTimeoutMs?: number | string;
  minConnections?: number | string;
  maxConnections?: number | string;
  idleTimeoutMs?: number | string;
  /** A `.pgpass` file to use instead of PGPASSFILE / ~/.pgpass. */
  passfile?: string;
  /** A JSON secret document `{"username","password","engine","host","port","dbname"}` in this file. */
  secretFile?: string;
  /** The same secret document in this environment variable (its name, not its value). */
  secretEnv?: string;
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
  const host = settings.host.startsWith('/')
    ? encodeURIComponent(settings.host)
    : settings.host.includes(':')
      ? `[${settings.host}]`
      : settings.host;
  return `postgres://${encodeURIComponent(settings.user)}@${host}:${settings.port}/${encodeURIComponent(settings.database)}`;
}

export function badSetting(message: string, fix: string): PgStateError {
  return new PgStateError('BAD_SETTING', message, { fix });
}

/**
 * A copy of the settings that is safe to print: password and private key replaced. `parseConnectionSettings`
 * installs it as `toJSON` and the inspect hook so `console.log(settings)` and `JSON.stringify` never leak.
 */
export function redactedSettings(settings: ConnectionSettings): Record<string, unknown> {
  const { password, sslKey, ...rest } = settings;
  return {
    ...rest,
    password: password === undefined ? undefined : '[redacted]',
    sslKey: sslKey === undefined ? undefined : '[redacted]',
  };
}
