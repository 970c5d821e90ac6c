import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  type ConnectionFields,
  checkHealth,
  connectClient,
  connectedHost,
  createPool,
  freeLoopbackPort,
  parseConnectionSettings,
  toPgStateError,
  withClient,
} from '../src/index.js';
import { startTlsTestServer, type TlsTestServer } from '../src/testing-tls.js';
import { expectNoSecret, rejectionOf } from './helpers.js';

// A TLS server of our own: scram for everyone over TLS or plain, plus roles that exercise pg_hba.conf rules.
let server: TlsTestServer;
const tlsOnlyPassword = `S3cr3t-${randomBytes(6).toString('hex')}`;
const plainOnlyPassword = `S3cr3t-${randomBytes(6).toString('hex')}`;

beforeAll(async () => {
  server = await startTlsTestServer({
    hba: [
      'hostnossl all pgstate_cert 127.0.0.1/32 reject',
      'hostssl all tls_only 127.0.0.1/32 scram-sha-256',
      'hostnossl all tls_only 127.0.0.1/32 reject',
      'hostnossl all plain_only 127.0.0.1/32 scram-sha-256',
      'hostssl all plain_only 127.0.0.1/32 reject',
    ],
  });
  const admin = new pg.Client({ connectionString: server.cluster.url });
  await admin.connect();
  await admin.query(`CREATE ROLE tls_only LOGIN PASSWORD '${tlsOnlyPassword}'`);
  await admin.query(`CREATE ROLE plain_only LOGIN PASSWORD '${plainOnlyPassword}'`);
  await admin.end();
}, 180_000);

afterAll(async () => {
  await server?.destroy();
});

function settingsFor(fields: ConnectionFields & { url?: string }) {
  const { cluster } = server;
  return parseConnectionSettings(
    {
      host: '127.0.0.1',
      port: cluster.port,
      user: 'postgres',
      password: cluster.password,
      database: 'postgres',
      ...fields,
    },
    { env: { HOME: '/nonexistent' } },
  );
}

async function tlsOf(fields: ConnectionFields) {
  const report = await checkHealth(settingsFor(fields));
  return {
    user: report.currentUser,
    inUse: report.tls.inUse,
    verified: report.tls.verified,
    version: report.tls.version,
  };
}

describe('real TLS connections', () => {
  test('require encrypts without checking the certificate', async () => {
    expect(await tlsOf({ sslmode: 'require' })).toMatchObject({
      inUse: true,
      verified: 'nothing',
      version: expect.stringMatching(/^TLSv1\.[23]$/),
    });
  });

  test('verify-ca checks the chain but not the host name (cert is for localhost, we dial 127.0.0.1)', async () => {
    expect(await tlsOf({ sslmode: 'verify-ca', sslRootCert: server.certs.caFile })).toMatchObject({
      inUse: true,
      verified: 'ca',
    });
  });

  test('verify-full with the right host name connects; root cert given as PEM text', async () => {
    const pem = fs.readFileSync(server.certs.caFile, 'utf8');
    expect(await tlsOf({ host: 'localhost', sslmode: 'verify-full', sslRootCert: pem })).toMatchObject({
      inUse: true,
      verified: 'ca+hostname',
    });
  });

  test('several hosts: each is verified against its own name (127.0.0.1 fails verify-full, localhost passes)', async () => {
    const settings = settingsFor({
      host: '127.0.0.1,localhost',
      sslmode: 'verify-full',
      sslRootCert: server.certs.caFile,
    });
    const client = await connectClient(settings);
    try {
      expect(connectedHost(client)?.host).toBe('localhost');
    } finally {
      await client.end();
    }
    const reversed = await rejectionOf(
      connectClient(
        settingsFor({ host: '127.0.0.1,127.0.0.1', sslmode: 'verify-full', sslRootCert: server.certs.caFile }),
      ),
    );
    expect((reversed as Error).message).toMatch(
      /127\.0\.0\.1:\d+: The server certificate is not valid for the host name "127\.0\.0\.1".*; 127\.0\.0\.1:\d+: /,
    );
  });

  test('verify-full with a host name not in the certificate fails with TLS_FAILED', async () => {
    const error = await rejectionOf(
      checkHealth(settingsFor({ sslmode: 'verify-full', sslRootCert: server.certs.caFile })),
    );
    expect(error).toMatchObject({
      code: 'TLS_FAILED',
      message: expect.stringMatching(/not valid for the host name "127\.0\.0\.1"/),
    });
    expect((error as { fix: string }).fix).toMatch(/verify-ca/);
  });

  test('verify-ca against the wrong CA fails with TLS_FAILED', async () => {
    const error = await rejectionOf(
      checkHealth(settingsFor({ sslmode: 'verify-ca', sslRootCert: server.certs.otherCaFile })),
    );
    expect(error).toMatchObject({ code: 'TLS_FAILED' });
    expect((error as { fix: string }).fix).toMatch(/sslrootcert/);
  });

  test('require with a root certificate verifies the CA like libpq', async () => {
    const error = await rejectionOf(
      checkHealth(settingsFor({ sslmode: 'require', sslRootCert: server.certs.otherCaFile })),
    );
    expect(error).toMatchObject({ code: 'TLS_FAILED' });
    expect(await tlsOf({ sslmode: 'require', sslRootCert: server.certs.caFile })).toMatchObject({
      inUse: true,
      verified: 'ca',
    });
  });

  test('mutual TLS: a client certificate logs in as its CN; without it the login fails', async () => {
    const user = server.certs.clientUser;
    const mtls = {
      host: 'localhost',
      user,
      password: undefined,
      sslmode: 'verify-full',
      sslRootCert: server.certs.caFile,
      sslCert: server.certs.clientCertFile,
      sslKey: server.certs.clientKeyFile,
    };
    expect(await tlsOf(mtls)).toMatchObject({ user, inUse: true, verified: 'ca+hostname' });
    const error = await rejectionOf(checkHealth(settingsFor({ ...mtls, sslCert: undefined, sslKey: undefined })));
    expect(error).toMatchObject({ code: 'AUTH_FAILED' });
    expect((error as { fix: string }).fix).toMatch(/sslcert/);
  });
});

