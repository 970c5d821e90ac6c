/**
 * Clients and pools from `ConnectionSettings`, with libpq's sslmode semantics and mapped, redacted errors.
 *
 * `pg` has no `prefer`/`allow`: it either asks for TLS or it does not. libpq decides per connection: `prefer` tries TLS
 * and falls back to plain when the server has no TLS, the handshake fails, or the server rejects the encrypted login;
 * `allow` tries plain first and retries with TLS when the server rejects it. `PgStateClient` does exactly that by
 * running `pg`'s connect once per attempt on a fresh `pg.Connection`.
 */
import tls from 'node:tls';
import pg from 'pg';
import { toPgStateError } from './connection-errors.js';
import { PgStateError } from './errors.js';
import type { ConnectionSettings } from './settings.js';

/** TLS options for `pg` (false = plain), in the order libpq tries them. */
export function tlsAttempts(settings: ConnectionSettings): Array<false | tls.ConnectionOptions> {
  // libpq never uses TLS on a Unix socket, whatever sslmode says.
  if (settings.host.startsWith('/')) return [false];
  switch (settings.sslmode) {
    case 'disable':
      return [false];
    case 'allow':
      return [false, tlsOptions(settings)];
    case 'prefer':
      return [tlsOptions(settings), false];
    default:
      return [tlsOptions(settings)];
  }
}

/** Node TLS options meaning what the sslmode means in libpq. */
export function tlsOptions(settings: ConnectionSettings): tls.ConnectionOptions {
  const options: tls.ConnectionOptions = {};
  if (settings.sslCert !== undefined) options.cert = settings.sslCert;
  if (settings.sslKey !== undefined) options.key = settings.sslKey;
  if (settings.sslMinProtocolVersion) options.minVersion = settings.sslMinProtocolVersion;
  if (settings.sslMaxProtocolVersion) options.maxVersion = settings.sslMaxProtocolVersion;
  const isIp = /^[\d.]+$|:/.test(settings.host);
  if (settings.sslSni !== false && !isIp) options.servername = settings.host;
  // libpq verifies the chain in verify-ca/verify-full, and in every other mode as soon as a root cert is given.
  const verifyChain =
    settings.sslmode === 'verify-ca' ||
    settings.sslmode === 'verify-full' ||
    settings.sslRootCert !== undefined ||
    settings.sslRootCertSystem === true;
  if (!verifyChain) {
    options.rejectUnauthorized = false;
    return options;
  }
  options.rejectUnauthorized = true;
  if (settings.sslRootCert !== undefined) options.ca = settings.sslRootCert;
  // Host name check only in verify-full, always against the host the user named (not hostaddr, not pg's default).
  options.checkServerIdentity =
    settings.sslmode === 'verify-full'
      ? (_servername, cert) => tls.checkServerIdentity(settings.host, cert)
      : () => undefined;
  return options;
}

/** libpq retries the other way after these: no TLS on the server, a failed handshake, or a refused login. */
function worthAnotherAttempt(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown };
  if (error instanceof pg.DatabaseError) return typeof e.code === 'string' && e.code.startsWith('28');
  if (e.message === 'The server does not support SSL connections') return true;
  if (e.message === 'There was an error establishing an SSL connection') return true;
  return typeof e.code === 'string' && /^(ERR_SSL_|ERR_TLS_|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO_|CERT_)/.test(e.code);
}

/** The private parts of pg.Client we reset between attempts (pg 8.x). */
interface ClientInternals {
  connection: pg.Connection;
  ssl: unknown;
  _connecting: boolean;
  _connectionError: boolean;
  _ending: boolean;
  _ended: boolean;
  connectionTimeoutHandle?: NodeJS.Timeout;
  connectionParameters: { ssl: unknown };
}

const settingsByPool = new WeakMap<pg.Pool, ConnectionSettings>();

/** The settings a pool from `createPool` was made with. */
export function settingsOf(pool: pg.Pool): ConnectionSettings | undefined {
  return settingsByPool.get(pool);
}

