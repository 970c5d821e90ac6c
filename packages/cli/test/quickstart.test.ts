import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, cleanEnv, runCli, tempHome } from './helpers.js';

const readme = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'README.md'), 'utf8');

describe('the README quick start', () => {
  const home = tempHome();
  afterAll(async () => {
    await runCli(['db', 'destroy', '--yes'], cleanEnv({ PGSTATE_HOME: home }));
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('works when pasted into a shell (npx pgstate = this package’s built binary)', async () => {
    const block = /## Quick start\n\n```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeTruthy();
    const dir = fs.mkdtempSync(path.join(home, 'bin-'));
    // What `npx pgstate` runs once the package is installed.
    fs.writeFileSync(path.join(dir, 'npx'), `#!/bin/sh\nshift\nexec "${process.execPath}" "${BIN}" "$@"\n`, {
      mode: 0o755,
    });
    const env = cleanEnv({ PGSTATE_HOME: home, PATH: `${dir}:${process.env.PATH}` });
    const result = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile('bash', ['-euo', 'pipefail', '-c', block!], { env, timeout: 120_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, out: stdout + stderr }),
      );
    });
    expect(result.code, result.out).toBe(0);
    expect(result.out).toMatch(/0 failed/);
    expect(result.out).toMatch(/postgres:\/\/postgres:.*@127\.0\.0\.1:\d+\/pgstate/);
    expect(result.out).toMatch(/destroyed/);
    expect(fs.existsSync(path.join(home, 'data'))).toBe(false);
  });
});

describe('the repository README quick start (from a clone, no fake binaries)', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const rootReadme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const home = tempHome();
  afterAll(async () => {
    await runCli(['db', 'destroy', '--yes'], cleanEnv({ PGSTATE_HOME: home }));
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('runs exactly as written in the repository root', async () => {
    const block = /## Quick start \(the CLI\)\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(rootReadme)?.[1];
    expect(block).toContain('npm run pgstate -- doctor');
    // Outside any npm script's environment, as a user's shell would be.
    const env = cleanEnv({ PGSTATE_HOME: home });
    for (const k of Object.keys(env)) if (/^npm_/i.test(k) || k === 'INIT_CWD') delete env[k];
    const result = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        'bash',
        ['-euo', 'pipefail', '-c', block!],
        { cwd: root, env, timeout: 300_000 },
        (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, out: stdout + stderr }),
      );
    });
    expect(result.code, result.out).toBe(0);
    expect(result.out).toMatch(/0 failed/);
    expect(result.out).toMatch(/postgres:\/\/postgres:.*@127\.0\.0\.1:\d+\/pgstate/);
    expect(result.out).toMatch(/destroyed/);
    expect(fs.existsSync(path.join(home, 'data'))).toBe(false);
  }, 360_000);
});