describe('prefer and allow fall back per connection like libpq', () => {
  test('sslmode=disable to a TLS-only role: TLS_REQUIRED with a fix', async () => {
    const error = await rejectionOf(
      checkHealth(settingsFor({ user: 'tls_only', password: tlsOnlyPassword, sslmode: 'disable' })),
    );
    expect(error).toMatchObject({ code: 'TLS_REQUIRED' });
    expect((error as { fix: string }).fix).toMatch(/sslmode=/);
    expectNoSecret(error, tlsOnlyPassword);
  });

  test('allow tries plain first, then TLS when the server insists', async () => {
    expect(await tlsOf({ user: 'tls_only', password: tlsOnlyPassword, sslmode: 'allow' })).toMatchObject({
      user: 'tls_only',
      inUse: true,
    });
    expect(await tlsOf({ sslmode: 'allow' })).toMatchObject({ inUse: false });
  });

  test('prefer uses TLS when offered, and plain when the server refuses encrypted logins', async () => {
    expect(await tlsOf({ sslmode: 'prefer' })).toMatchObject({ inUse: true, verified: 'nothing' });
    expect(await tlsOf({ user: 'plain_only', password: plainOnlyPassword, sslmode: 'prefer' })).toMatchObject({
      user: 'plain_only',
      inUse: false,
    });
    const error = await rejectionOf(
      checkHealth(settingsFor({ user: 'plain_only', password: plainOnlyPassword, sslmode: 'require' })),
    );
    expect(error).toMatchObject({ code: 'AUTH_FAILED' });
  });

  test('a pool falls back for every new connection', async () => {
    const pool = createPool(
      settingsFor({ user: 'plain_only', password: plainOnlyPassword, sslmode: 'prefer', maxConnections: 3 }),
    );
    try {
      const results = await Promise.all(
        Array.from({ length: 6 }, () =>
          pool.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'),
        ),
      );
      expect(results.map((r) => r.rows[0]?.ssl)).toEqual(Array(6).fill(false));
    } finally {
      await pool.end();
    }
  });

  test('prefer against a server without TLS connects in plain; require says TLS_REQUIRED', async () => {
    const plain = parseConnectionSettings(inject('pgUrl').replace('sslmode=disable', 'sslmode=prefer'));
    expect((await checkHealth(plain)).tls).toMatchObject({ inUse: false, sslmode: 'prefer' });
    const error = await rejectionOf(checkHealth({ ...plain, sslmode: 'require' }));
    expect(error).toMatchObject({ code: 'TLS_REQUIRED', message: expect.stringMatching(/does not support it/) });
  });
});

