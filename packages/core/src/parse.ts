/**
 * One parser for every way users describe a PostgreSQL connection, with libpq's meaning for each piece.
 * Layers, lowest first: PG* environment < URL < secret document < individual fields; then `.pgpass` when no
 * password was given anywhere. We never hand a user's URL to `pg`'s own parser: it gives `sslmode` a different meaning.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { lookupPgpass } from './pgpass.js';
import {
  badSetting,
  type ConnectionFields,
  type ConnectionInput,
  type ConnectionSettings,
  type HostTarget,
  type ParseOptions,
  type PasswordSource,
  printSafe,
  SSL_MODES,
  type SslMode,
  TARGET_SESSION_ATTRS,
  type TargetSessionAttrs,
  type TlsVersion,
} from './settings.js';

export { createPool, poolConfig } from './client.js';

/** Where a raw value came from; used in error messages so users know what to fix. */
type Source = 'env' | 'url' | 'secret' | 'field';
type Layer = Map<string, { value: string; source: Source; origin: string }>;

/** libpq keywords we honour (URL query, environment, fields all map onto these). */
const LIBPQ_KEYWORDS = new Set([
  'host',
  'hostaddr',
  'port',
  'dbname',
  'user',
  'password',
  'passfile',
  'connect_timeout',
  'client_encoding',
  'options',
  'application_name',
  'fallback_application_name',
  'keepalives',
  'keepalives_idle',
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'sslnegotiation',
  'sslsni',
  'sslcompression',
  'ssl_min_protocol_version',
  'ssl_max_protocol_version',
  'channel_binding',
  'target_session_attrs',
  'load_balance_hosts',
  'gssencmode',
  // pg's switch for libpq semantics: we always have them, so it is accepted and ignored.
  'uselibpqcompat',
]);

/** libpq keywords that exist but that pgstate cannot honour: named in a precise error instead of "unknown". */
const UNSUPPORTED_LIBPQ = new Set([
  'service',
  'sslpassword',
  'sslcrl',
  'sslcrldir',
  'sslcertmode',
  'requirepeer',
  'require_auth',
  'krbsrvname',
  'gsslib',
  'gssdelegation',
  'keepalives_interval',
  'keepalives_count',
  'tcp_user_timeout',
  'replication',
  'requiressl',
]);

const ENV_VARS: Record<string, string> = {
  PGHOST: 'host',
  PGHOSTADDR: 'hostaddr',
  PGPORT: 'port',
  PGDATABASE: 'dbname',
  PGUSER: 'user',
  PGPASSWORD: 'password',
  PGPASSFILE: 'passfile',
  PGOPTIONS: 'options',
  PGAPPNAME: 'application_name',
  PGCLIENTENCODING: 'client_encoding',
  PGCONNECT_TIMEOUT: 'connect_timeout',
  PGSSLMODE: 'sslmode',
  PGSSLROOTCERT: 'sslrootcert',
  PGSSLCERT: 'sslcert',
  PGSSLKEY: 'sslkey',
  PGSSLNEGOTIATION: 'sslnegotiation',
  PGSSLMINPROTOCOLVERSION: 'ssl_min_protocol_version',
  PGSSLMAXPROTOCOLVERSION: 'ssl_max_protocol_version',
  PGCHANNELBINDING: 'channel_binding',
  PGTARGETSESSIONATTRS: 'target_session_attrs',
  PGLOADBALANCEHOSTS: 'load_balance_hosts',
  PGGSSENCMODE: 'gssencmode',
};

const FIELD_KEYWORDS: Record<string, string> = {
  host: 'host',
  port: 'port',
  user: 'user',
  password: 'password',
  database: 'dbname',
  sslmode: 'sslmode',
  sslRootCert: 'sslrootcert',
  sslCert: 'sslcert',
  sslKey: 'sslkey',
  applicationName: 'application_name',
  connectTimeoutSeconds: 'connect_timeout',
  targetSessionAttrs: 'target_session_attrs',
  loadBalanceHosts: 'load_balance_hosts',
  passfile: 'passfile',
};

