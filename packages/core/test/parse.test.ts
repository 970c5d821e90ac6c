import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import util from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import {
  type ConnectionInput,
  type ConnectionSettings,
  type HostTarget,
  onPrimary,
  type ParseOptions,
  parseConnectionSettings,
  settingsForHost,
  tlsAttempts,
} from '../src/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-parse-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const pem = (label: string) => `-----BEGIN CERTIFICATE-----\n${label}\n-----END CERTIFICATE-----\n`;
const caFile = path.join(dir, 'ca.crt');
fs.writeFileSync(caFile, pem('ca'));
const certFile = path.join(dir, 'client.crt');
fs.writeFileSync(certFile, pem('client'));
const keyFile = path.join(dir, 'client.key');
fs.writeFileSync(keyFile, '-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n');
const secretFile = path.join(dir, 'secret.json');
fs.writeFileSync(
  secretFile,
  JSON.stringify({
    username: 'sam',
    password: 'from-file',
    engine: 'postgres',
    host: 'rds.example',
    port: 5433,
    dbname: 'prod',
  }),
);
// HOME without .pgpass or ~/.postgresql, so nothing from the machine leaks into the expectations.
const home = path.join(dir, 'home');
fs.mkdirSync(home);
const baseEnv = { HOME: home };

/** How each connection attempt treats TLS: plain, tls (no checks), tls+ca, tls+ca+host. */
function attempts(settings: ConnectionSettings): string[] {
  const fakeCert = { subject: { CN: 'elsewhere.invalid' }, subjectaltname: 'DNS:elsewhere.invalid' };
  return tlsAttempts(settings).map((a) => {
    if (a === false) return 'plain';
    if (a.rejectUnauthorized === false) return 'tls';
    const hostError = a.checkServerIdentity?.(settings.host, fakeCert as unknown as tls.PeerCertificate);
    return hostError ? 'tls+ca+host' : 'tls+ca';
  });
}

interface Case {
  name: string;
  input: ConnectionInput;
  options?: ParseOptions;
  env?: Record<string, string>;
  expect?: Partial<ConnectionSettings> & { attempts?: string[] };
  error?: { code: string; message: RegExp };
}