/** A `pg.Client` class bound to these settings: libpq TLS negotiation, PgStateError on connect. */
export function clientClassFor(settings: ConnectionSettings): typeof pg.Client {
  const attempts = tlsAttempts(settings);
  class PgStateClient extends pg.Client {
    constructor(config?: pg.ClientConfig) {
      // Our own config, not the pool's copy: pg-pool hides `password` from spreads, and settings are the truth here.
      super({
        ...config,
        ...clientConfig(settings),
        ssl: attempts[0],
        // The client's own timer, not pg-pool's: pg-pool would wrap our mapped error in a generic one.
        connectionTimeoutMillis: settings.connectTimeoutMs ?? 0,
      });
      // A connection dropped while a caller holds the client (checked out, or dedicated) would otherwise emit an
      // unhandled 'error' and kill the process. The caller still sees the failure on its next query.
      this.on('error', () => {});
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: (err: Error) => void): void;
    override connect(callback?: (err: Error) => void): Promise<pg.Client> | undefined {
      const done = this.connectInLibpqOrder();
      if (!callback) return done.then(() => this);
      done.then(
        () => (callback as (err: Error | null) => void)(null),
        (err: Error) => callback(err),
      );
      return undefined;
    }

    private async connectInLibpqOrder(): Promise<void> {
      for (let attempt = 0; ; attempt++) {
        try {
          await super.connect();
          return;
        } catch (error) {
          const next = attempts[attempt + 1];
          if (next === undefined || !worthAnotherAttempt(error)) {
            // pg leaves the socket open when connecting fails on our side (no password to send, a TLS check): the
            // server would hold the slot until its authentication_timeout and the process could not exit meanwhile.
            (this as unknown as ClientInternals).connection.stream.destroy();
            throw toPgStateError(error, settings);
          }
          this.freshConnection(next);
        }
      }
    }

    /** Drops the failed connection and gives pg a new one with the other TLS choice. */
    private freshConnection(ssl: false | tls.ConnectionOptions): void {
      const self = this as unknown as ClientInternals;
      const old = self.connection;
      old.removeAllListeners();
      old.on('error', () => {});
      old.stream.destroy();
      clearTimeout(self.connectionTimeoutHandle);
      self.connection = new pg.Connection({
        ssl: ssl === false ? false : ssl,
        keepAlive: settings.keepAlive ?? true,
        keepAliveInitialDelayMillis: settings.keepAliveIdleMs ?? 0,
        encoding: settings.clientEncoding ?? 'utf8',
      } as pg.ConnectionConfig);
      self.ssl = ssl;
      self.connectionParameters.ssl = ssl;
      self._connecting = false;
      self._connectionError = false;
      self._ending = false;
      self._ended = false;
    }
  }
  return PgStateClient;
}

/** `pg` client options for these settings (TLS is chosen per attempt by the client class). */
export function clientConfig(settings: ConnectionSettings): pg.ClientConfig {
  const { password } = settings;
  return {
    host: settings.hostaddr ?? settings.host,
    port: settings.port,
    user: settings.user,
    database: settings.database,
    // A function keeps the password out of pg's and pg-pool's printable options and stops pg's own .pgpass lookup
    // (we already did libpq's).
    password: () => {
      if (password !== undefined) return password;
      throw new PgStateError(
        'AUTH_FAILED',
        `The server asked for a password for user "${settings.user}", and none is configured.`,
        { fix: 'Set a password (password field, URL, PGPASSWORD, secret document or ~/.pgpass).' },
      );
    },
    application_name: settings.applicationName,
    fallback_application_name: settings.fallbackApplicationName,
    options: settings.options,
    client_encoding: settings.clientEncoding,
    statement_timeout: settings.statementTimeoutMs,
    keepAlive: settings.keepAlive ?? true,
    keepAliveInitialDelayMillis: settings.keepAliveIdleMs,
    enableChannelBinding: settings.channelBinding !== 'disable',
    ...(settings.sslNegotiation === 'direct' ? { sslnegotiation: 'direct' } : {}),
  } as pg.ClientConfig;
}

export function poolConfig(settings: ConnectionSettings): pg.PoolConfig {
  return {
    ...clientConfig(settings),
    Client: clientClassFor(settings),
    min: settings.pool.min,
    max: settings.pool.max,
    idleTimeoutMillis: settings.pool.idleTimeoutMs,
  } as pg.PoolConfig;
}

/**
 * A `pg` pool for these settings. Connecting (also inside `pool.query`) throws mapped `PgStateError`s. Errors on idle
 * clients are swallowed here so a dropped connection never crashes the process; the pool replaces the client.
 */
export function createPool(settings: ConnectionSettings): pg.Pool {
  const pool = new pg.Pool(poolConfig(settings));
  pool.on('error', () => {});
  settingsByPool.set(pool, settings);
  return pool;
}

/** One dedicated (unpooled) connection, e.g. for session advisory locks or LISTEN. Call `end()` when done. */
export async function connectClient(settings: ConnectionSettings): Promise<pg.Client> {
  const Client = clientClassFor(settings);
  const client = new Client(clientConfig(settings));
  await client.connect();
  return client;
}

/**
 * Runs `fn` with a client from the pool (or a dedicated connection for settings) and maps what pgstate knows about
 * (connection, auth, TLS, missing database, permission denied) to `PgStateError`. Other errors (unique violations,
 * serialization failures...) reach the caller unchanged so adapters can inspect their SQLSTATE.
 */
export async function withClient<T>(
  source: pg.Pool | ConnectionSettings,
  fn: (client: pg.ClientBase) => Promise<T>,
): Promise<T> {
  const settings = source instanceof pg.Pool ? settingsOf(source) : source;
  let client: pg.ClientBase;
  let done: (error?: Error) => Promise<void> | void;
  if (source instanceof pg.Pool) {
    const pooled = await source.connect().catch((error: unknown) => {
      throw toPgStateError(error, settings);
    });
    client = pooled;
    done = (error) => pooled.release(error);
  } else {
    const dedicated = await connectClient(source);
    client = dedicated;
    done = () => dedicated.end().catch(() => {});
  }
  try {
    const result = await fn(client);
    await done();
    return result;
  } catch (error) {
    // A connection that failed below SQL level must not go back to the pool; one with a server error is fine.
    await done(error instanceof pg.DatabaseError ? undefined : new Error('discarded after a failure'));
    const mapped = toPgStateError(error, settings);
    throw mapped.code === 'QUERY_FAILED' ? error : mapped;
  }
}