const KNOWN_FIELDS = new Set<string>([
  'url',
  ...Object.keys(FIELD_KEYWORDS),
  'passwordEnv',
  'schema',
  'statementTimeoutMs',
  'minConnections',
  'maxConnections',
  'idleTimeoutMs',
  'secretFile',
  'secretEnv',
]);

/** Socket directories libpq builds use; when one has a live socket and no host is set anywhere we use it, like psql. */
const DEFAULT_SOCKET_DIRS = ['/var/run/postgresql', '/tmp'];

export function parseConnectionSettings(input: ConnectionInput, options: ParseOptions = {}): ConnectionSettings {
  const env = options.env ?? process.env;
  const fields: ConnectionFields & { url?: string } = typeof input === 'string' ? { url: input } : input;
  if (typeof fields !== 'object' || fields === null) {
    throw badSetting('Connection settings must be a URL string or an object of fields.', 'Pass a postgres:// URL.');
  }
  for (const key of Object.keys(fields)) {
    if (!KNOWN_FIELDS.has(key)) {
      throw badSetting(`Unknown connection field "${key}".`, `Use one of: ${[...KNOWN_FIELDS].join(', ')}.`);
    }
  }

  const merged: Layer = new Map();
  const put = (layer: Layer) => {
    for (const [k, v] of layer) merged.set(k, v);
  };
  put(envLayer(env));
  const adapterParams: Record<string, string> = {};
  let pathSchema: string | undefined;
  if (fields.url !== undefined && fields.url !== '') {
    const parsed = isKeywordString(fields.url) ? parseKeywords(fields.url, options) : parseUrl(fields.url, options);
    put(parsed.layer);
    Object.assign(adapterParams, parsed.adapterParams);
    pathSchema = parsed.schema;
  }
  const secretLayer = readSecretDocument(fields, env);
  if (secretLayer) put(secretLayer);
  put(fieldLayer(fields, env));

  const get = (k: string) => merged.get(k);
  const value = (k: string) => {
    const v = get(k)?.value;
    return v === undefined || v === '' ? undefined : v;
  };
  const warnings: string[] = [];
  const home = env.HOME || os.homedir();

  // Addresses: libpq's comma-separated host, hostaddr and port lists (one port may serve every host).
  const addresses = hostList(get('host'), get('hostaddr'), get('port'));

  let user = value('user');
  if (user === undefined) {
    try {
      user = os.userInfo().username;
    } catch {
      user = env.USER ?? 'postgres';
    }
  }
  const database = value('dbname') ?? user;

  // Password: explicit (any layer) first, then .pgpass looked up for each host, like libpq.
  const explicitPassword = value('password');
  const hosts: HostTarget[] = addresses.map(({ host, hostaddr, port }) => {
    const target = { host: host ?? defaultSocketDir(port) ?? 'localhost', port, hostaddr };
    if (explicitPassword !== undefined) {
      return { ...target, password: explicitPassword, passwordSource: sourceToPasswordSource(get('password')) };
    }
    const passfile = value('passfile') ?? path.join(home, '.pgpass');
    const found = lookupPgpass(passfile, { host: host ?? hostaddr ?? '', port, database, user });
    if (found.warning && !warnings.includes(found.warning)) warnings.push(found.warning);
    return { ...target, password: found.password, passwordSource: found.password === undefined ? 'none' : 'pgpass' };
  });
  const first = hosts[0] as HostTarget;

  // TLS.
  const sslmodeRaw = value('sslmode');
  if (sslmodeRaw !== undefined && !SSL_MODES.includes(sslmodeRaw as SslMode)) {
    throw badSetting(
      `Unknown sslmode "${sslmodeRaw}" (${describeOrigin(get('sslmode'))}).`,
      `Use one of ${SSL_MODES.join(', ')}.`,
    );
  }
  let sslmode = (sslmodeRaw ?? 'prefer') as SslMode;
  const rootCertRaw = value('sslrootcert');
  const sslRootCertSystem = rootCertRaw === 'system';
  if (sslRootCertSystem) {
    if (sslmodeRaw !== undefined && sslmode !== 'verify-full') {
      throw badSetting(
        `sslrootcert=system needs sslmode=verify-full, but sslmode is ${sslmode}.`,
        'Remove sslmode (it then defaults to verify-full) or set sslmode=verify-full, like libpq requires.',
      );
    }
    sslmode = 'verify-full';
  }
  const sslRootCert = sslRootCertSystem
    ? undefined
    : readPem(get('sslrootcert'), 'root certificate', path.join(home, '.postgresql', 'root.crt'));
  if ((sslmode === 'verify-ca' || sslmode === 'verify-full') && sslRootCert === undefined && !sslRootCertSystem) {
    throw badSetting(
      `sslmode=${sslmode} needs a root certificate to verify the server, and none is set.`,
      'Set sslrootcert (a file path or PEM text) to the CA that signed the server certificate, or sslrootcert=system for the public CAs.',
    );
  }
  const sslCert = readPem(get('sslcert'), 'client certificate', path.join(home, '.postgresql', 'postgresql.crt'));
  const sslKey =
    sslCert === undefined
      ? readPem(get('sslkey'), 'client key', undefined)
      : readPem(get('sslkey'), 'client key', path.join(home, '.postgresql', 'postgresql.key'));
  if (sslCert !== undefined && sslKey === undefined) {
    throw badSetting(
      'A client certificate is set but no client key.',
      'Set sslkey (a file path or PEM text) to the private key of the client certificate.',
    );
  }
  if (sslKey !== undefined && sslCert === undefined) {
    throw badSetting(
      'A client key is set but no client certificate.',
      'Set sslcert (a file path or PEM text) to the certificate that belongs to the key.',
    );
  }
  for (const [key, allowed] of [
    ['gssencmode', ['disable', 'prefer', 'allow']],
    ['target_session_attrs', TARGET_SESSION_ATTRS],
    ['load_balance_hosts', ['disable', 'random']],
    ['sslnegotiation', ['postgres', 'direct']],
    // pg cannot refuse a server that skips channel binding, so `require` would be a promise we cannot keep.
    ['channel_binding', ['disable', 'prefer']],
    ['sslsni', ['0', '1']],
    ['sslcompression', ['0', '1']],
    ['keepalives', ['0', '1']],
    ['ssl_min_protocol_version', ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']],
    ['ssl_max_protocol_version', ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']],
  ] as const) {
    const v = value(key);
    if (v !== undefined && !(allowed as readonly string[]).includes(v)) {
      throw badSetting(
        `${key}=${v} is not supported (${describeOrigin(get(key))}).`,
        `Use ${key}=${allowed.join(' | ')} or remove it${key === 'gssencmode' ? ' (pgstate does not speak GSSAPI encryption)' : ''}.`,
      );
    }
  }

  const connectTimeout = parseIntSetting(get('connect_timeout'), 'connect_timeout', -Infinity);
  const opts = value('options');
  const settings: ConnectionSettings = {
    host: first.host,
    port: first.port,
    user,
    password: first.password,
    database,
    sslmode,
    sslRootCert,
    sslCert,
    sslKey,
    applicationName: value('application_name') ?? value('fallback_application_name') ?? 'pgstate',
    // libpq: zero or negative waits forever; the minimum is 2 seconds.
    connectTimeoutMs:
      connectTimeout === undefined || connectTimeout <= 0 ? undefined : Math.max(connectTimeout, 2) * 1000,
    statementTimeoutMs: numberField(fields.statementTimeoutMs, 'statementTimeoutMs', 0),
    options: opts,
    schema: fields.schema ?? pathSchema,
    pool: poolSettings(fields),
    adapterParams,
    hostaddr: first.hostaddr,
    sslRootCertSystem,
    searchPath: opts === undefined ? undefined : searchPathFromOptions(opts),
    clientEncoding: value('client_encoding'),
    fallbackApplicationName: value('fallback_application_name'),
    keepAlive: value('keepalives') !== '0',
    keepAliveIdleMs: (() => {
      const idle = parseIntSetting(get('keepalives_idle'), 'keepalives_idle', 0);
      return idle === undefined ? undefined : idle * 1000;
    })(),
    channelBinding: (value('channel_binding') ?? 'prefer') as 'disable' | 'prefer',
    sslMinProtocolVersion: value('ssl_min_protocol_version') as TlsVersion | undefined,
    sslMaxProtocolVersion: value('ssl_max_protocol_version') as TlsVersion | undefined,
    sslSni: value('sslsni') !== '0',
    sslNegotiation: value('sslnegotiation') === 'direct' ? 'direct' : 'postgres',
    passwordSource: first.passwordSource,
    hosts,
    targetSessionAttrs: (value('target_session_attrs') ?? 'any') as TargetSessionAttrs,
    loadBalanceHosts: value('load_balance_hosts') === 'random' ? 'random' : 'disable',
    warnings,
  };
  for (const { host } of hosts) {
    if (host.startsWith('/') && (sslmode === 'verify-ca' || sslmode === 'verify-full' || sslmode === 'require')) {
      warnings.push(`sslmode=${sslmode} has no effect on the Unix socket ${host}: libpq never uses TLS there.`);
    }
  }
  return printSafe(settings);
}

function sourceToPasswordSource(entry: { source: Source } | undefined): PasswordSource {
  return entry?.source ?? 'none';
}

function describeOrigin(entry: { origin: string } | undefined): string {
  return entry ? `from ${entry.origin}` : 'default';
}

function envLayer(env: Record<string, string | undefined>): Layer {
  const layer: Layer = new Map();
  for (const [name, keyword] of Object.entries(ENV_VARS)) {
    const v = env[name];
    if (v !== undefined && v !== '') layer.set(keyword, { value: v, source: 'env', origin: name });
  }
  return layer;
}

function fieldLayer(fields: ConnectionFields, env: Record<string, string | undefined>): Layer {
  const layer: Layer = new Map();
  for (const [field, keyword] of Object.entries(FIELD_KEYWORDS)) {
    const v = (fields as Record<string, unknown>)[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw badSetting(`The connection field "${field}" must be a string or number.`, `Fix the value of ${field}.`);
    }
    layer.set(keyword, { value: String(v), source: 'field', origin: `the ${field} field` });
  }
  if (fields.passwordEnv !== undefined && fields.password === undefined) {
    const v = env[fields.passwordEnv];
    if (v === undefined) {
      throw badSetting(
        `The password environment variable ${fields.passwordEnv} is not set.`,
        `Export ${fields.passwordEnv}, or remove passwordEnv.`,
      );
    }
    layer.set('password', { value: v, source: 'field', origin: `environment variable ${fields.passwordEnv}` });
  }
  return layer;
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw badSetting(
      `The ${what} in the connection URL is not valid percent-encoding.`,
      `Percent-encode special characters in the ${what} (for example @ as %40, % as %25).`,
    );
  }
}

/** `host=h1,h2 port=5432 dbname=app`: libpq's keyword/value form (no scheme, starts with a keyword and `=`). */
function isKeywordString(text: string): boolean {
  return /^\s*[a-z_]+\s*=/i.test(text);
}

/** libpq's keyword/value grammar: `key = value` pairs split by spaces; values may be 'single quoted' with \\ and \'. */
function parseKeywords(
  text: string,
  options: ParseOptions,
): { layer: Layer; adapterParams: Record<string, string>; schema?: string } {
  const layer: Layer = new Map();
  const adapterParams: Record<string, string> = {};
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i] as string)) i++;
  };
  for (skipSpace(); i < text.length; skipSpace()) {
    const keyStart = i;
    while (i < text.length && /[a-z0-9_]/i.test(text[i] as string)) i++;
    const name = text.slice(keyStart, i);
    skipSpace();
    if (name === '' || text[i] !== '=') {
      throw badSetting(
        // Only the keyword and a position: the text around could be a password.
        `The connection string has an entry without "keyword=value" at character ${keyStart + 1}${name ? ` (after "${name.slice(0, 40)}")` : ''}.`,
        "Write keyword=value pairs separated by spaces (quote values with spaces: options='-c a=b').",
      );
    }
    i++;
    skipSpace();
    let v = '';
    if (text[i] === "'") {
      for (i++; ; i++) {
        if (i >= text.length) {
          throw badSetting(
            `The quoted value of ${name} has no closing quote.`,
            "End it with ' (escape ' inside as \\').",
          );
        }
        const ch = text[i] as string;
        if (ch === '\\' && i + 1 < text.length) v += text[++i];
        else if (ch === "'") break;
        else v += ch;
      }
      i++;
    } else {
      while (i < text.length && !/\s/.test(text[i] as string)) {
        const ch = text[i] as string;
        v += ch === '\\' && i + 1 < text.length ? text[++i] : ch;
        i++;
      }
    }
    if (options.adapterParams?.includes(name)) adapterParams[name] = v;
    else if (LIBPQ_KEYWORDS.has(name)) layer.set(name, { value: v, source: 'url', origin: `keyword ${name}` });
    else if (UNSUPPORTED_LIBPQ.has(name)) {
      throw badSetting(
        `The connection parameter "${name}" is a libpq option pgstate does not support.`,
        `Remove ${name} from the connection string.`,
      );
    } else {
      throw badSetting(
        `Unknown connection keyword "${name.slice(0, 60)}".`,
        'Check the spelling; pgstate accepts the libpq keywords listed in the @pgstate/core README.',
      );
    }
  }
  return { layer, adapterParams };
}

