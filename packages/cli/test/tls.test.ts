import { startTlsTestServer, type TlsTestServer } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runCli } from './helpers.js';

interface Check {
  id: string;
  status: string;
  detail: string;
  fix?: string;
  code?: string;
  data?: Record<string, unknown>;
}

const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used' });

describe('doctor and TLS (a server that only accepts TLS, certificates from openssl)', () => {
  let server: TlsTestServer;
  let base: URL;
  beforeAll(async () => {
    // Plain TCP is rejected: only hostssl entries match.
    server = await startTlsTestServer({ hba: ['hostnossl all all 127.0.0.1/32 reject'] });
    base = new URL(server.cluster.url);
    base.search = '';
  }, 120_000);
  afterAll(async () => {
    await server?.destroy();
  });

  async function doctor(url: string, ...flags: string[]) {
    const r = await runCli(['doctor', '--json', '--url', url, ...flags], env);
    const doc = r.json<{ ok: boolean; checks: Check[] }>();
    return {
      code: r.code,
      doc,
      connect: doc.checks.find((c) => c.id === 'connect')!,
      tls: doc.checks.find((c) => c.id === 'tls')!,
    };
  }

  it('TLS required by the server but sslmode=disable: TLS_REQUIRED with a fix', async () => {
    const r = await doctor(base.toString(), '--sslmode', 'disable');
    expect(r.code).toBe(1);
    expect(r.connect).toMatchObject({ status: 'fail', code: 'TLS_REQUIRED' });
    expect(r.connect.fix).toMatch(/sslmode=(verify-full|require)/);
    // Any other command: exit 3, one line.
    const m = await runCli(['--url', base.toString(), '--sslmode', 'disable', 'migrate'], env);
    expect(m.code).toBe(3);
    expect(m.stderr).toMatch(/^error \[TLS_REQUIRED\]/m);
  });

  it('verify-full with a host name the certificate does not name: TLS_FAILED with a fix', async () => {
    // The server certificate names only "localhost"; connect by IP address.
    const r = await doctor(base.toString(), '--sslmode', 'verify-full', '--sslrootcert', server.certs.caFile);
    expect(r.code).toBe(1);
    expect(r.connect).toMatchObject({ status: 'fail', code: 'TLS_FAILED' });
    expect(r.connect.detail).toContain('127.0.0.1');
    expect(r.connect.fix).toMatch(/host name|verify-ca/);
  });

  it('verify-full with the right host name: tls passes and says how the server was verified', async () => {
    const url = new URL(base);
    url.hostname = 'localhost';
    const r = await doctor(url.toString(), '--sslmode', 'verify-full', '--sslrootcert', server.certs.caFile);
    expect(r.code, JSON.stringify(r.doc.checks.filter((c) => c.status === 'fail'))).toBe(0);
    expect(r.tls.status).toBe('pass');
    expect(r.tls.detail).toMatch(/^TLSv1\.[23]/);
    expect(r.tls.detail).toContain('host name checked');
    expect(r.tls.data).toMatchObject({ ssl: true, sslmode: 'verify-full', rootCert: true });
  });

  it('verify-ca against a CA that did not sign the server certificate: TLS_FAILED', async () => {
    const r = await doctor(base.toString(), '--sslmode', 'verify-ca', '--sslrootcert', server.certs.otherCaFile);
    expect(r.code).toBe(1);
    expect(r.connect).toMatchObject({ status: 'fail', code: 'TLS_FAILED' });
    expect(r.connect.fix).toMatch(/sslrootcert/);
  });

  it('sslmode=require encrypts without authenticating the server, and says so', async () => {
    const r = await doctor(base.toString(), '--sslmode', 'require');
    expect(r.code).toBe(0);
    expect(r.tls.data).toMatchObject({ ssl: true, sslmode: 'require' });
    expect(r.tls.detail).toMatch(/not authenticated/);
  });
});
