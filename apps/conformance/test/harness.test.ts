// The harness's own tests: it must turn the right cells red for a broken adapter, and leave nothing behind.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { detectContainerRuntime, engineRequest, imagePresent, sweepContainers } from '../src/containers.js';
import type { Report } from '../src/report.js';
import { RUNS_ROOT, sweepStaleRuns } from '../src/rundir.js';

const appDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Makes the runner find no container engine: servers are then local processes this test can see in `ps`. */
const NO_ENGINE = { DOCKER_HOST: 'unix:///nonexistent/pgstate-harness-docker.sock' };
const runtime = await detectContainerRuntime();
const engine = 'endpoint' in runtime ? runtime.endpoint : undefined;
const withImage = engine && (await imagePresent(engine, 'pgstate-conformance/postgres:15')) ? engine : undefined;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-harness-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function runMain(args: string[], env: Record<string, string> = {}): ChildProcess {
  // `node --import tsx` rather than the tsx CLI, which would put a second process between us and the runner.
  return spawn(
    process.execPath,
    ['--conditions', 'pgstate-source', '--import', 'tsx', 'src/main.ts', '--ci', ...args],
    {
      cwd: appDir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));

/** Processes whose command line names this run's directory (servers and PgBouncer), or one of the given pids. */
function leftovers(runnerPid: number, pids: number[] = []): string[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l.includes(`run-${runnerPid}-`) || pids.includes(Number(l.trim().split(/\s+/)[0])));
}

const runDirs = (runnerPid: number) =>
  fs.existsSync(RUNS_ROOT) ? fs.readdirSync(RUNS_ROOT).filter((d) => d.startsWith(`run-${runnerPid}-`)) : [];

