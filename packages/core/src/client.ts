/**
 * Clients and pools from `ConnectionSettings`, with libpq's sslmode semantics and mapped, redacted errors.
 *
 * Several hosts (`postgres://h1,h2/db?target_session_attrs=read-write`): `pg` connects to one, so `PgStateClient`
 * walks the list itself, like libpq: each host in order (shuffled with load_balance_hosts=random), the next one after
 * any failure, and after connecting it checks the server against target_session_attrs. The walk lives in the client
 * class that every pool, dedicated connection and lock uses, so after a failover each new connection finds the new
 * primary on its own; connections that hit a read-only server or lost their server are never put back in the pool.
 *
 * `pg` has no `prefer`/`allow`: it either asks for TLS or it does not. libpq decides per connection: `prefer` tries TLS
 * and falls back to plain when the server has no TLS, the handshake fails, or the server rejects the encrypted login;
 * `allow` tries plain first and retries with TLS when the server rejects it. `PgStateClient` does exactly that by
 * running `pg`'s connect once per attempt on a fresh `pg.Connection`.
 */
import tls from 'node:tls';
import pg from 'pg';
import { isConnectionLoss, toPgStateError } from './connection-errors.js';
import { PgStateError, type PgStateErrorCode } from './errors.js';
import { pgErrorKind } from './pg-errors.js';
import {
  type ConnectionSettings,
  describeConnection,
  type HostTarget,
  hostLabel,
  hostsOf,
  printSafe,
  type TargetSessionAttrs,
} from './settings.js';

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
  host: string;
  port: number;
  password: unknown;
  _connecting: boolean;
  _connected: boolean;
  _connectionError: boolean;
  _ending: boolean;
  _ended: boolean;
  _queryable: boolean;
  _txStatus: unknown;
  processID: unknown;
  secretKey: unknown;
  connectionTimeoutHandle?: NodeJS.Timeout;
  connectionParameters: { ssl: unknown; host: string; port: number };
}

/** The settings for one entry of a host list: TLS names, errors and the password are all per host. */
export function settingsForHost(settings: ConnectionSettings, target: HostTarget): ConnectionSettings {
  return printSafe({
    ...settings,
    host: target.host,
    port: target.port,
    hostaddr: target.hostaddr,
    password: target.password,
    passwordSource: target.passwordSource,
    hosts: [target],
  });
}

/** The hosts in the order one connection tries them: as given, or shuffled anew for load_balance_hosts=random. */
function connectOrder(settings: ConnectionSettings): HostTarget[] {
  const hosts = [...hostsOf(settings)];
  if (settings.loadBalanceHosts === 'random') {
    for (let i = hosts.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [hosts[i], hosts[j]] = [hosts[j] as HostTarget, hosts[i] as HostTarget];
    }
  }
  return hosts;
}

/**
 * Why this server does not suit `wanted`, or undefined when it does. The same checks libpq makes:
 * `SHOW transaction_read_only` for read-write/read-only, `pg_is_in_recovery()` for primary/standby.
 */
async function sessionMismatch(client: pg.ClientBase, wanted: TargetSessionAttrs): Promise<string | undefined> {
  if (wanted === 'any') return undefined;
  if (wanted === 'read-write' || wanted === 'read-only') {
    const { rows } = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only');
    const readOnly = rows[0]?.transaction_read_only === 'on';
    if (wanted === 'read-write' && readOnly) return 'server is in read-only mode';
    if (wanted === 'read-only' && !readOnly) return 'server is not in read-only mode';
    return undefined;
  }
  const { rows } = await client.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
  const standby = rows[0]?.standby === true;
  if (wanted === 'primary' && standby) return 'server is a standby (in recovery)';
  if ((wanted === 'standby' || wanted === 'prefer-standby') && !standby) return 'server is not a standby';
  return undefined;
}