/** libpq's URI grammar: postgres[ql]://[userinfo@][host][:port][/dbname][?param=value&...]. */
function parseUrl(
  url: string,
  options: ParseOptions,
): { layer: Layer; adapterParams: Record<string, string>; schema?: string } {
  const scheme = /^(postgres|postgresql):\/\//i.exec(url);
  if (!scheme) {
    const shown = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0];
    throw badSetting(
      shown ? `The URL scheme "${shown}" is not PostgreSQL.` : 'The connection string is not a postgres:// URL.',
      'Use a postgres:// or postgresql:// URL, e.g. postgres://user@host:5432/db?sslmode=verify-full.',
    );
  }
  const layer: Layer = new Map();
  const set = (k: string, v: string, origin: string) => layer.set(k, { value: v, source: 'url', origin });
  let rest = url.slice(scheme[0].length);
  const hashAt = rest.indexOf('#');
  if (hashAt >= 0) rest = rest.slice(0, hashAt);
  const authorityEnd = rest.search(/[/?]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  rest = authorityEnd < 0 ? '' : rest.slice(authorityEnd);

  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : undefined;
  const hostport = at >= 0 ? authority.slice(at + 1) : authority;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const user = decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, 'user name');
    if (user) set('user', user, 'the URL');
    if (colon >= 0) set('password', decode(userinfo.slice(colon + 1), 'password'), 'the URL');
  }
  // libpq: `h1:p1,h2,[::1]:p3` is a host list and a port list of the same length (an empty port is the default).
  const hostParts: string[] = [];
  const portParts: string[] = [];
  for (const entry of hostport.split(',')) {
    let hostPart = entry;
    let portPart = '';
    if (hostPart.startsWith('[')) {
      const close = hostPart.indexOf(']');
      if (close < 0) throw badSetting('The IPv6 address in the URL has no closing "]".', 'Write it as [::1]:5432.');
      const after = hostPart.slice(close + 1);
      hostPart = hostPart.slice(1, close);
      if (after.startsWith(':')) portPart = after.slice(1);
      else if (after !== '')
        throw badSetting('Unexpected text after the IPv6 address in the URL.', 'Write [::1]:5432.');
    } else {
      const colon = hostPart.lastIndexOf(':');
      if (colon >= 0) {
        portPart = hostPart.slice(colon + 1);
        hostPart = hostPart.slice(0, colon);
      }
    }
    hostParts.push(decode(hostPart, 'host'));
    portParts.push(portPart);
  }
  if (hostParts.some(Boolean)) set('host', hostParts.join(','), 'the URL');
  if (portParts.some(Boolean)) set('port', portParts.join(','), 'the URL');

  let schema: string | undefined;
  let query = '';
  const q = rest.indexOf('?');
  const pathname = q >= 0 ? rest.slice(0, q) : rest;
  if (q >= 0) query = rest.slice(q + 1);
  const segments = pathname.split('/').slice(1);
  if (segments.length > 0 && segments[segments.length - 1] === '') segments.pop();
  if (segments.length > 2 || (segments.length === 2 && !options.allowSchemaPath)) {
    throw badSetting(
      `The URL path has ${segments.length} segments; expected /database${options.allowSchemaPath ? ' or /database/schema' : ''}.`,
      options.allowSchemaPath
        ? 'Use postgres://host/database/schema.'
        : 'Use postgres://host/database; set the schema with the adapter’s schema setting.',
    );
  }
  if (segments[0]) set('dbname', decode(segments[0], 'database name'), 'the URL');
  if (segments[1]) schema = decode(segments[1], 'schema name');

  const adapterParams: Record<string, string> = {};
  if (query !== '') {
    for (const pair of query.split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq <= 0) {
        throw badSetting(
          `The URL query has an entry without "name=value": "${decode(pair.split('=')[0] ?? '', 'query').slice(0, 60)}".`,
          'Write query parameters as name=value, separated by &.',
        );
      }
      const name = decode(pair.slice(0, eq), 'query parameter name');
      const v = decode(pair.slice(eq + 1), `value of ${name}`);
      if (options.adapterParams?.includes(name)) {
        adapterParams[name] = v;
      } else if (LIBPQ_KEYWORDS.has(name)) {
        set(name, v, `URL parameter ${name}`);
      } else if (UNSUPPORTED_LIBPQ.has(name)) {
        throw badSetting(
          `The connection parameter "${name}" is a libpq option pgstate does not support.`,
          `Remove ${name} from the URL.`,
        );
      } else {
        const known = [...(options.adapterParams ?? []), 'sslmode', 'sslrootcert', 'application_name', 'options'];
        throw badSetting(
          `Unknown connection parameter "${name.slice(0, 60)}" in the URL.`,
          `Check the spelling; accepted here: ${known.join(', ')} and the other libpq parameters (see the @pgstate/core README).${name === 'ssl' ? ' Use sslmode=require instead of ssl=true.' : ''}`,
        );
      }
    }
  }
  return { layer, adapterParams, schema };
}