async function waitForFile(file: string, child: ChildProcess, timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(file)) {
    if (child.exitCode !== null) throw new Error(`runner exited early with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`no ${file}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await new Promise((r) => setTimeout(r, 100));
  return fs.readFileSync(file, 'utf8');
}

test('a wrapper that drops every second write turns its cells red; the real store stays green', async () => {
  const out = path.join(tmp, 'kv');
  const child = runMain(['--suites', 'test/fixtures/kv-*.conformance.ts', '--out', out]);
  let stdout = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  expect(await exited(child)).toBe(1);
  const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as Report;
  const cell = (adapter: string, lane: string) => report.cells.find((c) => c.adapter === adapter && c.lane === lane);
  for (const lane of ['direct', 'pgbouncer', 'least-privilege', 'tls-verify-full']) {
    expect(cell('kv-good', lane)?.status, `kv-good ${lane}`).toBe('pass');
    const broken = cell('kv-broken', lane);
    expect(broken?.status, `kv-broken ${lane}`).toBe('fail');
    expect(broken?.failures.map((f) => f.test)).toEqual([
      'every acknowledged write lands',
      'the last acknowledged value of a key wins',
    ]);
  }
  // The concurrency and crash tests use real child processes, which the wrapper does not touch: they pass.
  expect(cell('kv-good', 'direct')?.passed).toBe(4);
  for (const adapter of ['kv-good', 'kv-broken']) {
    expect(cell(adapter, 'missing-peer')).toMatchObject({
      status: 'not-run',
      notRunReasons: ['pgstate-no-such-peer is not installed (not on PATH)'],
    });
  }
  expect(report.ok).toBe(false);
  expect(report.provisioning.join('\n')).toMatch(/testcontainers: skipped|testcontainers: runtime/);
  const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
  expect(html).toContain('<td class="not-run"><strong>NOT RUN</strong>');
  expect(html).toContain('<td class="fail"><strong>FAIL</strong>');
  expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('| missing-peer | **NOT RUN** |');
  expect(stdout).toMatch(/kv-broken › direct\s+✗ 2\/4/);
  // Figures a test measured (`figure(name, value)`) land in its cell and in every rendering.
  expect(cell('kv-good', 'direct')?.figures).toEqual([
    { test: 'four writer processes at once: every row lands', values: { rows: 20 } },
  ]);
  expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toMatch(
    /- kv-good › direct \(pg\d+\): four writer processes at once: every row lands: rows=20/,
  );
  expect(html).toContain('<div class="sub">rows=20</div>');
  expect(stdout).toMatch(/figures {2}kv-good › direct pg\d+: rows=20/);
  expect(leftovers(child.pid ?? 0)).toEqual([]);
  expect(runDirs(child.pid ?? 0)).toEqual([]);
});

test('Ctrl-C (SIGINT) mid-run stops every server, PgBouncer and child process and removes the run directory', async () => {
  const marker = path.join(tmp, 'sigint.json');
  const child = runMain(['--suites', 'test/fixtures/slow.conformance.ts', '--out', path.join(tmp, 'sigint')], {
    PGSTATE_HARNESS_MARKER: marker,
    ...NO_ENGINE,
  });
  const { child: sleeper } = JSON.parse(await waitForFile(marker, child)) as { child: number };
  const pid = child.pid ?? 0;
  // While running: the shared server, the private server and PgBouncer are there.
  expect(leftovers(pid).filter((l) => /postgres -D|pgbouncer/.test(l)).length).toBeGreaterThanOrEqual(3);
  child.kill('SIGINT');
  expect(await exited(child)).toBe(130);
  expect(leftovers(pid, [sleeper])).toEqual([]);
  expect(runDirs(pid)).toEqual([]);
});

test('a runner killed with SIGKILL leaves a run directory the next run sweeps', async () => {
  const marker = path.join(tmp, 'sigkill.json');
  const child = runMain(['--suites', 'test/fixtures/slow.conformance.ts', '--out', path.join(tmp, 'sigkill')], {
    PGSTATE_HARNESS_MARKER: marker,
    ...NO_ENGINE,
  });
  await waitForFile(marker, child);
  const pid = child.pid ?? 0;
  child.kill('SIGKILL');
  await exited(child);
  expect(leftovers(pid).filter((l) => /postgres -D/.test(l)).length).toBeGreaterThanOrEqual(2);
  const [ours] = runDirs(pid);
  expect(ours).toBeDefined();
  expect(sweepStaleRuns()).toContain(ours);
  expect(leftovers(pid)).toEqual([]);
  expect(runDirs(pid)).toEqual([]);
});

/** Containers labelled with this runner's pid (the shared server and private servers of one run). */
async function containersOf(runnerPid: number): Promise<string[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`org.pgstate.conformance.runner=${runnerPid}`] }));
  const { body } = await engineRequest(engine ?? '', 'GET', `/containers/json?all=1&filters=${filters}`);
  return (JSON.parse(body) as { Id: string }[]).map((c) => c.Id);
}

test.skipIf(!withImage)(
  `containers: Ctrl-C removes them; a SIGKILLed run leaves them to the next run's sweep${withImage ? '' : ' (needs a Docker engine with pgstate-conformance/postgres:15)'}`,
  async () => {
    const run = async (name: string) => {
      const marker = path.join(tmp, `${name}.json`);
      const child = runMain(
        ['--pg', '15', '--suites', 'test/fixtures/slow.conformance.ts', '--out', path.join(tmp, name)],
        { PGSTATE_HARNESS_MARKER: marker },
      );
      await waitForFile(marker, child);
      // The shared server and the test's private server are both containers of this runner.
      expect(await containersOf(child.pid ?? 0)).toHaveLength(2);
      return child;
    };
    const interrupted = await run('containers-sigint');
    interrupted.kill('SIGINT');
    expect(await exited(interrupted)).toBe(130);
    expect(await containersOf(interrupted.pid ?? 0)).toEqual([]);

    const killed = await run('containers-sigkill');
    killed.kill('SIGKILL');
    await exited(killed);
    const left = await containersOf(killed.pid ?? 0);
    expect(left).toHaveLength(2);
    expect(await sweepContainers(withImage ?? '')).toEqual(expect.arrayContaining(left.map((id) => id.slice(0, 12))));
    expect(await containersOf(killed.pid ?? 0)).toEqual([]);
    sweepStaleRuns();
  },
);
