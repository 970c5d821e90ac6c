// `pgstate pulumi ...` run as the BUILT binary, as a user would: --json shapes, exit codes, and a file:// store
// moved into PostgreSQL and back out byte for byte.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli } from './helpers.js';

const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used', NO_COLOR: '1' });
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let url: string;
const temp: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_pulumi');
  url = db.url;
});
afterAll(async () => {
  for (const dir of temp) fs.rmSync(dir, { recursive: true, force: true });
  await db.drop();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-cli-pulumi-'));
  temp.push(dir);
  return dir;
}

async function sql(text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows;
  } finally {
    await client.end();
  }
}

const cli = (args: string[], table = 'cli_state') => runCli(['--url', url, 'pulumi', '--table', table, ...args], env);
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

function deployment(project: string, stack: string, count: number) {
  const urn = (type: string, name: string) => `urn:pulumi:${stack}::${project}::${type}::${name}`;
  const resources = [{ urn: urn('pulumi:pulumi:Stack', `${project}-${stack}`), type: 'pulumi:pulumi:Stack' }];
  for (let i = 1; i < count; i++) resources.push({ urn: urn('x:index:R', `r${i}`), type: 'x:index:R' });
  return { version: 3, deployment: { manifest: { time: '2026-03-04T05:06:07Z' }, resources } };
}

/** Every file under dir/.pulumi (no gocloud `.attrs` sidecars): relative path -> md5 of its bytes. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) walk(f);
      else if (!e.name.endsWith('.attrs')) {
        out[path.relative(dir, f)] = md5(fs.readFileSync(f));
      }
    }
  };
  walk(path.join(dir, '.pulumi'));
  return out;
}

/** A DIY store laid out as `pulumi login file://` writes it (project mode): plain and .gz checkpoints, history, ... */
function writeDiyStore(dir: string): void {
  const put = (key: string, body: Buffer | string, mtime: number) => {
    const file = path.join(dir, key);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, body);
    fs.utimesSync(file, mtime / 1000, mtime / 1000);
  };
  const t0 = Date.UTC(2026, 0, 1);
  const checkpoint = (p: string, s: string, n: number) =>
    JSON.stringify({
      version: 3,
      checkpoint: { stack: `organization/${p}/${s}`, latest: deployment(p, s, n).deployment },
    });
  put('.pulumi/meta.yaml', 'version: 1\n', t0);
  put('.pulumi/stacks/web/prod.json', checkpoint('web', 'prod', 3), t0 + 1000);
  put('.pulumi/stacks/web/prod.json.bak', checkpoint('web', 'prod', 2), t0 + 900);
  put('.pulumi/stacks/web/prod.json.attrs', '{"user.metadata":null}', t0 + 1000); // gocloud sidecar: not a key
  put('.pulumi/stacks/web/dev.json.gz', zlib.gzipSync(checkpoint('web', 'dev', 5)), t0 + 2000);
  put('.pulumi/stacks/web/prod.pulumi-tags', '{"version":1,"tags":{"team":"web"}}', t0 + 1100);
  const info = (n: number) => JSON.stringify({ kind: 'update', startTime: 1767225600 + n, result: 'succeeded' });
  for (const n of [1, 2, 3]) {
    const nano = `${1767225600 + n}000000000`;
    put(`.pulumi/history/web/prod/prod-${nano}.history.json`, info(n), t0 + 3000 + n);
    put(`.pulumi/history/web/prod/prod-${nano}.checkpoint.json`, checkpoint('web', 'prod', 3), t0 + 3000 + n);
    put(`.pulumi/backups/web/prod/prod.${nano}.json`, checkpoint('web', 'prod', 3), t0 + 3000 + n);
  }
  put(
    '.pulumi/locks/organization/web/prod/1b4e28ba-2fa1-11d2-883f-0016d3cca427.json',
    '{"pid":4242,"username":"ci","hostname":"runner-7","timestamp":"2026-01-01T00:00:00Z"}',
    t0 + 5000,
  );
}