describe('no password in any error, whatever the path', () => {
  const secret = `S3cr3t-${randomBytes(8).toString('hex')}`;
  const encoded = encodeURIComponent(`${secret}/:@`);

  test('parse errors', async () => {
    for (const input of [
      `postgres://u:${encoded}@h:99999/d`,
      `postgres://u:${encoded}@h/d?sslmod=disable`,
      `postgres://u:${encoded}@h/d?sslmode=verify-full`,
      `postgres://u:${encoded}@h/d?sslmode=verify-ca&sslrootcert=/missing.pem`,
      `postgres://u:${encoded}@h1,h2/d?port=1,2,3`,
      `host=h1,h2 port=1,2,3 password=${encoded}`,
      `host=h password '${encoded}'`,
      `mysql://u:${encoded}@h/d`,
      `postgres://u:${encoded}%ZZ@h/d`,
    ]) {
      const error = await rejectionOf(() => parseConnectionSettings(input, { env: { HOME: '/nonexistent' } }));
      expect(error).toMatchObject({ code: 'BAD_SETTING' });
      expectNoSecret(error, secret);
    }
    const notJson = await rejectionOf(() =>
      parseConnectionSettings({ secretEnv: 'S' }, { env: { S: `{"password":"${secret}",` } }),
    );
    expectNoSecret(notJson, secret);
  });

  test('connection and query errors, including the server echoing the password', async () => {
    const admin = new pg.Client({ connectionString: server.cluster.url });
    await admin.connect();
    const role = `redact_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${secret}'`);
    await admin.query(`CREATE TABLE IF NOT EXISTS private_stuff (id int)`);
    await admin.end();
    const ok = { user: role, password: secret };
    const deadPort = await freeLoopbackPort();
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['UNREACHABLE', () => checkHealth(settingsFor({ ...ok, port: deadPort }))],
      ['AUTH_FAILED', () => checkHealth(settingsFor({ user: 'postgres', password: secret }))],
      ['AUTH_FAILED', () => checkHealth(settingsFor({ user: 'no_such_role', password: secret }))],
      ['DATABASE_MISSING', () => checkHealth(settingsFor({ ...ok, database: 'no_such_db' }))],
      [
        'TLS_REQUIRED',
        () => checkHealth({ ...parseConnectionSettings(inject('pgUrl')), password: secret, sslmode: 'require' }),
      ],
      [
        'TLS_FAILED',
        () => checkHealth(settingsFor({ ...ok, sslmode: 'verify-full', sslRootCert: server.certs.caFile })),
      ],
      [
        'TLS_FAILED',
        () => checkHealth(settingsFor({ ...ok, sslmode: 'verify-ca', sslRootCert: server.certs.otherCaFile })),
      ],
      ['PERMISSION_DENIED', () => withClient(settingsFor(ok), (c) => c.query('SELECT * FROM private_stuff'))],
      [
        'QUERY_FAILED',
        async () => {
          const s = settingsFor(ok);
          const c = await connectClient(s);
          try {
            await c.query(`SELECT '${secret}'::int`);
          } catch (error) {
            throw toPgStateError(error, s);
          } finally {
            await c.end();
          }
        },
      ],
      [
        'UNREACHABLE',
        async () => {
          const s = settingsFor(ok);
          const pool = createPool(s);
          try {
            await withClient(pool, async (c) => {
              const killer = new pg.Client({ connectionString: server.cluster.url });
              await killer.connect();
              await killer.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role]);
              await killer.end();
              return c.query('SELECT 1');
            });
          } finally {
            await pool.end();
          }
        },
      ],
      [
        'QUERY_FAILED',
        async () => {
          try {
            new URL(`postgres://${role}:${secret}@h:notaport/d`);
          } catch (error) {
            throw toPgStateError(error, settingsFor(ok));
          }
        },
      ],
    ];
    for (const [code, run] of cases) {
      const error = await rejectionOf(run);
      expect(error, code).toMatchObject({ name: 'PgStateError', code });
      expect((error as { fix?: string }).fix, code).toBeTruthy();
      expectNoSecret(error, secret);
    }
  });
});

describe('other input forms against the real server', () => {
  test('env-only bare postgres:// with verify-full from PG* variables', async () => {
    const { cluster, certs } = server;
    const settings = parseConnectionSettings('postgres://', {
      env: {
        HOME: '/nonexistent',
        PGHOST: 'localhost',
        PGPORT: String(cluster.port),
        PGUSER: 'postgres',
        PGPASSWORD: cluster.password,
        PGDATABASE: 'postgres',
        PGSSLMODE: 'verify-full',
        PGSSLROOTCERT: certs.caFile,
        PGAPPNAME: 'env-only-test',
      },
    });
    const report = await checkHealth(settings);
    expect(report.tls).toMatchObject({ inUse: true, verified: 'ca+hostname' });
    const name = await withClient(settings, (c) =>
      c.query<{ n: string }>("SELECT current_setting('application_name') AS n"),
    );
    expect(name.rows[0]?.n).toBe('env-only-test');
  });

  test('password from a .pgpass file, search_path from options', async () => {
    const { cluster } = server;
    const dir = fs.mkdtempSync(`${os.tmpdir()}/pgstate-pgpass-`);
    const passfile = `${dir}/pgpass`;
    fs.writeFileSync(
      passfile,
      `127.0.0.1:${cluster.port}:*:postgres:${cluster.password.replaceAll('\\', '\\\\').replaceAll(':', '\\:')}\n`,
      {
        mode: 0o600,
      },
    );
    try {
      const settings = parseConnectionSettings(
        `postgres://postgres@127.0.0.1:${cluster.port}/postgres?options=-c%20search_path%3Dpg_catalog&passfile=${encodeURIComponent(passfile)}`,
        { env: { HOME: '/nonexistent' } },
      );
      expect(settings.passwordSource).toBe('pgpass');
      const { rows } = await withClient(settings, (c) =>
        c.query<{ p: string }>("SELECT current_setting('search_path') AS p"),
      );
      expect(rows[0]?.p).toBe('pg_catalog');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a Unix-socket host connects without TLS whatever the sslmode', async () => {
    const { cluster } = server;
    const settings = parseConnectionSettings(
      `postgres://postgres@${encodeURIComponent(cluster.dataDir)}:${cluster.port}/postgres?sslmode=require`,
      { env: { HOME: '/nonexistent' } },
    );
    expect((await checkHealth(settings)).tls.inUse).toBe(false);
  });
});