/** A short reason for one host's failure, for the list in a multi-host error ("connection refused"). */
function shortReason(error: PgStateError, one: ConnectionSettings): string {
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  if (error.code === 'UNREACHABLE') {
    if (code === 'ECONNREFUSED') return 'connection refused';
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host name does not resolve';
    if (code === 'ENOENT') return 'no server socket';
    if (code === 'ETIMEDOUT' || cause?.message === 'timeout expired') return 'timed out (connect_timeout)';
  }
  return error.message.replace(` at ${describeConnection(one)}`, '').replace(/\.$/, '');
}

interface HostFailure {
  target: HostTarget;
  error: PgStateError;
  reason: string;
}

/** One error naming every host tried and why each failed; with a single host, that host's own error. */
function walkError(settings: ConnectionSettings, failures: HostFailure[]): PgStateError {
  const last = failures[failures.length - 1] as HostFailure;
  if (hostsOf(settings).length === 1) return last.error;
  const codes = new Set(failures.map((f) => f.error.code));
  const code: PgStateErrorCode = codes.size === 1 ? last.error.code : 'UNREACHABLE';
  const attrs = settings.targetSessionAttrs ?? 'any';
  return new PgStateError(
    code,
    `No usable server for ${describeConnection(settings)}${attrs === 'any' ? '' : ` (target_session_attrs=${attrs})`}: ${failures
      .map((f) => `${hostLabel(f.target)}: ${f.reason}`)
      .join('; ')}.`,
    {
      fix:
        code === 'UNREACHABLE'
          ? 'Check that a server is running at one of the hosts with the role target_session_attrs asks for (after a failover the new primary must be in the host list).'
          : last.error.fix,
      cause: last.error,
    },
  );
}

/** Queries that fail this way leave the connection unfit for reuse: 25006 (read-only: a standby), or a lost server. */
function poisonsConnection(error: unknown): boolean {
  return pgErrorKind(error) === 'read-only-transaction' || isConnectionLoss(error);
}

/**
 * True for what a failover looks like from a client: the connection was lost or could not be made (UNREACHABLE,
 * also when no host is primary yet), or the server turned out read-only (25006). Worth retrying on a new connection.
 */
export function isFailoverError(error: unknown): boolean {
  const kind = pgErrorKind(error);
  return kind === 'connection-lost' || kind === 'read-only-transaction';
}

export interface RetryOptions {
  /** Tries in all (default 6). */
  attempts?: number;
  /** First pause between tries, doubled after each (default 250 ms, at most `maxDelayMs`, default 5 s). */
  delayMs?: number;
  maxDelayMs?: number;
}

/**
 * Runs `fn` again after failover errors (`isFailoverError`), with growing pauses. Only for idempotent work (reads,
 * or writes that are safe to repeat): a write whose connection was cut may or may not have committed, so everything
 * else should let the error reach its caller, which gets a retryable error (UNREACHABLE, or the S3 gateway's 503).
 */
export async function withRetry<T>(fn: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? 6;
  let delay = options.delayMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= attempts || !isFailoverError(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, options.maxDelayMs ?? 5000);
    }
  }
}

const DISCARD = Symbol('pgstate.discard');
const REACHED = Symbol('pgstate.reached');

/** The host a client from `createPool`/`connectClient` connected to (after the host walk). */
export function connectedHost(client: pg.ClientBase): HostTarget | undefined {
  return (client as unknown as { [REACHED]?: HostTarget })[REACHED];
}

const settingsByPool = new WeakMap<pg.Pool, ConnectionSettings>();

/** The settings a pool from `createPool` was made with. */
export function settingsOf(pool: pg.Pool): ConnectionSettings | undefined {
  return settingsByPool.get(pool);
}

/**
 * A `pg.Client` class bound to these settings: the libpq host walk with target_session_attrs, libpq TLS negotiation
 * per host, PgStateError on connect.
 */