function parsePort(text: string, entry: { origin: string }): number {
  if (text === '') return 5432;
  const port = Number(text);
  if (!/^\d+$/.test(text) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw badSetting(
      `The port "${text.slice(0, 20)}" (${describeOrigin(entry)}) is not a port number.`,
      'Use a number between 1 and 65535 (PostgreSQL listens on 5432 by default).',
    );
  }
  return port;
}

type LayerEntry = { value: string; origin: string } | undefined;

/**
 * libpq's rules for host, hostaddr and port lists: `host` and `hostaddr` must have the same number of entries when
 * both are given; `port` has one entry (used for every host) or one per host; an empty entry is the default (the
 * local socket directory or localhost; port 5432). `host` is undefined where the user gave none.
 */
function hostList(
  hostEntry: LayerEntry,
  hostaddrEntry: LayerEntry,
  portEntry: LayerEntry,
): Array<{ host: string | undefined; hostaddr: string | undefined; port: number }> {
  const split = (entry: LayerEntry) =>
    entry === undefined || entry.value === '' ? undefined : entry.value.split(',').map((s) => s.trim());
  const hosts = split(hostEntry);
  const hostaddrs = split(hostaddrEntry);
  if (hosts && hostaddrs && hosts.length !== hostaddrs.length) {
    throw badSetting(
      `${hosts.length} host names (${describeOrigin(hostEntry)}) do not match ${hostaddrs.length} hostaddr values (${describeOrigin(hostaddrEntry)}).`,
      'Give one hostaddr per host, in the same order (or leave hostaddr out).',
    );
  }
  const count = (hosts ?? hostaddrs ?? ['']).length;
  const ports = split(portEntry) ?? [''];
  if (ports.length !== 1 && ports.length !== count) {
    throw badSetting(
      `${ports.length} ports (${describeOrigin(portEntry)}) do not match ${count} host${count === 1 ? '' : 's'}${hosts ? ` (${describeOrigin(hostEntry)})` : ''}.`,
      'Give one port for all hosts, or one port per host in the same order (e.g. host=h1,h2 port=5432,5433).',
    );
  }
  return Array.from({ length: count }, (_, i) => ({
    host: hosts?.[i] || undefined,
    hostaddr: hostaddrs?.[i] || undefined,
    port: parsePort(ports[ports.length === 1 ? 0 : i] as string, portEntry ?? { origin: 'default' }),
  }));
}

