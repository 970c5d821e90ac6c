/**
 * Runs the suites once per PostgreSQL version: provision the server (with its fixtures), run vitest as a child in
 * its own process group (so an interrupt can end it and everything it started), fold its events into the matrix.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { detectContainerRuntime, sweepContainers } from './containers.js';
import type { ConformanceTarget } from './kit.js';
import { type Candidate, candidatesFor, DEFAULT_MAJORS, type Discovery, discover, startFirst } from './provision.js';
import { addCase, type Cell, finishReport, type Report, type VersionRun } from './report.js';
import type { ReporterEvent } from './reporter.js';
import { createRunDir, sweepRunDir, sweepStaleRuns } from './rundir.js';
import type { StartedServer } from './server.js';

export const APP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface RunOptions {
  ci: boolean;
  /** CI mode without the container major: only the first version the priority order yields. */
  oneVersion?: boolean;
  /** Majors to run; default: 14-18 (plus the majors of explicit URLs), or one or two in CI mode (see ciMajors). */
  majors?: number[];
  /** Suite files (globs relative to apps/conformance); default suites/**\/*.conformance.ts. */
  include?: string[];
  workers?: number;
  /** The Node.js binary the suites run under (default: this process's). */
  node?: { binary: string; version: string };
  /** Where vitest output per version is kept. */
  logDir: string;
  print(line: string): void;
  /** Progress marks while tests run ('.' pass, 'x' fail, 's' not run). */
  progress(mark: string): void;
}

/** Cleanup that must also happen on SIGINT/SIGTERM: the current vitest child, the servers, the run directory. */
class Teardown {
  child: ChildProcess | undefined;
  servers = new Set<StartedServer>();
  runDir: string | undefined;
  /** The container engine this run may have started containers on (its private servers included). */
  containerEndpoint: string | undefined;
  interrupted: NodeJS.Signals | undefined;

  killChild(): void {
    const pid = this.child?.pid;
    if (pid && this.child?.exitCode === null) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {}
    }
  }

  async all(): Promise<void> {
    this.killChild();
    await Promise.all(
      [...this.servers].map((s) => Promise.race([s.stop().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))])),
    );
    this.servers.clear();
    // Containers a vitest child started and could not remove (it was killed): every one labelled with our pid.
    if (this.containerEndpoint) await sweepContainers(this.containerEndpoint, process.pid).catch(() => {});
    if (this.runDir) sweepRunDir(this.runDir);
    this.runDir = undefined;
  }
}

function runVitest(
  target: ConformanceTarget,
  options: RunOptions,
  teardown: Teardown,
  onEvent: (event: ReporterEvent) => void,
): Promise<{ code: number | null; log: string }> {
  const vitest = path.join(APP_DIR, 'node_modules', 'vitest', 'vitest.mjs');
  const logFile = path.join(options.logDir, `vitest-pg${target.server.major}.log`);
  fs.mkdirSync(options.logDir, { recursive: true });
  const log = fs.createWriteStream(logFile);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PGSTATE_CONFORMANCE_TARGET: JSON.stringify(target),
    PGSTATE_CONFORMANCE_EVENTS_FD: '3',
    PGSTATE_CONFORMANCE_RUNNER_PID: String(process.pid),
    PGSTATE_CONFORMANCE_WORKERS: String(options.workers ?? 3),
  };
  if (options.include) env.PGSTATE_CONFORMANCE_INCLUDE = options.include.join(',');
  const child = spawn(options.node?.binary ?? process.execPath, [vitest, 'run', '-c', 'vitest.suites.config.ts'], {
    cwd: APP_DIR,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  teardown.child = child;
  // A sweep after a SIGKILLed runner ends this vitest too (the pid file names it).
  fs.writeFileSync(path.join(target.runDir, `vitest-pg${target.server.major}.pid`), `${child.pid}\n`);
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const events = child.stdio[3];
  if (events && 'on' in events) {
    createInterface({ input: events as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        onEvent(JSON.parse(line) as ReporterEvent);
      } catch {}
    });
  }
  return new Promise((resolve) => {
    child.on('close', (code) => {
      teardown.child = undefined;
      log.end();
      resolve({ code, log: logFile });
    });
  });
}

/** The newest container major CI adds (the container source and its fault lanes run in `npm test` too). */
export const CI_CONTAINER_MAJOR = 18;

/**
 * CI runs one or two majors: the first one the priority order yields (an explicit URL, a container, local binaries)
 * and, when containers are available, PostgreSQL 18 in a container too.
 */
function ciMajors(discovery: Discovery, oneVersion = false): number[] {
  const first = discovery.candidates[0]?.major ?? 15;
  if (oneVersion) return [first];
  const container = discovery.candidates.some((c) => c.source === 'container' && c.major === CI_CONTAINER_MAJOR);
  return container && first !== CI_CONTAINER_MAJOR ? [first, CI_CONTAINER_MAJOR] : [first];
}

/** The matrix: 14-18 plus the majors of explicit URLs. */
function matrixMajors(discovery: Discovery): number[] {
  const fromUrls = discovery.candidates.filter((c) => c.source === 'url').map((c) => c.major);
  return [...new Set([...DEFAULT_MAJORS, ...fromUrls])].sort((a, b) => a - b);
}