const cases: Case[] = [
  {
    name: 'full URL with every address part',
    input: 'postgres://alice:pw@db.example.com:6543/app',
    expect: {
      host: 'db.example.com',
      port: 6543,
      user: 'alice',
      password: 'pw',
      database: 'app',
      passwordSource: 'url',
    },
  },
  {
    name: 'postgresql:// scheme and percent-encoded credentials',
    input: 'postgresql://al%40ce:p%40ss%2Fw%3Ard@h/d%20b',
    expect: { user: 'al@ce', password: 'p@ss/w:rd', database: 'd b', port: 5432 },
  },
  {
    name: 'sslmode defaults to prefer',
    input: 'postgres://u@h/d',
    expect: { sslmode: 'prefer', attempts: ['tls', 'plain'] },
  },
  {
    name: 'sslmode=disable',
    input: 'postgres://u@h/d?sslmode=disable',
    expect: { sslmode: 'disable', attempts: ['plain'] },
  },
  {
    name: 'sslmode=allow',
    input: 'postgres://u@h/d?sslmode=allow',
    expect: { sslmode: 'allow', attempts: ['plain', 'tls'] },
  },
  { name: 'sslmode=prefer', input: 'postgres://u@h/d?sslmode=prefer', expect: { attempts: ['tls', 'plain'] } },
  { name: 'sslmode=require checks nothing', input: 'postgres://u@h/d?sslmode=require', expect: { attempts: ['tls'] } },
  {
    name: 'sslmode=require with a root cert verifies the CA (libpq)',
    input: `postgres://u@h/d?sslmode=require&sslrootcert=${encodeURIComponent(caFile)}`,
    expect: { attempts: ['tls+ca'], sslRootCert: pem('ca') },
  },
  {
    name: 'sslmode=verify-ca verifies the chain, not the host name',
    input: `postgres://u@h/d?sslmode=verify-ca&sslrootcert=${encodeURIComponent(caFile)}`,
    expect: { attempts: ['tls+ca'] },
  },
  {
    name: 'sslmode=verify-full verifies chain and host name',
    input: `postgres://u@h/d?sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}`,
    expect: { attempts: ['tls+ca+host'] },
  },
  {
    name: "pg's uselibpqcompat switch is accepted and require keeps libpq's meaning",
    input: 'postgres://u@h/d?sslmode=require&uselibpqcompat=true',
    expect: { attempts: ['tls'] },
  },
  {
    name: 'sslrootcert=system forces verify-full',
    input: 'postgres://u@h/d?sslrootcert=system',
    expect: { sslmode: 'verify-full', sslRootCertSystem: true, attempts: ['tls+ca+host'] },
  },
  {
    name: 'client certificate and key from files',
    input: `postgres://u@h/d?sslmode=verify-full&sslrootcert=${caFile}&sslcert=${certFile}&sslkey=${keyFile}`,
    expect: { sslCert: pem('client') },
  },
  {
    name: 'bare postgres:// from the PG* environment',
    input: 'postgres://',
    env: {
      PGHOST: 'envhost',
      PGPORT: '5499',
      PGUSER: 'envuser',
      PGPASSWORD: 'envpw',
      PGDATABASE: 'envdb',
      PGSSLMODE: 'verify-ca',
      PGSSLROOTCERT: caFile,
      PGSSLCERT: certFile,
      PGSSLKEY: keyFile,
      PGCONNECT_TIMEOUT: '1',
      PGAPPNAME: 'envapp',
      PGOPTIONS: '-c search_path=envschema',
    },
    expect: {
      host: 'envhost',
      port: 5499,
      user: 'envuser',
      password: 'envpw',
      passwordSource: 'env',
      database: 'envdb',
      sslmode: 'verify-ca',
      sslRootCert: pem('ca'),
      sslCert: pem('client'),
      applicationName: 'envapp',
      connectTimeoutMs: 2000, // libpq: the minimum is 2 s
      searchPath: ['envschema'],
      attempts: ['tls+ca'],
    },
  },
  {
    name: 'the URL overrides the environment',
    input: 'postgres://urluser@urlhost/urldb?sslmode=disable',
    env: { PGHOST: 'envhost', PGUSER: 'envuser', PGDATABASE: 'envdb', PGSSLMODE: 'require' },
    expect: { host: 'urlhost', user: 'urluser', database: 'urldb', sslmode: 'disable' },
  },
  {
    name: 'unix socket directory as a query parameter (TLS never used there)',
    input: 'postgres:///db?host=/var/run/postgresql&sslmode=require',
    expect: { host: '/var/run/postgresql', database: 'db', attempts: ['plain'] },
  },
  {
    name: 'unix socket directory as a percent-encoded host',
    input: 'postgres://u@%2Ftmp%2Fpgsock:5433/db',
    expect: { host: '/tmp/pgsock', port: 5433, attempts: ['plain'] },
  },
  { name: 'IPv6 host', input: 'postgres://u@[::1]:5433/db', expect: { host: '::1', port: 5433 } },
  {
    name: 'options with search_path, application_name, connect_timeout',
    input: 'postgres://u@h/d?options=-c%20search_path%3Dmine,public&application_name=deployer&connect_timeout=10',
    expect: {
      options: '-c search_path=mine,public',
      searchPath: ['mine', 'public'],
      applicationName: 'deployer',
      connectTimeoutMs: 10_000,
    },
  },
  {
    name: 'connect_timeout=0 waits forever',
    input: 'postgres://u@h/d?connect_timeout=0',
    expect: { connectTimeoutMs: undefined },
  },
  {
    name: 'individual fields override the URL',
    input: {
      url: 'postgres://urluser:urlpw@urlhost:1111/urldb?sslmode=disable',
      host: 'fieldhost',
      port: '2222',
      user: 'fielduser',
      password: 'fieldpw',
      database: 'fielddb',
      schema: 'fieldschema',
      sslmode: 'verify-full',
      sslRootCert: pem('inline ca'),
      sslCert: pem('inline cert'),
      sslKey: '-----BEGIN PRIVATE KEY-----\ninline\n-----END PRIVATE KEY-----',
      minConnections: 2,
      maxConnections: 7,
      idleTimeoutMs: 500,
      statementTimeoutMs: 9000,
      connectTimeoutSeconds: 5,
      applicationName: 'fields',
    },
    expect: {
      host: 'fieldhost',
      port: 2222,
      user: 'fielduser',
      password: 'fieldpw',
      passwordSource: 'field',
      database: 'fielddb',
      schema: 'fieldschema',
      sslmode: 'verify-full',
      sslRootCert: pem('inline ca'),
      sslCert: pem('inline cert'),
      pool: { min: 2, max: 7, idleTimeoutMs: 500 },
      statementTimeoutMs: 9000,
      connectTimeoutMs: 5000,
      applicationName: 'fields',
      attempts: ['tls+ca+host'],
    },
  },
  {
    name: 'fields alone, no URL',
    input: { host: 'h', user: 'u', database: 'd' },
    expect: { host: 'h', user: 'u', database: 'd', port: 5432 },
  },
  {
    name: 'password from a named environment variable (Meltano style)',
    input: { url: 'postgres://u@h/d', passwordEnv: 'MY_DB_PASSWORD' },
    env: { MY_DB_PASSWORD: 'from-env-var' },
    expect: { password: 'from-env-var' },
  },
  {
    name: "Meltano's /database/schema path form when the adapter allows it",
    input: 'postgres://u:p@h:5432/warehouse/meltano_state',
    options: { allowSchemaPath: true },
    expect: { database: 'warehouse', schema: 'meltano_state' },
  },
  {
    name: 'adapter parameters are returned, not sent to the server',
    input: 'postgres://u@h/d?table=stacks&schema=infra&sslmode=disable',
    options: { adapterParams: ['table', 'schema'] },
    expect: { adapterParams: { table: 'stacks', schema: 'infra' }, options: undefined, sslmode: 'disable' },
  },
  {
    name: 'secret document from an environment variable',
    input: { secretEnv: 'DB_SECRET' },
    env: {
      DB_SECRET: JSON.stringify({
        username: 'svc',
        password: 'from-secret',
        engine: 'postgres',
        host: 'db.internal',
        port: '6432',
        dbname: 'state',
      }),
    },
    expect: {
      user: 'svc',
      password: 'from-secret',
      passwordSource: 'secret',
      host: 'db.internal',
      port: 6432,
      database: 'state',
    },
  },
  {
    name: 'secret document from a file, URL query and fields on top',
    input: { url: 'postgres://ignored-host/ignored-db?sslmode=require', secretFile, database: 'override' },
    expect: {
      user: 'sam',
      password: 'from-file',
      host: 'rds.example',
      port: 5433,
      database: 'override',
      sslmode: 'require',
    },
  },
  {
    name: 'hostaddr connects to an address while host stays the name',
    input: 'postgres://u@db.example.com/d?hostaddr=10.0.0.5',
    expect: { host: 'db.example.com', hostaddr: '10.0.0.5' },
  },
  {
    name: 'user defaults to the OS user, database to the user',
    input: 'postgres://h',
    expect: { user: os.userInfo().username, database: os.userInfo().username },
  },
  // Invalid inputs.
  {
    name: 'unknown query parameter is named',
    input: 'postgres://u@h/d?sslmod=disable',
    error: { code: 'BAD_SETTING', message: /"sslmod"/ },
  },
  {
    name: 'pg-style ssl=true is not libpq',
    input: 'postgres://u@h/d?ssl=true',
    error: { code: 'BAD_SETTING', message: /"ssl"/ },
  },
  {
    name: 'unsupported libpq parameter',
    input: 'postgres://u@h/d?service=prod',
    error: { code: 'BAD_SETTING', message: /service/ },
  },
  {
    name: 'unknown sslmode',
    input: 'postgres://u@h/d?sslmode=required',
    error: { code: 'BAD_SETTING', message: /sslmode "required"/ },
  },
  {
    name: 'bad sslmode from the environment names PGSSLMODE',
    input: 'postgres://',
    env: { PGSSLMODE: 'on' },
    error: { code: 'BAD_SETTING', message: /PGSSLMODE/ },
  },
  {
    name: 'port out of range',
    input: 'postgres://u@h:99999/d',
    error: { code: 'BAD_SETTING', message: /port "99999"/ },
  },
  {
    name: 'port not a number',
    input: { host: 'h', port: 'fivefour' },
    error: { code: 'BAD_SETTING', message: /port/ },
  },
  { name: 'not a postgres URL', input: 'mysql://u@h/d', error: { code: 'BAD_SETTING', message: /mysql:/ } },
  {
    name: 'more ports than hosts (keyword form)',
    input: 'host=h1,h2 port=5432,5433,5434',
    error: { code: 'BAD_SETTING', message: /3 ports \(from keyword port\) do not match 2 hosts/ },
  },
  {
    name: 'two ports for three hosts from the environment',
    input: 'postgres:///d',
    env: { PGHOST: 'a,b,c', PGPORT: '1,2' },
    error: { code: 'BAD_SETTING', message: /2 ports \(from PGPORT\) do not match 3 hosts \(from PGHOST\)/ },
  },
  {
    name: 'hostaddr count differs from host count',
    input: 'postgres://u@h1,h2/d?hostaddr=10.0.0.1',
    error: { code: 'BAD_SETTING', message: /2 host names .* 1 hostaddr/ },
  },
  {
    name: 'a bad port inside a host list',
    input: 'postgres://u@h1:5432,h2:nope/d',
    error: { code: 'BAD_SETTING', message: /port "nope"/ },
  },
  {
    name: 'unknown target_session_attrs',
    input: 'postgres://u@h1,h2/d?target_session_attrs=master',
    error: { code: 'BAD_SETTING', message: /target_session_attrs=master .*URL parameter target_session_attrs/ },
  },
  {
    name: 'unknown load_balance_hosts',
    input: 'postgres://u@h1,h2/d',
    env: { PGLOADBALANCEHOSTS: 'roundrobin' },
    error: { code: 'BAD_SETTING', message: /load_balance_hosts=roundrobin .*PGLOADBALANCEHOSTS/ },
  },
  {
    name: 'keyword form: unterminated quote',
    input: "host=h password='S3cr3t",
    error: { code: 'BAD_SETTING', message: /password has no closing quote/ },
  },
  {
    name: 'keyword form: an entry without = never echoes the text',
    input: 'host=h password S3cr3t',
    error: { code: 'BAD_SETTING', message: /without "keyword=value" at character 8 \(after "password"\)/ },
  },
  {
    name: 'keyword form: unknown keyword',
    input: 'host=h colour=blue',
    error: { code: 'BAD_SETTING', message: /Unknown connection keyword "colour"/ },
  },
  {
    name: 'schema path without allowSchemaPath',
    input: 'postgres://u@h/db/schema',
    error: { code: 'BAD_SETTING', message: /2 segments/ },
  },
  {
    name: 'verify-full without a root certificate',
    input: 'postgres://u@h/d?sslmode=verify-full',
    error: { code: 'BAD_SETTING', message: /root certificate/ },
  },
  {
    name: 'missing root certificate file',
    input: 'postgres://u@h/d?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem',
    error: { code: 'BAD_SETTING', message: /cannot be read \(ENOENT\)/ },
  },
  {
    name: 'client certificate without key',
    input: { host: 'h', sslCert: certFile },
    error: { code: 'BAD_SETTING', message: /no client key/ },
  },
  {
    name: 'sslrootcert=system with a weaker sslmode',
    input: 'postgres://u@h/d?sslrootcert=system&sslmode=require',
    error: { code: 'BAD_SETTING', message: /verify-full/ },
  },
  { name: 'unknown field', input: { hots: 'x' } as ConnectionInput, error: { code: 'BAD_SETTING', message: /"hots"/ } },
  {
    name: 'minConnections above maxConnections',
    input: { host: 'h', minConnections: 5, maxConnections: 2 },
    error: { code: 'BAD_SETTING', message: /minConnections/ },
  },
  {
    name: 'secret document for another engine',
    input: { secretEnv: 'S' },
    env: { S: '{"engine":"mysql","username":"x"}' },
    error: { code: 'BAD_SETTING', message: /mysql/ },
  },
  {
    name: 'secret document that is not JSON',
    input: { secretEnv: 'S' },
    env: { S: '{"password": "S3cr3t-notjson' },
    error: { code: 'BAD_SETTING', message: /not valid JSON/ },
  },
  {
    name: 'secret environment variable missing',
    input: { secretEnv: 'NOPE' },
    error: { code: 'BAD_SETTING', message: /NOPE is not set/ },
  },
  {
    name: 'bad percent-encoding in the password',
    input: 'postgres://u:100%@h/d',
    error: { code: 'BAD_SETTING', message: /password/ },
  },
  {
    name: 'connect_timeout not a number',
    input: 'postgres://u@h/d?connect_timeout=soon',
    error: { code: 'BAD_SETTING', message: /connect_timeout/ },
  },
];

