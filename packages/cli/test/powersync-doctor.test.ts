import { createTestDatabase, pgbouncerBinary, startPgBouncer } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli } from './helpers.js';

interface Check {
  id: string;
  status: string;
  detail: string;
  fix?: string;
  data?: Record<string, unknown>;
}

const ID = 'notifications:powersync';
let db: Awaited<ReturnType<typeof createTestDatabase>>;

async function notifications(args: string[]) {
  const r = await runCli(['doctor', '--json', ...args], cleanEnv());
  const checks = r.json<{ checks: Check[] }>().checks;
  const failed = checks.filter((c) => c.status === 'fail').map((c) => `${c.id}: ${c.detail}`);
  return { code: r.code, check: checks.find((c) => c.id === ID), ids: checks.map((c) => c.id), failed };
}

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_ps_doctor');
  const migrated = await runCli(['--url', db.url, 'powersync', 'migrate', '--json'], cleanEnv());
  expect(migrated.code, migrated.stderr).toBe(0);
});
afterAll(async () => db?.drop());

describe('doctor: PowerSync checkpoint notifications', () => {
  it('installed storage, direct URL: LISTEN on the storage URL passes (also without --adapter)', async () => {
    // The adapter keeps its migration journal in its own schema, hence --internal-schema powersync.
    for (const args of [
      ['--url', db.url, '--adapter', 'powersync', '--internal-schema', 'powersync'],
      ['--url', db.url, '--internal-schema', 'powersync'],
    ]) {
      const { code, check, failed } = await notifications(args);
      expect(code, failed.join('; ')).toBe(0);
      expect(check).toMatchObject({ status: 'pass', data: { mode: 'listen', separateUrl: false } });
      expect(check!.detail).toMatch(/LISTEN on the storage URL/);
    }
  });

  it('polling is reported as such', async () => {
    const { check } = await notifications(['--url', db.url, '--powersync-notify', 'poll']);
    expect(check).toMatchObject({ status: 'pass', data: { mode: 'poll' } });
    expect(check!.detail).toMatch(/polling/);
  });

  it('a separate notification URL is checked on its own; a wrong one fails without printing its password', async () => {
    const ok = await notifications(['--url', db.url, '--powersync-notify-url', db.url]);
    expect(ok.check).toMatchObject({
      status: 'pass',
      data: { mode: 'listen', separateUrl: true, transactionPooling: false },
    });
    const secret = 'n0tify-Secret-pw';
    const wrong = new URL(db.url);
    wrong.password = secret;
    const bad = await runCli(
      ['doctor', '--json', '--url', db.url, '--powersync-notify-url', wrong.toString()],
      cleanEnv(),
    );
    expect(bad.code).toBe(1);
    const check = bad.json<{ checks: Check[] }>().checks.find((c) => c.id === ID)!;
    expect(check.status).toBe('fail');
    expect(bad.stdout + bad.stderr).not.toContain(secret);
  });

  it('a bad mode is a usage error', async () => {
    const r = await runCli(['doctor', '--url', db.url, '--powersync-notify', 'sometimes'], cleanEnv());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('listen or poll');
  });

  it('no PowerSync storage and no PowerSync flags: no notification check', async () => {
    const other = await createTestDatabase(inject('pgUrl'), 'cli_ps_doctor_none');
    try {
      const { ids } = await notifications(['--url', other.url]);
      expect(ids).not.toContain(ID);
    } finally {
      await other.drop();
    }
  });
});

if (!pgbouncerBinary)
  console.warn('NOT RUN: pgbouncer is not installed: PowerSync notification warning behind PgBouncer untested');

describe.skipIf(!pgbouncerBinary)('doctor: PowerSync notifications behind PgBouncer in transaction mode', () => {
  let bouncer: Awaited<ReturnType<typeof startPgBouncer>> | undefined;
  let bouncerUrl: string;

  beforeAll(async () => {
    const server = new URL(db.url);
    bouncer = await startPgBouncer({
      host: '127.0.0.1',
      port: Number(server.port),
      user: decodeURIComponent(server.username),
      password: decodeURIComponent(server.password),
    });
    const u = new URL(db.url);
    u.port = String(bouncer.port);
    u.search = '?sslmode=disable';
    bouncerUrl = u.toString();
  });

  afterAll(async () => {
    await bouncer?.stop();
  });

  it('LISTEN on a transaction-pooled storage URL warns, naming both ways out', async () => {
    const { code, check, failed } = await notifications([
      '--url',
      bouncerUrl,
      '--adapter',
      'powersync',
      '--internal-schema',
      'powersync',
    ]);
    expect(code, failed.join('; ')).toBe(0); // a warning, not a failure
    expect(check).toMatchObject({
      status: 'warn',
      data: { mode: 'listen', separateUrl: false, transactionPooling: true },
    });
    expect(check!.fix).toMatch(/checkpoint_notifications\.uri/);
    expect(check!.fix).toMatch(/poll/);
  });

  it('with a direct notification URL or polling it passes; a pooled notification URL still warns', async () => {
    const direct = await notifications(['--url', bouncerUrl, '--powersync-notify-url', db.url]);
    expect(direct.check).toMatchObject({ status: 'pass', data: { separateUrl: true, transactionPooling: false } });
    const poll = await notifications(['--url', bouncerUrl, '--powersync-notify', 'poll']);
    expect(poll.check).toMatchObject({ status: 'pass', data: { mode: 'poll' } });
    const pooled = await notifications(['--url', db.url, '--powersync-notify-url', bouncerUrl]);
    expect(pooled.check).toMatchObject({ status: 'warn', data: { separateUrl: true, transactionPooling: true } });
  });
});
