/**
 * A TLS-enabled throwaway PostgreSQL for tests: certificates made with `openssl` at run time (a CA, a server
 * certificate valid for `localhost` only, a client certificate for mutual TLS, and an unrelated second CA), the
 * cluster started with `startCluster`, and extra pg_hba.conf lines put first (first match wins).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { findLocalInstallations, type PostgresInstallation, type RunningCluster, startCluster } from './cluster.js';
import { PgStateError } from './errors.js';

export interface TestCertificates {
  dir: string;
  /** The CA that signed the server and client certificates. */
  caFile: string;
  /** A CA that signed nothing here: verifying against it must fail. */
  otherCaFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** CN of the client certificate (PostgreSQL `cert` auth maps it to this role). */
  clientUser: string;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Generates the certificates with openssl (throws when openssl is missing). */
export function generateTestCertificates(dir: string, clientUser = 'pgstate_cert'): TestCertificates {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name: string, cn: string) =>
    openssl(
      [
        'req',
        '-x509',
        ...key,
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.crt`,
        '-days',
        '2',
        '-subj',
        `/CN=${cn}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
  ca('ca', 'pgstate test CA');
  ca('other-ca', 'pgstate unrelated CA');
  const issue = (name: string, cn: string, ext: string) => {
    openssl(['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.crt`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      ],
      dir,
    );
  };
  // SAN is localhost only, so verify-full against 127.0.0.1 must fail.
  issue('server', 'localhost', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
  issue('client', clientUser, 'extendedKeyUsage=clientAuth\n');
  for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), f.endsWith('.key') ? 0o600 : 0o644);
  // The server reads its key as the postgres OS user (we start it as that user when root).
  if (isRoot) execFileSync('chown', ['postgres:postgres', path.join(dir, 'server.key')]);
  return {
    dir,
    caFile: path.join(dir, 'ca.crt'),
    otherCaFile: path.join(dir, 'other-ca.crt'),
    serverCertFile: path.join(dir, 'server.crt'),
    serverKeyFile: path.join(dir, 'server.key'),
    clientCertFile: path.join(dir, 'client.crt'),
    clientKeyFile: path.join(dir, 'client.key'),
    clientUser,
  };
}

export interface TlsTestServer {
  cluster: RunningCluster;
  certs: TestCertificates;
  /** Stops the server and removes data and certificates. */
  destroy(): Promise<void>;
}

/**
 * Starts a cluster with `ssl = on`. `hba` lines go before the defaults (`host all all 127.0.0.1/32 scram-sha-256`),
 * e.g. `hostssl all pgstate_cert 127.0.0.1/32 cert`. The client-certificate role is created (LOGIN, no password).
 */
export async function startTlsTestServer(
  options: { installation?: PostgresInstallation; hba?: string[]; clientUser?: string } = {},
): Promise<TlsTestServer> {
  const installation = options.installation ?? findLocalInstallations()[0];
  if (!installation) {
    throw new PgStateError('UNREACHABLE', 'No PostgreSQL server binaries found for the TLS test server.', {
      fix: 'Install PostgreSQL server binaries.',
    });
  }
  const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-tls-'));
  fs.chmodSync(certDir, 0o755);
  const certs = generateTestCertificates(certDir, options.clientUser);
  const cluster = await startCluster({
    installation,
    config: {
      ssl: 'on',
      ssl_cert_file: certs.serverCertFile,
      ssl_key_file: certs.serverKeyFile,
      ssl_ca_file: certs.caFile,
    },
  });
  const hbaFile = path.join(cluster.dataDir, 'pg_hba.conf');
  const hba = [`hostssl all ${certs.clientUser} 127.0.0.1/32 cert`, ...(options.hba ?? [])];
  fs.writeFileSync(hbaFile, `# pgstate TLS test\n${hba.join('\n')}\n${fs.readFileSync(hbaFile, 'utf8')}`);
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  try {
    await admin.query(`CREATE ROLE "${certs.clientUser.replaceAll('"', '""')}" LOGIN`);
  } finally {
    await admin.end();
  }
  // A restart (not a reload, which is asynchronous) so the new pg_hba.conf is surely in force.
  await cluster.stop();
  await cluster.start();
  return {
    cluster,
    certs,
    async destroy() {
      await cluster.destroy();
      fs.rmSync(certDir, { recursive: true, force: true });
    },
  };
}
