import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli, withPassword, withUser } from './helpers.js';

interface Check {
  id: string;
  status: 'pass' | 'warn' | 'fail' | 'skip';
  detail: string;
  fix?: string;
  code?: string;
  data?: Record<string, unknown>;
}
interface Doctor {
  ok: boolean;
  embedded: boolean;
  target: Record<string, unknown>;
  checks: Check[];
  summary: Record<string, number>;
}

const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used' });

async function doctor(args: string[]): Promise<{ code: number; doc: Doctor; raw: string }> {
  const r = await runCli(['doctor', '--json', ...args], env);
  return { code: r.code, doc: r.json<Doctor>(), raw: r.stdout + r.stderr };
}

function check(doc: Doctor, id: string): Check {
  const found = doc.checks.find((c) => c.id === id);
  if (!found) throw new Error(`no check ${id} in ${JSON.stringify(doc.checks.map((c) => c.id))}`);
  return found;
}

async function sql(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

describe('pgstate doctor against a server given by --url', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase(inject('pgUrl'), 'cli_doctor');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('reports every check with the documented JSON shape', async () => {
    const { code, doc } = await doctor(['--url', db.url]);
    expect(code).toBe(0);
    expect(doc).toMatchObject({ ok: true, embedded: false, target: { host: '127.0.0.1', database: db.name } });
    expect(doc.target).not.toHaveProperty('password');
    expect(doc.checks.map((c) => c.id)).toEqual([
      'connect',
      'server',
      'host',
      'tls',
      'role',
      'rights:pulumi',
      'rights:meltano',
      'rights:powersync',
      'rights:gateway',
      'migrations:pulumi',
      'migrations:meltano',
      'migrations:powersync',
      'migrations:gateway',
      'pooler',
      'clock',
    ]);
    for (const c of doc.checks) expect(['pass', 'warn']).toContain(c.status);
    expect(check(doc, 'server').data).toMatchObject({ versionNum: expect.any(Number) });
    expect(check(doc, 'pooler').data).toMatchObject({ transactionPooling: false });
    expect(doc.summary).toMatchObject({ fail: 0 });
  });

  it('host: the server reached and its role; a warning when writes could go to a standby', async () => {
    const { freeLoopbackPort } = await import('@pgstate/core');
    const url = new URL(db.url);
    const dead = await freeLoopbackPort();
    // Two hosts, the first one down: read-write walks to the second, a primary.
    const hosts = `postgres://${url.username}:${url.password}@127.0.0.1:${dead},${url.host}${url.pathname}?sslmode=disable`;
    const ok = await doctor(['--url', `${hosts}&target_session_attrs=read-write`]);
    expect(check(ok.doc, 'host')).toMatchObject({
      status: 'pass',
      data: { reached: url.host, role: 'primary', hosts: 2, targetSessionAttrs: 'read-write' },
    });
    expect(check(ok.doc, 'host').detail).toContain(`reached ${url.host} (one of 2 hosts`);
    expect(ok.doc.target).toMatchObject({
      hosts: [
        { host: '127.0.0.1', port: dead },
        { host: '127.0.0.1', port: Number(url.port) },
      ],
    });
    expect(JSON.stringify(ok.doc)).not.toContain(url.password);
    const human = await runCli(['doctor', '--url', hosts], env);
    expect(human.stdout).toContain(`pgstate doctor  postgres://${url.username}@127.0.0.1:${dead},${url.host}/`);
    // The pooler check compares with the port of the host reached, not the first one listed.
    expect(check(ok.doc, 'pooler')).toMatchObject({
      detail: 'direct connection (no pooler detected)',
      data: { clientPort: Number(url.port), serverPort: Number(url.port) },
    });
    // The same hosts with the default target_session_attrs=any: connections could land on a standby.
    const any = await doctor(['--url', hosts]);
    expect(any.code).toBe(0);
    expect(check(any.doc, 'host')).toMatchObject({ status: 'warn', data: { role: 'primary' } });
    expect(check(any.doc, 'host').fix).toMatch(/target_session_attrs=read-write/);
    const single = await doctor(['--url', db.url]);
    expect(check(single.doc, 'host')).toMatchObject({ status: 'pass', data: { hosts: 1, role: 'primary' } });
  });

  it('wrong password: connect fails with AUTH_FAILED and a fix; the password is never printed', async () => {
    const wrong = 'S3cr3t-wrong-pw-1234';
    const { code, doc, raw } = await doctor(['--url', withPassword(db.url, wrong)]);
    expect(code).toBe(1);
    expect(doc.ok).toBe(false);
    const c = check(doc, 'connect');
    expect(c).toMatchObject({ status: 'fail', code: 'AUTH_FAILED' });
    expect(c.fix).toMatch(/password/i);
    expect(check(doc, 'server').status).toBe('skip');
    expect(raw).not.toContain(wrong);
    // Human output: the same, one line per check plus a fix.
    const human = await runCli(['doctor', '--url', withPassword(db.url, wrong)], env);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/FAIL\s+connect\s+.*[Pp]assword/);
    expect(human.stdout).toMatch(/fix: .*password/i);
    expect(human.stdout + human.stderr).not.toContain(wrong);
  });

  it('server down: connect fails with UNREACHABLE', async () => {
    const { freeLoopbackPort } = await import('@pgstate/core');
    const u = new URL(db.url);
    u.port = String(await freeLoopbackPort());
    const { code, doc } = await doctor(['--url', u.toString()]);
    expect(code).toBe(1);
    expect(check(doc, 'connect')).toMatchObject({ status: 'fail', code: 'UNREACHABLE' });
    expect(check(doc, 'connect').fix).toBeTruthy();
  });

  it('other commands map connection errors to exit code 3 with one error line', async () => {
    const r = await runCli(['--url', withPassword(db.url, 'nope-nope'), 'migrate'], env);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error \[AUTH_FAILED\]: /m);
    expect(r.stderr).toMatch(/^fix: /m);
    expect(r.stderr).not.toContain('nope-nope');
  });

  it('pending migrations: fails with MIGRATIONS_PENDING; the printed fix makes it pass', async () => {
    const before = await doctor(['--url', db.url, '--adapter', 'pulumi']);
    expect(before.code).toBe(1);
    const c = check(before.doc, 'migrations:pulumi');
    expect(c).toMatchObject({ status: 'fail', code: 'MIGRATIONS_PENDING' });
    expect(c.fix).toMatch(/^pgstate migrate --adapter pulumi\b/);
    // Without --adapter, an adapter never set up is only a warning.
    const lenient = await doctor(['--url', db.url]);
    expect(lenient.code).toBe(0);
    expect(check(lenient.doc, 'migrations:pulumi').status).toBe('warn');
    // --dry-run prints the SQL and changes nothing.
    const dry = await runCli(['--url', db.url, 'migrate', '--adapter', 'pulumi', '--dry-run'], env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/CREATE TABLE[^;]*"public"\."pulumi_state"/);
    expect(dry.stdout).not.toContain(';;');
    expect((await doctor(['--url', db.url, '--adapter', 'pulumi'])).code).toBe(1);
    const check5 = await runCli(['--url', db.url, 'migrate', '--adapter', 'pulumi', '--check'], env);
    expect(check5.code).toBe(5);
    // Run the fix as printed.
    const fix = c
      .fix!.replace(/ \(.*$/, '')
      .split(' ')
      .slice(1);
    const m = await runCli(['--url', db.url, ...fix, '--json'], env);
    expect(m.code, m.stderr).toBe(0);
    expect(m.json()).toMatchObject({ dryRun: false });
    const after = await doctor(['--url', db.url, '--adapter', 'pulumi']);
    expect(after.code).toBe(0);
    expect(check(after.doc, 'migrations:pulumi').status).toBe('pass');
  });

  it('Meltano seed tables the Python plugin created: migrate adds expires_at; --check and doctor compare table shapes', async () => {
    await sql(db.url, 'CREATE SCHEMA pyseed');
    // The seed plugin's own DDL: no expires_at.
    await sql(
      db.url,
      `CREATE TABLE pyseed.meltano_state (state_id VARCHAR(900) PRIMARY KEY, partial_state TEXT, completed_state TEXT,
         updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
       CREATE TABLE pyseed.meltano_state_locks (state_id VARCHAR(900) PRIMARY KEY,
         locked_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, lock_id VARCHAR(255))`,
    );
    const target = ['--adapter', 'meltano', '--schema', 'pyseed'];
    expect((await runCli(['--url', db.url, 'migrate', ...target, '--check'], env)).code).toBe(5);
    const m = await runCli(['--url', db.url, 'migrate', ...target], env);
    expect(m.code, m.stderr).toBe(0);
    expect((await runCli(['--url', db.url, 'migrate', ...target, '--check'], env)).code).toBe(0);
    expect(check((await doctor(['--url', db.url, ...target])).doc, 'migrations:meltano').status).toBe('pass');

    // The journal still says migrated after the column is dropped; the shape check does not.
    await sql(db.url, 'ALTER TABLE pyseed.meltano_state_locks DROP COLUMN expires_at');
    const c = await runCli(['--url', db.url, 'migrate', ...target, '--check', '--json'], env);
    expect(c.code).toBe(5);
    expect(c.document()).toMatchObject({ ok: false, error: { code: 'MIGRATIONS_PENDING' } });
    expect(c.json()).toMatchObject({
      upToDate: false,
      shape: ['pyseed.meltano_state_locks has no column expires_at'],
    });
    const d = await doctor(['--url', db.url, ...target]);
    expect(d.code).toBe(1);
    expect(check(d.doc, 'migrations:meltano')).toMatchObject({ status: 'fail', code: 'MIGRATIONS_PENDING' });
    expect(check(d.doc, 'migrations:meltano').detail).toContain('pyseed.meltano_state_locks has no column expires_at');
    const again = await runCli(['--url', db.url, 'migrate', ...target], env);
    expect(again.code).toBe(5);
    expect(again.stderr).toContain('has no column expires_at');
  });

  it('missing schema rights: fails with the exact GRANT; running it makes it pass', async () => {
    const role = `app_${Math.random().toString(36).slice(2, 8)}`;
    const password = 'S3cr3t-app-pw-5678';
    await sql(db.url, `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    await sql(db.url, 'CREATE SCHEMA locked');
    const m = await runCli(['--url', db.url, 'migrate', '--adapter', 'pulumi', '--schema', 'locked'], env);
    expect(m.code, m.stderr).toBe(0);
    const appUrl = withUser(db.url, role, password);
    const args = ['--url', appUrl, '--adapter', 'pulumi', '--schema', 'locked'];

    const noUsage = await doctor(args);
    expect(noUsage.code).toBe(1);
    const r1 = check(noUsage.doc, 'rights:pulumi');
    expect(r1).toMatchObject({ status: 'fail', code: 'PERMISSION_DENIED' });
    expect(r1.fix).toBe(`GRANT USAGE ON SCHEMA locked TO ${role};`);
    expect(noUsage.raw).not.toContain(password);
    await sql(db.url, r1.fix!);

    const noDml = await doctor(args);
    const r2 = check(noDml.doc, 'rights:pulumi');
    expect(r2).toMatchObject({ status: 'fail', code: 'PERMISSION_DENIED' });
    expect(r2.detail).toMatch(/SELECT on pulumi_state/);
    // The Pulumi target's side tables (size/MD5, stack index) need the same rights as its blob table.
    expect(r2.fix).toBe(
      `GRANT SELECT, INSERT, UPDATE, DELETE ON locked.pulumi_state, locked.pulumi_state_objects, locked.pulumi_state_stacks TO ${role};`,
    );
    await sql(db.url, r2.fix!);
    // The runtime role reads the migration journal too.
    await sql(
      db.url,
      `GRANT USAGE ON SCHEMA pgstate TO ${role}; GRANT SELECT ON ALL TABLES IN SCHEMA pgstate TO ${role}`,
    );

    const ok = await doctor(args);
    expect(ok.code, JSON.stringify(ok.doc.checks.filter((c) => c.status === 'fail'))).toBe(0);
    expect(check(ok.doc, 'rights:pulumi').detail).toMatch(/no CREATE/);
    expect(check(ok.doc, 'migrations:pulumi').status).toBe('pass');
  });
});