export async function runConformance(options: RunOptions): Promise<Report> {
  const startedAt = new Date();
  const provisioning: string[] = [];
  const teardown = new Teardown();
  const onSignal = (signal: NodeJS.Signals) => {
    if (teardown.interrupted) return;
    teardown.interrupted = signal;
    options.print(`\n${signal}: stopping vitest, servers and PgBouncer, removing the run directory`);
    void teardown.all().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  // Last resort for an exit we did not plan (an exception): stop what we can, synchronously.
  const onExit = () => {
    teardown.killChild();
    if (teardown.runDir) sweepRunDir(teardown.runDir);
  };
  process.on('exit', onExit);

  try {
    const swept = sweepStaleRuns();
    if (swept.length) provisioning.push(`swept leftovers of killed runs: ${swept.join(', ')}`);
    const runDir = createRunDir();
    teardown.runDir = runDir;
    // Containers a killed run left (no Ryuk here to remove them): swept like run directories.
    const runtime = await detectContainerRuntime();
    if ('endpoint' in runtime) {
      teardown.containerEndpoint = runtime.endpoint;
      const removed = await sweepContainers(runtime.endpoint).catch((e: Error) => [`(sweep failed: ${e.message})`]);
      if (removed.length) provisioning.push(`removed containers of killed runs: ${removed.join(', ')}`);
    }
    const wanted = options.majors ?? DEFAULT_MAJORS;
    const discovery = await discover({ majors: wanted });
    provisioning.push(...discovery.log);
    for (const line of discovery.log) options.print(`  ${line}`);
    const majors = options.majors ?? (options.ci ? ciMajors(discovery, options.oneVersion) : matrixMajors(discovery));
    const cells = new Map<string, Cell>();
    const versions: VersionRun[] = [];
    for (const major of majors) {
      const t0 = performance.now();
      const candidates = candidatesFor(discovery, major);
      const run: VersionRun = { major, status: 'not-run', durationMs: 0, errors: [], fallbacks: [] };
      versions.push(run);
      if (candidates.length === 0) {
        run.reason = `no source provides PostgreSQL ${major} (see provisioning)`;
        options.print(`pg${major}: NOT RUN: ${run.reason}`);
        continue;
      }
      const dirFor = (c: Candidate, i: number) => path.join(runDir, `pg${major}${i ? `-${i}-${c.source}` : ''}`);
      const started = await startFirst(candidates, dirFor, run.fallbacks ?? []);
      for (const line of run.fallbacks ?? []) {
        provisioning.push(`pg${major}: ${line}`);
        options.print(`pg${major}: ${line}`);
      }
      if (!started) {
        run.reason = `every source failed: ${run.fallbacks?.join('; ')}`;
        options.print(`pg${major}: NOT RUN: no source could start PostgreSQL ${major}`);
        run.durationMs = performance.now() - t0;
        continue;
      }
      const { server } = started;
      teardown.servers.add(server);
      const t = server.target;
      run.status = 'ran';
      run.version = t.version;
      run.origin = t.origin;
      run.source = t.source;
      const fixtures = [
        t.tls ? 'TLS' : `no TLS (${t.tlsReason})`,
        t.pgbouncer ? `PgBouncer :${t.pgbouncer.port}` : `no PgBouncer (${t.pgbouncerReason})`,
      ];
      const fellBack = run.fallbacks?.length ? ` (fell back after ${run.fallbacks.length} failed source(s))` : '';
      const line = `pg${major}: PostgreSQL ${t.version} from ${t.origin}${fellBack}; ${fixtures.join(', ')}`;
      provisioning.push(line);
      options.print(line);
      options.progress(`pg${major} `);
      const target = { runDir, server: t, ...(options.ci ? { ciMajors: majors } : {}) };
      const result = await runVitest(target, options, teardown, (event) => {
        if (event.type === 'case') {
          const cell = addCase(cells, major, event);
          options.progress(event.state === 'passed' ? '.' : event.state === 'failed' ? 'x' : 's');
          void cell;
        } else if (event.type === 'module') run.errors.push({ file: event.file, messages: event.errors });
        else if (event.errors.length) run.errors.push({ file: '(outside any test)', messages: event.errors });
      });
      options.progress('\n');
      if (result.code !== 0 && result.code !== 1 && !teardown.interrupted)
        run.errors.push({ file: 'vitest', messages: [`vitest exited with ${result.code}; see ${result.log}`] });
      const ran = [...cells.values()].some((c) => c.major === major);
      if (!ran && run.errors.length === 0 && result.code !== 0)
        run.errors.push({ file: 'vitest', messages: [`vitest exited with ${result.code}; see ${result.log}`] });
      teardown.servers.delete(server);
      await server.stop().catch(() => {});
      run.durationMs = performance.now() - t0;
    }
    // A version that could not run leaves every adapter lane seen elsewhere NOT RUN for it, visibly.
    const lanes = new Map<string, { adapter: string; lane: string }>();
    for (const c of cells.values()) lanes.set(`${c.adapter}\u0000${c.lane}`, c);
    // No suite ran anywhere: one cell per missing version still says so (the counts must not read "0 not run").
    if (lanes.size === 0) lanes.set('', { adapter: '(every suite)', lane: '(every lane)' });
    for (const v of versions.filter((v) => v.status === 'not-run')) {
      for (const { adapter, lane } of lanes.values())
        addCase(cells, v.major, {
          type: 'case',
          file: '',
          adapter,
          lane,
          name: 'version not available',
          state: 'skipped',
          notRun: `PostgreSQL ${v.major}: ${v.reason}`,
          durationMs: 0,
          errors: [],
        });
    }
    const order = (c: Cell) => `${c.adapter}\u0000${String(c.major).padStart(3, '0')}`;
    return finishReport({
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      mode: options.ci ? 'ci' : 'matrix',
      node: options.node?.version ?? process.version,
      provisioning,
      versions,
      cells: [...cells.values()].sort((a, b) => order(a).localeCompare(order(b))),
    });
  } finally {
    await teardown.all();
    for (const s of signals) process.off(s, onSignal);
    process.off('exit', onExit);
  }
}
