import { describe, expect, it } from 'vitest';
import { cleanEnv, runCli } from './helpers.js';

describe('the command frame', () => {
  it('--help lists the commands, the exit codes and examples; exit 0', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const word of ['doctor', 'migrate', 'db', '--url', '--json', 'Exit codes', 'Examples:'])
      expect(r.stdout).toContain(word);
  });

  it.each([['doctor'], ['migrate'], ['db'], ['db', 'url'], ['db', 'destroy']])(
    '%s %s --help has examples',
    async (...args) => {
      const r = await runCli([...args.filter(Boolean), '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Examples:\n {2}\$ pgstate|Examples:\n {2}\$ /);
    },
  );

  it('an unknown command is a usage error: one line, a fix, exit 2', async () => {
    const r = await runCli(['dcotor']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[USAGE\]: unknown command 'dcotor'/m);
    expect(r.stderr).toMatch(/^fix: /m);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace without --debug
  });

  it('usage errors are JSON with --json', async () => {
    const r = await runCli(['--json', 'migrate', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.json()).toEqual({
      ok: false,
      error: { code: 'USAGE', message: expect.stringContaining('--bogus'), fix: expect.any(String) },
    });
  });

  it('a bad option value is a usage error', async () => {
    const r = await runCli(['doctor', '--sslmode', 'maybe']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error [USAGE]');
  });

  it('--schema with every adapter is a usage error', async () => {
    const r = await runCli(['--url', 'postgres://u@127.0.0.1:1/db', 'migrate', '--schema', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--schema and --table apply to one adapter');
  });

  it('colours only when asked for off a TTY (FORCE_COLOR), never with --no-color or NO_COLOR', async () => {
    const plain = await runCli(['dcotor']);
    expect(plain.stderr).not.toContain('\x1b[');
    const forced = await runCli(['dcotor'], cleanEnv({ FORCE_COLOR: '1' }));
    expect(forced.stderr).toContain('\x1b[31m');
    const off = await runCli(['--no-color', 'dcotor'], cleanEnv({ FORCE_COLOR: '1' }));
    expect(off.stderr).not.toContain('\x1b[');
    const noColor = await runCli(['dcotor'], cleanEnv({ FORCE_COLOR: '1', NO_COLOR: '1' }));
    expect(noColor.stderr).not.toContain('\x1b[');
  });

  it('--debug adds the stack trace; without it there is none', async () => {
    const args = ['--url', 'postgres://u:S3cr3t-dbg@127.0.0.1:1/db', 'migrate'];
    const plain = await runCli(args);
    expect(plain.code).toBe(3);
    expect(plain.stderr.trim().split('\n')).toHaveLength(2);
    const debug = await runCli(['--debug', ...args]);
    expect(debug.code).toBe(3);
    expect(debug.stderr).toMatch(/\n\s+at /);
    expect(debug.stdout + debug.stderr).not.toContain('S3cr3t-dbg');
  });

  it('PGSTATE_URL is used like --url (and is not pgstate’s own server)', async () => {
    const r = await runCli(['migrate', '--check'], cleanEnv({ PGSTATE_URL: 'postgres://u:pw@127.0.0.1:1/db' }));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/error \[UNREACHABLE\]: .*127\.0\.0\.1:1/);
  });
});
