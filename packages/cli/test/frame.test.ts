import { describe, expect, it } from 'vitest';
import { runCli } from './helpers.js';

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

  it('no colours when stdout is not a TTY, even for doctor output', async () => {
    const r = await runCli(['--help']);
    expect(r.stdout).not.toContain('\x1b[');
  });
});
