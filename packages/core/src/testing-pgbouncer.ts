/** A minimal PgBouncer in transaction pooling mode for tests (Debian's binary, run as the postgres OS user when root). */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freeLoopbackPort } from './cluster.js';

/** The installed pgbouncer binary, if any: tests without it report themselves as not run. */
export const pgbouncerBinary = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'].find((f) =>
  fs.existsSync(f),
);

/** Starts PgBouncer in front of `server` on a free loopback port (SCRAM auth with the given user and password). */
export async function startPgBouncer(server: {
  host: string;
  port: number;
  user: string;
  password: string;
}): Promise<{ port: number; stop(): Promise<void> }> {
  if (!pgbouncerBinary) throw new Error('pgbouncer is not installed');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-bouncer-'));
  const port = await freeLoopbackPort();
  const q = (s: string) => `"${s.replaceAll('"', '""')}"`;
  fs.writeFileSync(path.join(dir, 'users.txt'), `${q(server.user)} ${q(server.password)}\n`, { mode: 0o600 });
  fs.writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.host} port=${server.port}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      'auth_file = users.txt',
      'pool_mode = transaction',
      'default_pool_size = 3',
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${path.join(dir, 'log')}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) execFileSync('chown', ['-R', 'postgres:postgres', dir]);
  const ids = asRoot
    ? {
        uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
        gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
      }
    : {};
  const child = spawn(pgbouncerBinary, [path.join(dir, 'pgbouncer.ini')], { cwd: dir, stdio: 'ignore', ...ids });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => resolve(s.destroy() !== undefined));
      s.once('error', () => resolve(false));
    });
    if (up) break;
    if (child.exitCode !== null) throw new Error('pgbouncer exited at start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGINT');
        await new Promise((r) => child.once('exit', r));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