function parseIntSetting(
  entry: { value: string; origin: string } | undefined,
  name: string,
  min: number,
): number | undefined {
  if (entry === undefined || entry.value === '') return undefined;
  const n = Number(entry.value.trim());
  if (!/^\s*-?\d+\s*$/.test(entry.value) || n < min) {
    throw badSetting(
      `${name}="${entry.value.slice(0, 20)}" (${describeOrigin(entry)}) is not a whole number${min === 0 ? ' >= 0' : ''}.`,
      `Set ${name} to a whole number of seconds.`,
    );
  }
  return n;
}

function numberField(v: number | string | undefined, name: string, min: number): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw badSetting(`${name} must be a whole number >= ${min}, got "${String(v).slice(0, 20)}".`, `Fix ${name}.`);
  }
  return n;
}

function poolSettings(fields: ConnectionFields): ConnectionSettings['pool'] {
  const min = numberField(fields.minConnections, 'minConnections', 0) ?? 0;
  const max = numberField(fields.maxConnections, 'maxConnections', 1) ?? Math.max(10, min);
  if (min > max) {
    throw badSetting(
      `minConnections (${min}) is larger than maxConnections (${max}).`,
      'Set minConnections <= maxConnections.',
    );
  }
  return { min, max, idleTimeoutMs: numberField(fields.idleTimeoutMs, 'idleTimeoutMs', 0) ?? 10_000 };
}

