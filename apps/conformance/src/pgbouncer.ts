/** PgBouncer (Debian's package) in transaction pooling mode in front of one server, run as the `postgres` user. */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freeLoopbackPort } from '@pgstate/core';

export interface PgBouncer {
  port: number;
  dir: string;
  stop(): Promise<void>;
}

/** The pgbouncer binary, or undefined when it is not installed. */
export function findPgBouncer(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin']) {
    const file = path.join(dir, 'pgbouncer');
    if (dir && fs.existsSync(file)) return file;
  }
  return undefined;
}

function serverUserIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

async function waitForPort(port: number, child: { exitCode: number | null }, log: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' ') : '';
  throw new Error(`pgbouncer did not start: ${tail || 'no log'}`);
}

export async function startPgBouncer(options: {
  dir: string;
  serverHost: string;
  serverPort: number;
  /** Users PgBouncer authenticates (SCRAM) and logs in with; other roles go through auth_query as the first. */
  users: { name: string; password: string }[];
}): Promise<PgBouncer> {
  const binary = findPgBouncer();
  if (!binary) throw new Error('pgbouncer is not installed (Debian package `pgbouncer`; scripts/setup-peers.sh)');
  const { dir } = options;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const port = await freeLoopbackPort();
  const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;
  fs.writeFileSync(
    path.join(dir, 'userlist.txt'),
    options.users.map((u) => `${quote(u.name)} ${quote(u.password)}`).join('\n'),
    { mode: 0o600 },
  );
  const log = path.join(dir, 'pgbouncer.log');
  const ini = [
    '[databases]',
    `* = host=${options.serverHost} port=${options.serverPort}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    'auth_file = userlist.txt',
    `auth_user = ${options.users[0]?.name ?? 'postgres'}`,
    'pool_mode = transaction',
    'max_client_conn = 1000',
    'default_pool_size = 20',
    'server_tls_sslmode = disable',
    // The stock advice: drivers send extra_float_digits; everything else (options, statement_timeout) is
    // rejected as real PgBouncer would, so adapters that rely on startup options fail here visibly.
    'ignore_startup_parameters = extra_float_digits',
    `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
    `logfile = ${log}`,
  ].join('\n');
  const iniFile = path.join(dir, 'pgbouncer.ini');
  fs.writeFileSync(iniFile, `${ini}\n`, { mode: 0o600 });
  const ids = serverUserIds();
  if (ids) execFileSync('chown', ['-R', `${ids.uid}:${ids.gid}`, dir]);
  const child = spawn(binary, ['-q', iniFile], { cwd: dir, stdio: 'ignore', ...(ids ?? {}) });
  child.on('error', () => {});
  await waitForPort(port, child, log);
  return {
    port,
    dir,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}
