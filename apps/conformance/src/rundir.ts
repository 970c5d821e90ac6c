/**
 * Every cluster, PgBouncer and certificate of one run lives under one run directory
 * (`$TMPDIR/pgstate-conformance/run-<pid>-<random>`). Cleaning up is then one sweep: stop what a pid file names,
 * remove the directory. A run killed with SIGKILL leaves its directory behind; the next run sweeps it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const RUNS_ROOT = path.join(os.tmpdir(), 'pgstate-conformance');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates the run directory (readable by the `postgres` user, which runs the servers when we are root). */
export function createRunDir(): string {
  fs.mkdirSync(RUNS_ROOT, { recursive: true, mode: 0o755 });
  const dir = path.join(RUNS_ROOT, `run-${process.pid}-${randomBytes(3).toString('hex')}`);
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** Guards against pid reuse: only processes that look like ours are signalled. */
function ours(pid: number): boolean {
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /postgres|pgbouncer|node/.test(cmd);
  } catch {
    return process.platform !== 'linux' && alive(pid);
  }
}

/** Pids of processes this run started and still runs, found by their pid files. */
function pidsIn(dir: string): number[] {
  const pids: number[] = [];
  const walk = (d: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      // postmaster.pid (PostgreSQL) and *.pid (PgBouncer, child processes): the first line is the pid.
      if (e.isFile() && (e.name === 'postmaster.pid' || e.name.endsWith('.pid'))) {
        const pid = Number(fs.readFileSync(p, 'utf8').split('\n')[0]);
        if (Number.isInteger(pid) && pid > 1) pids.push(pid);
      } else if (e.isDirectory() && depth < 4) walk(p, depth + 1);
    }
  };
  walk(dir, 0);
  return pids;
}

/**
 * Stops everything started under `dir` and removes it. SIGQUIT is PostgreSQL's immediate shutdown (it also ends
 * the backends); PgBouncer and children get SIGKILL. Synchronous so it can run from an exit handler.
 */
export function sweepRunDir(dir: string): void {
  const pids = pidsIn(dir).filter((pid) => alive(pid) && ours(pid));
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {}
  }
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) execFileSync('sleep', ['0.05']);
  for (const pid of pids.filter(alive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Sweeps run directories whose owning runner process is gone (a previous run killed before it could clean up). */
export function sweepStaleRuns(): string[] {
  if (!fs.existsSync(RUNS_ROOT)) return [];
  const swept: string[] = [];
  for (const name of fs.readdirSync(RUNS_ROOT)) {
    const match = /^run-(\d+)-/.exec(name);
    if (!match || alive(Number(match[1]))) continue;
    sweepRunDir(path.join(RUNS_ROOT, name));
    swept.push(name);
  }
  return swept;
}
