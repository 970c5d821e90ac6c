// Where servers come from: a source that cannot provide a major falls back to the next one, and the report says so.
// The engine tests use the real Docker engine setup starts (scripts/peers/postgres-containers.sh) and its images;
// they are skipped, with that reason in their name, on a machine that has none.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { detectContainerRuntime, engineRequest, imagePresent } from '../src/containers.js';
import { candidatesFor, discover, startFirst } from '../src/provision.js';
import type { Report } from '../src/report.js';
import { createRunDir, sweepRunDir } from '../src/rundir.js';

const appDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-provision-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const runtime = await detectContainerRuntime();
const endpoint = 'endpoint' in runtime ? runtime.endpoint : undefined;
const image15 = 'pgstate-conformance/postgres:15';
const withImage = endpoint && (await imagePresent(endpoint, image15)) ? endpoint : undefined;
const needsEngine = withImage
  ? ''
  : `(needs a Docker engine with ${image15}: ${'reason' in runtime ? runtime.reason : 'image missing'})`;

function runMain(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--conditions', 'pgstate-source', '--import', 'tsx', 'src/main.ts', ...args],
    { cwd: appDir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
}

const readReport = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as Report;

test('an engine that is not there: containers are skipped, PostgreSQL 15 comes from local or embedded binaries', async () => {
  const env = { ...process.env, DOCKER_HOST: `unix://${path.join(tmp, 'no-such-docker.sock')}` };
  const discovery = await discover({ majors: [15], env });
  expect(discovery.log.find((l) => l.startsWith('2. testcontainers'))).toMatch(/skipped: no DOCKER_HOST|skipped: .*no/);
  const sources = candidatesFor(discovery, 15).map((c) => c.source);
  expect(sources).not.toContain('container');
  expect(sources.length).toBeGreaterThan(0);
});

test('an engine on another machine is not used (traffic stays here)', async () => {
  expect(await detectContainerRuntime({ DOCKER_HOST: 'tcp://docker.example.invalid:2375' })).toEqual({
    reason: 'DOCKER_HOST=tcp://docker.example.invalid:2375 is not on this machine (not used)',
  });
});

test.skipIf(!endpoint)(
  `an engine without the image: no container candidate, nothing pulled ${needsEngine}`,
  async () => {
    const env = { ...process.env, PGSTATE_CONFORMANCE_IMAGE: 'pgstate-conformance/absent-in-test:{major}' };
    const discovery = await discover({ majors: [15], env });
    expect(discovery.log.find((l) => l.startsWith('2. testcontainers'))).toContain(
      'not on this machine (nothing is pulled; scripts/peers/postgres-containers.sh builds them): pgstate-conformance/absent-in-test:15',
    );
    expect(candidatesFor(discovery, 15).map((c) => c.source)).not.toContain('container');
    expect(await imagePresent(endpoint ?? '', 'pgstate-conformance/absent-in-test:15')).toBe(false);
  },
);

test.skipIf(!withImage)(`a container that cannot start falls back to the next source ${needsEngine}`, async () => {
  // The image is there when the sources are listed and gone when the server starts (as if removed meanwhile).
  const ep = withImage ?? '';
  const tagged = await engineRequest(
    ep,
    'POST',
    `/images/${image15}/tag?repo=pgstate-conformance/fallback-test&tag=15`,
  );
  expect(tagged.status).toBe(201);
  let removed = false;
  try {
    const env = { ...process.env, PGSTATE_CONFORMANCE_IMAGE: 'pgstate-conformance/fallback-test:{major}' };
    const candidates = candidatesFor(await discover({ majors: [15], env }), 15);
    expect(candidates[0]?.source).toBe('container');
    expect((await engineRequest(ep, 'DELETE', '/images/pgstate-conformance/fallback-test:15')).status).toBe(200);
    removed = true;
    const attempts: string[] = [];
    // Under a run directory: a server's files must be reachable by the postgres user.
    const runDir = createRunDir();
    const started = await startFirst(candidates, (c, i) => path.join(runDir, `fallback-${i}-${c.source}`), attempts);
    try {
      expect(started?.server.target.source).toMatch(/^(local|embedded)$/);
      expect(started?.server.target.major).toBe(15);
      expect(attempts).toEqual([
        expect.stringMatching(
          /^container pgstate-conformance\/fallback-test:15 via .*: could not start: image pgstate-conformance\/fallback-test:15 is not on this machine and pulls are off/,
        ),
      ]);
    } finally {
      await started?.server.stop();
      sweepRunDir(runDir);
    }
  } finally {
    if (!removed) await engineRequest(ep, 'DELETE', '/images/pgstate-conformance/fallback-test:15');
  }
});

test.skipIf(!endpoint)(
  `the runner falls back per major when a pull fails, and the report says so ${needsEngine}`,
  async () => {
    const out = path.join(tmp, 'pull-fails');
    // Pulls allowed, from a registry that cannot exist (.invalid): the engine's error is the fallback's reason.
    const { code } = await runMain(['--pg', '15', '--suites', 'test/fixtures/kv-good.conformance.ts', '--out', out], {
      PGSTATE_CONFORMANCE_PULL: '1',
      PGSTATE_CONFORMANCE_IMAGE: 'registry.invalid/pgstate-absent:{major}',
    });
    expect(code).toBe(0);
    const report = readReport(out);
    expect(report.versions).toHaveLength(1);
    const [v15] = report.versions;
    expect(v15).toMatchObject({ major: 15, status: 'ran' });
    expect(v15?.source).toMatch(/^(local|embedded)$/);
    expect(v15?.fallbacks).toEqual([
      expect.stringMatching(/^container registry\.invalid\/pgstate-absent:15 via .*: could not start: /),
    ]);
    expect(report.cells.find((c) => c.lane === 'direct')?.status).toBe('pass');
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/\| 15 \| ran 15\.\d+ \| (local|embedded) \| .*fell back from: container registry\.invalid/);
  },
);

test('summary counts agree with the cells, also when no version could run', async () => {
  const out = path.join(tmp, 'none');
  const { code, out: stdout } = await runMain([
    '--pg',
    '99',
    '--suites',
    'test/fixtures/kv-good.conformance.ts',
    '--out',
    out,
  ]);
  expect(code).toBe(1);
  const report = readReport(out);
  expect(report.versions).toEqual([expect.objectContaining({ major: 99, status: 'not-run' })]);
  expect(report.cells).toEqual([
    expect.objectContaining({ adapter: '(every suite)', lane: '(every lane)', major: 99, status: 'not-run' }),
  ]);
  const count = (s: string) => report.cells.filter((c) => c.status === s).length;
  expect(report.summary).toEqual({ pass: count('pass'), fail: count('fail'), notRun: count('not-run') });
  expect(stdout).toContain('FAILED: 0 cells pass, 0 fail, 1 not run');
});