const h = (host: string, port: number, extra: Record<string, unknown> = {}) => ({ host, port, ...extra }) as HostTarget;
cases.push(
  {
    name: 'multi-host URL with a port each, read-write',
    input: 'postgres://u:pw@127.0.0.1:5433,127.0.0.1:5434/db?target_session_attrs=read-write',
    expect: {
      host: '127.0.0.1',
      port: 5433,
      password: 'pw',
      hosts: [h('127.0.0.1', 5433, { password: 'pw' }), h('127.0.0.1', 5434, { password: 'pw' })],
      targetSessionAttrs: 'read-write',
      loadBalanceHosts: 'disable',
    },
  },
  {
    name: 'a host without a port in a URL list gets 5432; IPv6 in brackets',
    input: 'postgres://u@db1,[::1]:6000,db3:7000/db',
    expect: { hosts: [h('db1', 5432), h('::1', 6000), h('db3', 7000)], targetSessionAttrs: 'any' },
  },
  {
    name: 'one URL port list entry per host, PGPORT ignored when the URL has ports',
    input: 'postgres://u@db1:1111,db2/db',
    env: { PGPORT: '9999' },
    expect: { hosts: [h('db1', 1111), h('db2', 5432)] },
  },
  {
    name: 'URL hosts without ports take the one PGPORT',
    input: 'postgres://u@db1,db2/db',
    env: { PGPORT: '6432' },
    expect: { hosts: [h('db1', 6432), h('db2', 6432)] },
  },
  {
    name: 'PGHOST/PGPORT lists, PGTARGETSESSIONATTRS, PGLOADBALANCEHOSTS',
    input: 'postgres:///db',
    env: {
      PGHOST: 'a.example,b.example',
      PGPORT: '5432,5433',
      PGTARGETSESSIONATTRS: 'prefer-standby',
      PGLOADBALANCEHOSTS: 'random',
    },
    expect: {
      hosts: [h('a.example', 5432), h('b.example', 5433)],
      targetSessionAttrs: 'prefer-standby',
      loadBalanceHosts: 'random',
    },
  },
  {
    name: 'keyword form: host and port lists, quoted values',
    input: "host=h1,h2 port=5432,5433 dbname=app user=u password='a b\\'c' target_session_attrs=primary",
    expect: {
      hosts: [h('h1', 5432), h('h2', 5433)],
      database: 'app',
      user: 'u',
      password: "a b'c",
      targetSessionAttrs: 'primary',
    },
  },
  {
    name: 'keyword form: one port for every host, a socket directory among them',
    input: 'host=/var/run/pg,db2 port = 6543 dbname=app connect_timeout=3',
    expect: { hosts: [h('/var/run/pg', 6543), h('db2', 6543)], connectTimeoutMs: 3000 },
  },
  {
    name: 'hostaddr list pairs with the host list',
    input: 'postgres://u@a.example,b.example/d?hostaddr=10.0.0.1,10.0.0.2',
    expect: {
      hostaddr: '10.0.0.1',
      hosts: [h('a.example', 5432, { hostaddr: '10.0.0.1' }), h('b.example', 5432, { hostaddr: '10.0.0.2' })],
    },
  },
  {
    name: 'fields: host and port lists and the session fields',
    input: { host: 'h1,h2', port: '1,2', targetSessionAttrs: 'standby', loadBalanceHosts: 'disable' },
    expect: { hosts: [h('h1', 1), h('h2', 2)], targetSessionAttrs: 'standby' },
  },
  {
    name: 'every target_session_attrs libpq knows',
    input: 'postgres://u@h/d?target_session_attrs=read-only',
    expect: { targetSessionAttrs: 'read-only' },
  },
);