export function clientClassFor(settings: ConnectionSettings): typeof pg.Client {
  const attrs = settings.targetSessionAttrs ?? 'any';
  class PgStateClient extends pg.Client {
    [REACHED]: HostTarget | undefined;
    [DISCARD] = false;

    constructor(config?: pg.ClientConfig) {
      // Our own config, not the pool's copy: pg-pool hides `password` from spreads, and settings are the truth here.
      super({
        ...config,
        ...clientConfig(settings),
        ssl: tlsAttempts(settings)[0],
        // The client's own timer, per host and attempt like libpq's connect_timeout; not pg-pool's, which would
        // wrap our mapped error in a generic one.
        connectionTimeoutMillis: settings.connectTimeoutMs ?? 0,
      });
      // A connection dropped while a caller holds the client (checked out, or dedicated) would otherwise emit an
      // unhandled 'error' and kill the process. The caller still sees the failure on its next query.
      this.on('error', () => {});
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: (err: Error) => void): void;
    override connect(callback?: (err: Error) => void): Promise<pg.Client> | undefined {
      const done = this.connectToAHost();
      if (!callback) return done.then(() => this);
      done.then(
        () => (callback as (err: Error | null) => void)(null),
        (err: Error) => callback(err),
      );
      return undefined;
    }

    // Remembers failures that make this connection unfit for reuse; createPool's 'release' hook discards it.
    // biome-ignore lint/suspicious/noExplicitAny: pg's query has a dozen overloads; we only observe the outcome.
    override query(...args: any[]): any {
      const last = args[args.length - 1];
      if (typeof last === 'function') {
        args[args.length - 1] = (error: unknown, ...rest: unknown[]) => {
          if (error && poisonsConnection(error)) this[DISCARD] = true;
          return last(error, ...rest);
        };
      }
      // biome-ignore lint/suspicious/noExplicitAny: see above
      const result = (super.query as any)(...args);
      if (result && typeof result.then === 'function') {
        result.then(undefined, (error: unknown) => {
          if (poisonsConnection(error)) this[DISCARD] = true;
        });
      }
      return result;
    }

    /** libpq's walk: every host in turn until one connects and suits target_session_attrs. */
    private async connectToAHost(): Promise<void> {
      const order = connectOrder(settings);
      // prefer-standby: a first round for standbys only, then any server (libpq does the same).
      const rounds: TargetSessionAttrs[] = attrs === 'prefer-standby' ? ['standby', 'any'] : [attrs];
      const failures: HostFailure[] = [];
      for (const wanted of rounds) {
        for (const target of order) {
          const one = settingsForHost(settings, target);
          try {
            await this.connectInLibpqOrder(one);
          } catch (error) {
            const mapped = toPgStateError(error, one);
            failures.push({ target, error: mapped, reason: shortReason(mapped, one) });
            continue;
          }
          let mismatch: string | undefined;
          try {
            mismatch = await sessionMismatch(this, wanted);
          } catch (error) {
            const mapped = toPgStateError(error, one);
            failures.push({ target, error: mapped, reason: shortReason(mapped, one) });
            this.dropConnection();
            continue;
          }
          if (mismatch === undefined) {
            this[REACHED] = target;
            return;
          }
          const reason = `${mismatch} (target_session_attrs=${attrs})`;
          failures.push({
            target,
            reason,
            error: new PgStateError('UNREACHABLE', `${reason}: ${describeConnection(one)}.`, {
              fix: 'Point the connection at a server of the role target_session_attrs asks for.',
            }),
          });
          this.dropConnection();
        }
      }
      throw walkError(settings, failures);
    }

    /** One host: TLS then plain (or the other way round) as sslmode says, on a fresh connection each time. */
    private async connectInLibpqOrder(one: ConnectionSettings): Promise<void> {
      const attempts = tlsAttempts(one);
      for (let attempt = 0; ; attempt++) {
        this.freshConnection(one, attempts[attempt] as false | tls.ConnectionOptions);
        try {
          await super.connect();
          return;
        } catch (error) {
          // pg leaves the socket open when connecting fails on our side (no password to send, a TLS check): the
          // server would hold the slot until its authentication_timeout and the process could not exit meanwhile.
          (this as unknown as ClientInternals).connection.stream.destroy();
          if (attempts[attempt + 1] === undefined || !worthAnotherAttempt(error)) throw error;
        }
      }
    }

    /** Closes a connection that is up but does not suit (politely: Terminate, then close). */
    private dropConnection(): void {
      const old = (this as unknown as ClientInternals).connection;
      old.removeAllListeners();
      old.on('error', () => {});
      old.end();
    }

    /** Gives pg a new connection to `one`'s host with this TLS choice, and resets what the last attempt left. */
    private freshConnection(one: ConnectionSettings, ssl: false | tls.ConnectionOptions): void {
      const self = this as unknown as ClientInternals;
      const old = self.connection;
      old.removeAllListeners();
      old.on('error', () => {});
      // One that dropConnection is closing politely finishes on its own (destroying it could cut the Terminate).
      if (!(old as unknown as { _ending?: boolean })._ending) old.stream.destroy();
      clearTimeout(self.connectionTimeoutHandle);
      self.connection = new pg.Connection({
        ssl: ssl === false ? false : ssl,
        keepAlive: settings.keepAlive ?? true,
        keepAliveInitialDelayMillis: settings.keepAliveIdleMs ?? 0,
        encoding: settings.clientEncoding ?? 'utf8',
      } as pg.ConnectionConfig);
      self.host = one.hostaddr ?? one.host;
      self.port = one.port;
      self.connectionParameters.host = self.host;
      self.connectionParameters.port = self.port;
      self.password = passwordFor(one);
      self.ssl = ssl;
      self.connectionParameters.ssl = ssl;
      self._connecting = false;
      self._connected = false;
      self._connectionError = false;
      self._ending = false;
      self._ended = false;
      self._queryable = true;
      self._txStatus = null;
      self.processID = null;
      self.secretKey = null;
    }
  }
  return PgStateClient;
}

