import { createTestDatabase, pgbouncerBinary, startPgBouncer } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli } from './helpers.js';

if (!pgbouncerBinary)
  console.warn('NOT RUN: pgbouncer is not installed (Debian package pgbouncer): PgBouncer detection untested');

interface Check {
  id: string;
  status: string;
  detail: string;
  fix?: string;
  data?: Record<string, unknown>;
}

describe.skipIf(!pgbouncerBinary)('doctor behind PgBouncer in transaction mode', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let bouncer: Awaited<ReturnType<typeof startPgBouncer>> | undefined;
  let bouncerUrl: string;

  beforeAll(async () => {
    db = await createTestDatabase(inject('pgUrl'), 'cli_bouncer');
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
    await db?.drop();
  });

  it('detects transaction pooling and explains what it means for locks and LISTEN', async () => {
    const r = await runCli(['doctor', '--json', '--url', bouncerUrl], cleanEnv());
    const doc = r.json<{ ok: boolean; checks: Check[] }>();
    const pooler = doc.checks.find((c) => c.id === 'pooler')!;
    expect(pooler.status, JSON.stringify(doc.checks)).toBe('warn');
    expect(pooler.data).toMatchObject({ transactionPooling: true });
    expect(pooler.detail).toMatch(/advisory locks/);
    expect(pooler.detail).toMatch(/LISTEN/);
    expect(pooler.fix).toMatch(/session-mode pool|direct URL/);
    expect(r.code).toBe(0); // a warning, not a failure
  });

  it('the direct URL of the same database shows no pooler', async () => {
    const r = await runCli(['doctor', '--json', '--url', db.url], cleanEnv());
    const pooler = r.json<{ checks: Check[] }>().checks.find((c) => c.id === 'pooler')!;
    expect(pooler).toMatchObject({ status: 'pass', data: { transactionPooling: false } });
  });
});