describe('pgstate pulumi (built CLI)', () => {
  it('migrate-from a file:// directory, read commands with --json, then migrate-to: byte-exact round trip', async () => {
    const source = tempDir();
    writeDiyStore(source);
    const before = snapshot(source);

    const imported = await cli(['migrate-from', source, '--json']);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.json()).toMatchObject({ files: Object.keys(before).length, bytes: expect.any(Number) });
    // The probe: exactly the directory's keys landed, nothing from the .attrs sidecars.
    const rows = await sql('SELECT key, md5(data) AS md5 FROM public.cli_state ORDER BY key COLLATE "C"');
    expect(Object.fromEntries(rows.map((r) => [r.key, r.md5]))).toEqual(before);

    const stacks = await cli(['stacks', '--json']);
    expect(stacks.code).toBe(0);
    expect(stacks.json<unknown[]>()).toEqual([
      expect.objectContaining({ name: 'organization/web/dev', project: 'web', stack: 'dev', resourceCount: 5 }),
      expect.objectContaining({
        name: 'organization/web/prod',
        resourceCount: 3,
        lastUpdate: '2026-03-04T05:06:07Z',
        key: '.pulumi/stacks/web/prod.json',
        modified: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        size: expect.any(Number),
      }),
    ]);
    const only = await cli(['stacks', '--project', 'nope', '--json']);
    expect(only.json()).toEqual([]);
    const human = await cli(['stacks']);
    expect(human.stdout).toMatch(/web\/prod\t2026-03-04T05:06:07Z\t3/);

    const history = await cli(['history', 'web/prod', '--json']);
    expect(history.code).toBe(0);
    const entries =
      history.json<{ timestamp: string; key: string; checkpointKey: string; info: { startTime: number } }[]>();
    expect(entries.map((h) => h.info.startTime)).toEqual([1767225603, 1767225602, 1767225601]);
    expect(entries[0]!.checkpointKey).toMatch(/prod-1767225603000000000\.checkpoint\.json$/);
    expect((await cli(['history', 'web/prod', '--limit', '1', '--json'])).json<unknown[]>()).toHaveLength(1);

    const locks = await cli(['locks', '--json']);
    expect(locks.json()).toEqual([
      {
        project: 'web',
        stack: 'prod',
        holders: [
          expect.objectContaining({
            id: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
            pid: 4242,
            username: 'ci',
            hostname: 'runner-7',
          }),
        ],
      },
    ]);
    expect((await cli(['locks', 'web/prod'])).stdout).toContain('ci@runner-7 (pid 4242)');

    // Back out into an empty directory: the same files with the same bytes. (Modification times are the rows'
    // updated_at, i.e. when they were imported, not the original files' times.)
    const target = tempDir();
    const exported = await cli(['migrate-to', target, '--json']);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.json()).toMatchObject({ files: Object.keys(before).length });
    expect(snapshot(target)).toEqual(before);
  });

  it('export/import a deployment: validation writes nothing, exit codes name the failure', async () => {
    const state = 'cli_stacks';
    const dir = tempDir();
    const file = path.join(dir, 'dep.json');
    fs.writeFileSync(file, JSON.stringify(deployment('app', 'dev', 4)));
    // Importing into a stack that does not exist yet creates its checkpoint (like `pulumi stack import`).
    const ok = await cli(['import', 'app/dev', file, '--json'], state);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.json()).toEqual({ imported: 'app/dev' });
    const exported = await cli(['export', 'app/dev'], state);
    expect(exported.code).toBe(0);
    expect(JSON.parse(exported.stdout)).toEqual({ version: 3, deployment: deployment('app', 'dev', 4).deployment });
    const outFile = path.join(dir, 'out.json');
    expect((await cli(['export', 'organization/app/dev', '--file', outFile], state)).code).toBe(0);
    expect(JSON.parse(fs.readFileSync(outFile, 'utf8')).deployment.resources).toHaveLength(4);

    const before = await sql(`SELECT key, md5(data) AS m FROM public.${state} ORDER BY key COLLATE "C"`);
    fs.writeFileSync(file, '{"version": 3, "deployment": ');
    const broken = await cli(['import', 'app/dev', file], state);
    expect(broken.code).toBe(2); // INVALID_INPUT -> usage
    expect(broken.stderr).toMatch(/INVALID_INPUT|not valid JSON|JSON/);
    fs.writeFileSync(file, JSON.stringify(deployment('app', 'other', 2)));
    const wrong = await cli(['import', 'app/dev', file], state);
    expect(wrong.code).toBe(6); // CONFLICT
    expect(wrong.stderr).toContain('app/other');
    expect(await sql(`SELECT key, md5(data) AS m FROM public.${state} ORDER BY key COLLATE "C"`)).toEqual(before);
    const forced = await cli(['import', 'app/dev', file, '--force'], state);
    expect(forced.code, forced.stderr).toBe(0);

    expect((await cli(['export', 'app/missing'], state)).code).toBe(1); // NOT_FOUND
    expect((await cli(['export', 'not-a-stack'], state)).code).toBe(2);
    expect((await cli(['export', '../x/y'], state)).code).toBe(2);
    expect((await runCli(['--url', url, 'pulumi', '--table', 'x;drop', 'stacks'], env)).code).toBe(2);
  });

  it('cancel breaks a lock, prune deletes old history/backups/.bak (dry run first)', async () => {
    const state = 'cli_prune';
    const source = tempDir();
    writeDiyStore(source);
    expect((await cli(['migrate-from', source], state)).code).toBe(0);

    const cancel = await cli(['cancel', 'web/prod', '--json'], state);
    expect(cancel.code).toBe(0);
    expect(cancel.json()).toEqual({ removed: 1 });
    expect((await cli(['locks', '--json'], state)).json()).toEqual([]);
    expect((await cli(['cancel', 'web/prod'], state)).stdout).toContain('no lock to remove');

    expect((await cli(['prune'], state)).code).toBe(2); // nothing to prune named
    expect((await cli(['prune', '--keep-history', '-1'], state)).code).toBe(2);
    const count = async () => (await sql(`SELECT count(*)::int AS n FROM public.${state}`))[0].n as number;
    const total = await count();
    const dry = await cli(
      ['prune', '--keep-history', '1', '--keep-backups', '1', '--remove-bak', '--dry-run', '--json'],
      state,
    );
    expect(dry.code).toBe(0);
    const planned = dry.json<{ deleted: string[]; bytes: number; dryRun: boolean }>();
    expect(planned.dryRun).toBe(true);
    expect(planned.deleted.sort()).toEqual(
      [
        '.pulumi/backups/web/prod/prod.1767225601000000000.json',
        '.pulumi/backups/web/prod/prod.1767225602000000000.json',
        '.pulumi/history/web/prod/prod-1767225601000000000.checkpoint.json',
        '.pulumi/history/web/prod/prod-1767225601000000000.history.json',
        '.pulumi/history/web/prod/prod-1767225602000000000.checkpoint.json',
        '.pulumi/history/web/prod/prod-1767225602000000000.history.json',
        '.pulumi/stacks/web/prod.json.bak',
      ].sort(),
    );
    expect(await count()).toBe(total);
    const real = await cli(['prune', '--keep-history', '1', '--keep-backups', '1', '--remove-bak', '--json'], state);
    expect(real.json()).toMatchObject({ deleted: expect.arrayContaining(planned.deleted), dryRun: false });
    expect(await count()).toBe(total - planned.deleted.length);
    expect((await cli(['history', 'web/prod', '--json'], state)).json<unknown[]>()).toHaveLength(1);
  });

  it('migrate-to a missing directory and migrate-from a directory without .pulumi fail cleanly', async () => {
    const missing = path.join(tempDir(), 'nope');
    const r = await cli(['migrate-to', missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('does not exist');
    const empty = tempDir();
    const from = await cli(['migrate-from', empty]);
    expect(from.code).not.toBe(0);
    expect(from.stderr).toContain('not a Pulumi DIY store');
    expect(from.stderr).not.toMatch(/\n\s+at /); // an error message, not a stack trace
  });

  const pulumiBin = ['/root/.cache/pgstate-peers/bin/pulumi', process.env.PGSTATE_PULUMI_BIN].find(
    (p) => p && fs.existsSync(p),
  );
  it.skipIf(!pulumiBin)('a store the stock Pulumi CLI wrote (file://) round-trips byte-exact', async () => {
    const source = tempDir();
    const project = tempDir();
    fs.writeFileSync(path.join(project, 'Pulumi.yaml'), 'name: real\nruntime: nodejs\n');
    const penv = {
      ...process.env,
      PULUMI_HOME: tempDir(),
      PULUMI_CONFIG_PASSPHRASE: 'x',
      PULUMI_BACKEND_URL: `file://${source}`,
      PULUMI_SKIP_UPDATE_CHECK: '1',
    };
    execFileSync(pulumiBin!, ['stack', 'init', 'dev', '--non-interactive'], { cwd: project, env: penv });
    execFileSync(pulumiBin!, ['stack', 'tag', 'set', 'owner', 'me', '--non-interactive'], { cwd: project, env: penv });
    const before = snapshot(source);
    expect(Object.keys(before)).toEqual(expect.arrayContaining(['.pulumi/meta.yaml', '.pulumi/stacks/real/dev.json']));
    expect((await cli(['migrate-from', source], 'cli_real')).code).toBe(0);
    expect((await cli(['stacks', '--json'], 'cli_real')).json()).toMatchObject([{ name: 'organization/real/dev' }]);
    const target = tempDir();
    expect((await cli(['migrate-to', target], 'cli_real')).code).toBe(0);
    expect(snapshot(target)).toEqual(before);
  });
});