/** Whether a pooled client must not go back to the pool (it met a read-only server or lost its server). */
function markedForDiscard(client: pg.ClientBase): boolean {
  return (client as unknown as { [DISCARD]?: boolean })[DISCARD] === true;
}

/** pg's password callback for one host: the password stays out of printable options, and pg's own .pgpass is off. */
function passwordFor(settings: ConnectionSettings): () => string {
  const { password } = settings;
  return () => {
    if (password !== undefined) return password;
    throw new PgStateError(
      'AUTH_FAILED',
      `The server asked for a password for user "${settings.user}", and none is configured.`,
      { fix: 'Set a password (password field, URL, PGPASSWORD, secret document or ~/.pgpass).' },
    );
  };
}

/** `pg` client options for these settings (TLS is chosen per attempt by the client class). */
export function clientConfig(settings: ConnectionSettings): pg.ClientConfig {
  return {
    host: settings.hostaddr ?? settings.host,
    port: settings.port,
    user: settings.user,
    database: settings.database,
    // A function keeps the password out of pg's and pg-pool's printable options and stops pg's own .pgpass lookup
    // (we already did libpq's).
    password: passwordFor(settings),
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
 * A `pg` pool for these settings. Connecting (also inside `pool.query`) throws mapped `PgStateError`s, and so does a
 * `pool.query` whose connection is lost while it runs. Errors on idle clients are swallowed here so a dropped
 * connection never crashes the process; the pool replaces the client.
 */
export function createPool(settings: ConnectionSettings): pg.Pool {
  const pool = new pg.Pool(poolConfig(settings));
  pool.on('error', () => {});
  // pg-pool drops a released client that is not queryable: so one that met a read-only server (25006) or lost its
  // server is closed, and the next checkout connects anew, walking the host list to the current primary.
  pool.on('release', (_error: Error | undefined, client: pg.PoolClient) => {
    if (markedForDiscard(client)) (client as unknown as ClientInternals)._queryable = false;
  });
  // A statement whose connection is cut mid-flight (a failover, a restart) rejects with pg's bare "Connection
  // terminated unexpectedly" (or a 57P0x): callers get the typed, retryable UNREACHABLE instead, the original as its
  // cause. Every other error is left as it is, so adapters can still read its SQLSTATE.
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  pool.query = ((...args: unknown[]) => {
    const result = query(...args);
    if (!(result instanceof Promise)) return result; // the callback form
    return result.catch((error: unknown) => {
      throw isConnectionLoss(error) ? toPgStateError(error, settings) : error;
    });
  }) as typeof pool.query;
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
