import util from 'node:util';
import { PgStateError } from './errors.js';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

export type TlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

/** Where the password came from (never the password itself), for `doctor`-style reports. */
export type PasswordSource = 'field' | 'url' | 'secret' | 'env' | 'pgpass' | 'none';

/** libpq `target_session_attrs`: which kind of server a connection must land on. */
export type TargetSessionAttrs = 'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby';

export const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = [
  'any',
  'read-write',
  'read-only',
  'primary',
  'standby',
  'prefer-standby',
];

/** One entry of a multi-host connection (`postgres://h1:p1,h2:p2/db`), tried in order like libpq. */
export interface HostTarget {
  /** Host name, IP address, or an absolute Unix-socket directory. */
  host: string;
  port: number;
  /** libpq `hostaddr` for this entry: the IP to connect to while `host` names the server for TLS and .pgpass. */
  hostaddr?: string | undefined;
  /** The password for this host (an explicit one, else this host's `.pgpass` line). */
  password: string | undefined;
  passwordSource?: PasswordSource;
}

/** Everything pgstate needs to reach one PostgreSQL database. Produced only by `parseConnectionSettings`. */
export interface ConnectionSettings {
  /** Host name, IP address, or an absolute Unix-socket directory (the first host when several are given). */
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
  /**
   * Every host to try, in the order given (`host`/`port`/`hostaddr`/`password` above are the first one's). Absent
   * only in settings not made by `parseConnectionSettings`; `hostsOf` then uses the single host.
   */
  hosts?: HostTarget[];
  /** Which server a connection must reach (libpq `target_session_attrs`, default any). */
  targetSessionAttrs?: TargetSessionAttrs;
  /** libpq `load_balance_hosts`: `random` shuffles the hosts for every new connection. */
  loadBalanceHosts?: 'disable' | 'random';
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
  /** libpq target_session_attrs: any, read-write, read-only, primary, standby, prefer-standby. */
  targetSessionAttrs?: TargetSessionAttrs | string;
  /** libpq load_balance_hosts: disable (default) or random. */
  loadBalanceHosts?: 'disable' | 'random' | string;
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

/** The hosts to try, in the order given (settings built by hand have just `host`/`port`). */
export function hostsOf(settings: ConnectionSettings): HostTarget[] {
  return settings.hosts?.length
    ? settings.hosts
    : [
        {
          host: settings.host,
          port: settings.port,
          hostaddr: settings.hostaddr,
          password: settings.password,
          passwordSource: settings.passwordSource,
        },
      ];
}

/**
 * The settings for a connection that must reach the primary whatever the user's target_session_attrs allow: LISTEN
 * (notifications are sent on the primary; a standby refuses LISTEN) and session advisory locks (a standby keeps its
 * own lock table, so a lock taken there would exclude nobody on the primary).
 */
export function onPrimary(settings: ConnectionSettings): ConnectionSettings {
  const attrs = settings.targetSessionAttrs ?? 'any';
  return attrs === 'primary' || attrs === 'read-write'
    ? settings
    : printSafe({ ...settings, targetSessionAttrs: 'primary' });
}

/** `host:port` as a URL writes it (`[::1]:5432`, socket directories percent-encoded). */
export function hostLabel(target: Pick<HostTarget, 'host' | 'port'>): string {
  const host = target.host.startsWith('/')
    ? encodeURIComponent(target.host)
    : target.host.includes(':')
      ? `[${target.host}]`
      : target.host;
  return `${host}:${target.port}`;
}

/**
 * Redacted one-line description of where we connect: never contains a password. With several hosts it lists them
 * all, like the URL a user would write.
 */
export function describeConnection(
  settings: Pick<ConnectionSettings, 'host' | 'port' | 'user' | 'database'> & {
    hosts?: Array<Pick<HostTarget, 'host' | 'port'>> | undefined;
  },
): string {
  const hosts = settings.hosts?.length ? settings.hosts : [settings];
  return `postgres://${encodeURIComponent(settings.user)}@${hosts.map(hostLabel).join(',')}/${encodeURIComponent(settings.database)}`;
}

export function badSetting(message: string, fix: string): PgStateError {
  return new PgStateError('BAD_SETTING', message, { fix });
}

/**
 * A copy of the settings that is safe to print: password and private key replaced. `parseConnectionSettings`
 * installs it as `toJSON` and the inspect hook so `console.log(settings)` and `JSON.stringify` never leak.
 */
export function redactedSettings(settings: ConnectionSettings): Record<string, unknown> {
  const { password, sslKey, hosts, ...rest } = settings;
  return {
    ...rest,
    ...(hosts === undefined
      ? {}
      : { hosts: hosts.map((h) => ({ ...h, password: h.password === undefined ? undefined : '[redacted]' })) }),
    password: password === undefined ? undefined : '[redacted]',
    sslKey: sslKey === undefined ? undefined : '[redacted]',
  };
}

/** Installs `redactedSettings` as `toJSON` and the inspect hook, so printing these settings never leaks a secret. */
export function printSafe(settings: ConnectionSettings): ConnectionSettings {
  Object.defineProperties(settings, {
    toJSON: { value: () => redactedSettings(settings), enumerable: false, configurable: true },
    [util.inspect.custom]: { value: () => redactedSettings(settings), enumerable: false, configurable: true },
  });
  return settings;
}