/**
 * A certificate or key given as PEM text or as a file path; read now so errors show up at parse time.
 * `defaultFile` is libpq's default location, used only when it exists.
 */
function readPem(
  entry: { value: string; origin: string } | undefined,
  what: string,
  defaultFile: string | undefined,
): string | undefined {
  const v = entry?.value;
  if (v === undefined || v === '') {
    if (defaultFile && fs.existsSync(defaultFile)) return fs.readFileSync(defaultFile, 'utf8');
    return undefined;
  }
  if (v.includes('-----BEGIN ')) return v;
  try {
    const text = fs.readFileSync(v, 'utf8');
    if (!text.includes('-----BEGIN ')) {
      throw badSetting(`The ${what} file "${v}" is not PEM.`, `Point ${what} to a PEM file (-----BEGIN ...).`);
    }
    return text;
  } catch (error) {
    if (error instanceof Error && error.name === 'PgStateError') throw error;
    throw badSetting(
      `The ${what} file "${v.slice(0, 200)}" (${describeOrigin(entry)}) cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`,
      `Check the path and its permissions, or pass the PEM text itself.`,
    );
  }
}

function defaultSocketDir(port: number): string | undefined {
  return DEFAULT_SOCKET_DIRS.find((dir) => fs.existsSync(path.join(dir, `.s.PGSQL.${port}`)));
}

