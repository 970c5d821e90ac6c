import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freeLoopbackPort } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli } from './helpers.js';

const binary = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'].find((f) => fs.existsSync(f));
if (!binary)
  console.warn('NOT RUN: pgbouncer is not installed (Debian package pgbouncer): PgBouncer detection untested');

interface Check {
  id: string;
  status: string;
  detail: string;
  fix?: string;
  data?: Record<string, unknown>;
}

describe.skipIf(!binary)('doctor behind PgBouncer in transaction mode', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let dir: string;
  let child: ReturnType<typeof spawn>;
  let bouncerUrl: string;

  beforeAll(async () => {
    db = await createTestDatabase(inject('pgUrl'), 'cli_bouncer');
    const server = new URL(db.url);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-cli-bouncer-'));
    const port = await freeLoopbackPort();
    const password = decodeURIComponent(server.password);
    fs.writeFileSync(path.join(dir, 'users.txt'), `"${decodeURIComponent(server.username)}" "${password}"\n`);
    fs.writeFileSync(
      path.join(dir, 'pgbouncer.ini'),
      [
        '[databases]',
        `* = host=127.0.0.1 port=${server.port}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = scram-sha-256',
        'auth_file = users.txt',
        'pool_mode = transaction',
        'default_pool_size = 4',
        'ignore_startup_parameters = extra_float_digits',
        `logfile = ${path.join(dir, 'pgbouncer.log')}`,
        '',
      ].join('\n'),
    );
    // PgBouncer refuses to run as root: run it as the postgres user then.
    const ids =
      process.getuid?.() === 0
        ? {
            uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
            gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
          }
        : {};
    if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', dir]);
    child = spawn(binary!, ['-q', path.join(dir, 'pgbouncer.ini')], { cwd: dir, stdio: 'ignore', ...ids });
    for (let i = 0; i < 200; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (up) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const u = new URL(db.url);
    u.port = String(port);
    u.search = '?sslmode=disable';
    bouncerUrl = u.toString();
  });

  afterAll(async () => {
    child?.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 200));
    await db?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('detects transaction pooling and explains what it means for locks and LISTEN', async () => {
    const r = await runCli(['doctor', '--json', '--url', bouncerUrl], cleanEnv());
    const doc = r.json<{ ok: boolean; checks: Check[] }>();
    const pooler = doc.checks.find((c) => c.id === 'pooler')!;
    expect(pooler.status, JSON.stringify(doc.checks)).toBe('warn');
    expect(pooler.data).toMatchObject({ transactionPooling: true });
    expect(pooler.detail).toMatch(/advisory locks/);
    expect(pooler.detail).toMatch(/LISTEN/);
    expect(pooler.fix).toMatch(/session-mode pool|direct URL/);
    expect(r.code).toBe(0); // a warning, not a failure
  });

  it('the direct URL of the same database shows no pooler', async () => {
    const r = await runCli(['doctor', '--json', '--url', db.url], cleanEnv());
    const pooler = r.json<{ checks: Check[] }>().checks.find((c) => c.id === 'pooler')!;
    expect(pooler).toMatchObject({ status: 'pass', data: { transactionPooling: false } });
  });
});