describe('parseConnectionSettings: inputs -> settings', () => {
  test.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const run = () => parseConnectionSettings(c.input, { ...c.options, env: { ...baseEnv, ...c.env } });
    if (c.error) {
      let caught: unknown;
      try {
        run();
      } catch (error) {
        caught = error;
      }
      expect(caught).toMatchObject({ name: 'PgStateError', code: c.error.code });
      expect((caught as Error).message).toMatch(c.error.message);
      expect((caught as { fix?: string }).fix).toBeTruthy();
      expect(String(caught)).not.toContain('S3cr3t');
      return;
    }
    const settings = run();
    const { attempts: wanted, ...fields } = c.expect ?? {};
    expect(settings).toMatchObject(fields);
    if (wanted) expect(attempts(settings)).toEqual(wanted);
  });
});

describe('.pgpass like libpq', () => {
  const passfile = path.join(dir, 'pgpass');
  fs.writeFileSync(
    passfile,
    [
      '# comment line',
      'db.example.com:5432:app:alice:first\\:pass',
      'db.example.com:5432:*:alice:second',
      '*:*:*:bob:wild\\\\card',
      'localhost:5433:*:carol:socketpw',
      'db\\:odd:5432:*:dave:escaped-host',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  fs.chmodSync(passfile, 0o600);
  const env = { ...baseEnv, PGPASSFILE: passfile };
  const parse = (input: ConnectionInput, extra: Record<string, string> = {}) =>
    parseConnectionSettings(input, { env: { ...env, ...extra } });

  test.each([
    ['first matching line wins, \\: unescaped', 'postgres://alice@db.example.com/app', 'first:pass'],
    ['a * field matches any database', 'postgres://alice@db.example.com/other', 'second'],
    ['all-wildcard line, \\\\ unescaped', 'postgres://bob@anywhere:7777/x', 'wild\\card'],
    [
      'the default socket directory counts as localhost',
      'postgres://carol@%2Fvar%2Frun%2Fpostgresql:5433/x',
      'socketpw',
    ],
    ['another socket directory does not', 'postgres://carol@%2Fsrv%2Fsock:5433/x', undefined],
    ['port must match', 'postgres://carol@localhost:5432/x', undefined],
    ['an escaped colon in the host field', 'postgres://dave@db%3Aodd/x', 'escaped-host'],
  ])('%s', (_name, url, password) => {
    const s = parse(url);
    expect(s.password).toBe(password);
    expect(s.passwordSource).toBe(password === undefined ? 'none' : 'pgpass');
  });

  test('with several hosts, .pgpass is looked up for each host and port', () => {
    const s = parse('postgres://alice@db.example.com,other.example,localhost:5433/app', { PGPORT: '' });
    expect(s.hosts?.map((x) => [x.host, x.port, x.password, x.passwordSource])).toEqual([
      ['db.example.com', 5432, 'first:pass', 'pgpass'],
      ['other.example', 5432, undefined, 'none'],
      ['localhost', 5433, undefined, 'none'],
    ]);
    const carol = parse('host=elsewhere,localhost port=5432,5433 user=carol dbname=x');
    expect(carol.hosts?.map((x) => x.password)).toEqual([undefined, 'socketpw']);
  });

  test('an explicit password or PGPASSWORD wins over .pgpass', () => {
    expect(parse('postgres://alice:given@db.example.com/app').password).toBe('given');
    expect(parse('postgres://alice@db.example.com/app', { PGPASSWORD: 'envpw' }).password).toBe('envpw');
  });

  test('~/.pgpass is the default and passfile= overrides PGPASSFILE', () => {
    const otherHome = fs.mkdtempSync(path.join(dir, 'home-'));
    fs.writeFileSync(path.join(otherHome, '.pgpass'), '*:*:*:*:from-home\n', { mode: 0o600 });
    expect(parseConnectionSettings('postgres://x@h/d', { env: { HOME: otherHome } }).password).toBe('from-home');
    expect(
      parseConnectionSettings(`postgres://alice@db.example.com/app?passfile=${encodeURIComponent(passfile)}`, {
        env: { HOME: otherHome },
      }).password,
    ).toBe('first:pass');
  });

  test('a file readable by group or others is ignored with a warning, like libpq', () => {
    const loose = path.join(dir, 'loose-pgpass');
    fs.writeFileSync(loose, '*:*:*:*:too-open\n');
    fs.chmodSync(loose, 0o644);
    const s = parseConnectionSettings('postgres://x@h/d', { env: { ...baseEnv, PGPASSFILE: loose } });
    expect(s.password).toBeUndefined();
    expect(s.warnings?.join(' ')).toMatch(/group or world access/);
    expect(s.warnings?.join(' ')).not.toContain('too-open');
  });
});

test('printing settings never shows the password or the private key', () => {
  const s = parseConnectionSettings(
    { url: 'postgres://u:S3cr3t-print@h/d', sslCert: certFile, sslKey: keyFile },
    { env: baseEnv },
  );
  expect(s.password).toBe('S3cr3t-print');
  for (const shown of [JSON.stringify(s), util.inspect(s), util.format('%o', s)]) {
    expect(shown).not.toContain('S3cr3t-print');
    expect(shown).not.toContain('PRIVATE KEY');
  }
  const multi = parseConnectionSettings('postgres://u:S3cr3t-print@h1,h2/d', { env: baseEnv });
  expect(multi.hosts?.[1]?.password).toBe('S3cr3t-print');
  // Derived settings (one host of the list, the primary-only copy locks and LISTEN use) print just as safely.
  const derived = [multi, onPrimary(multi), settingsForHost(multi, multi.hosts?.[1] as HostTarget)];
  for (const shown of derived.flatMap((d) => [JSON.stringify(d), util.inspect(d, { depth: 5 })])) {
    expect(shown).not.toContain('S3cr3t-print');
  }
  // A spread copy stays usable (and loses only the print hooks).
  expect({ ...s, schema: 'x' }.password).toBe('S3cr3t-print');
});
