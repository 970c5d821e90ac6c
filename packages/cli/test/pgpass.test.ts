/**
 * A server that wants a password none was given: the CLI says AUTH_FAILED and exits (the refused socket is closed,
 * not left for the server's authentication_timeout), and a ~/.pgpass with group/world access is reported, as libpq
 * reports it, instead of being ignored silently.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli, tempHome } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let home: string;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_pgpass');
  home = tempHome();
});

afterAll(async () => {
  fs.rmSync(home, { recursive: true, force: true });
  await db?.drop();
});

describe('~/.pgpass and a missing password', () => {
  it('warns about a .pgpass with open permissions, ignores it, and fails with AUTH_FAILED; 0600 makes it work', async () => {
    const url = new URL(db.url);
    const password = decodeURIComponent(url.password);
    url.password = '';
    const pgpass = path.join(home, '.pgpass');
    fs.writeFileSync(pgpass, `*:*:*:${decodeURIComponent(url.username)}:${password}\n`);
    fs.chmodSync(pgpass, 0o644);
    const env = cleanEnv({ HOME: home, PGSTATE_HOME: path.join(home, 'pgstate') });
    const open = await runCli(['--url', url.toString(), 'migrate', '--adapter', 'pulumi', '--dry-run'], env);
    expect(open.code).toBe(3);
    expect(open.stderr).toContain(`warning: Password file "${pgpass}" has group or world access; it was ignored`);
    expect(open.stderr).toMatch(/^error \[AUTH_FAILED\]: .*asked for a password/m);
    expect(open.stdout + open.stderr).not.toContain(password);

    fs.chmodSync(pgpass, 0o600);
    const closed = await runCli(['--url', url.toString(), 'migrate', '--adapter', 'pulumi', '--dry-run'], env);
    expect([closed.code, closed.stderr]).toEqual([0, '']);
  });
});