/** Finds `search_path` in libpq `options` (`-c search_path=a,b`, `-csearch_path=a`, `--search_path=a`). */
function searchPathFromOptions(options: string): string[] | undefined {
  const tokens: string[] = [];
  let current = '';
  for (let i = 0; i < options.length; i++) {
    const ch = options[i] as string;
    if (ch === '\\' && i + 1 < options.length) current += options[++i];
    else if (/\s/.test(ch)) {
      if (current) tokens.push(current);
      current = '';
    } else current += ch;
  }
  if (current) tokens.push(current);
  let found: string | undefined;
  for (let i = 0; i < tokens.length; i++) {
    let t = tokens[i] as string;
    if (t === '-c') t = tokens[++i] ?? '';
    else if (t.startsWith('-c')) t = t.slice(2);
    else if (t.startsWith('--')) t = t.slice(2);
    else continue;
    const eq = t.indexOf('=');
    if (eq > 0 && t.slice(0, eq).replaceAll('-', '_').toLowerCase() === 'search_path') found = t.slice(eq + 1);
  }
  return found
    ?.split(',')
    .map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
    .filter(Boolean);
}

/** The common cloud secret format, from a file or an environment variable. */
function readSecretDocument(fields: ConnectionFields, env: Record<string, string | undefined>): Layer | undefined {
  let text: string | undefined;
  let origin: string;
  if (fields.secretFile !== undefined && fields.secretEnv !== undefined) {
    throw badSetting('Both secretFile and secretEnv are set.', 'Use one secret document source.');
  }
  if (fields.secretFile !== undefined) {
    origin = `secret file ${fields.secretFile}`;
    try {
      text = fs.readFileSync(fields.secretFile, 'utf8');
    } catch (error) {
      throw badSetting(
        `The secret file "${fields.secretFile}" cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`,
        'Check the path and permissions of secretFile.',
      );
    }
  } else if (fields.secretEnv !== undefined) {
    origin = `secret environment variable ${fields.secretEnv}`;
    text = env[fields.secretEnv];
    if (text === undefined || text === '') {
      throw badSetting(
        `The secret environment variable ${fields.secretEnv} is not set.`,
        `Export ${fields.secretEnv} with the JSON secret document, or remove secretEnv.`,
      );
    }
  } else {
    return undefined;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // The parser's message quotes the input, which holds the password: never pass it on.
    throw badSetting(
      `The ${origin} is not valid JSON.`,
      'Store a JSON object like {"username":"...","password":"...","host":"...","port":5432,"dbname":"..."}.',
    );
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw badSetting(`The ${origin} is not a JSON object.`, 'Store a JSON object with username, password, host...');
  }
  const record = doc as Record<string, unknown>;
  const engine = record.engine;
  if (
    engine !== undefined &&
    !(typeof engine === 'string' && /^(postgres|postgresql|aurora-postgresql)$/i.test(engine))
  ) {
    throw badSetting(
      `The ${origin} is for engine ${JSON.stringify(String(engine).slice(0, 40))}, not PostgreSQL.`,
      'Point pgstate at the secret of a PostgreSQL database (engine "postgres").',
    );
  }
  const layer: Layer = new Map();
  for (const [key, keyword] of [
    ['username', 'user'],
    ['password', 'password'],
    ['host', 'host'],
    ['port', 'port'],
    ['dbname', 'dbname'],
  ] as const) {
    const v = record[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' && !(typeof v === 'number' && key === 'port')) {
      throw badSetting(`The "${key}" in the ${origin} must be a string.`, `Fix "${key}" in the secret document.`);
    }
    layer.set(keyword, { value: String(v), source: 'secret', origin });
  }
  return layer;
}
