/**
 * `pgstate serve` as an operated service, run as the built binary: listen flags that cannot be mistaken for the
 * PostgreSQL ones, a clear error for a busy port, the AWS_* variables printed beside `pulumi login`, unauthenticated
 * /health and /ready that say nothing else, opt-in Prometheus metrics, and SIGTERM that lets an upload in flight
 * finish while new requests are refused.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { BIN, cleanEnv, runCli, spawnServe } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used' });

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_serve_ops');
});
afterAll(async () => {
  await db?.drop();
});

interface Started {
  child: ChildProcess;
  doc: { url: string; metrics?: string; awsEnv: Record<string, string> };
  exited: Promise<number | null>;
  stderr: () => string;
}

async function startServe(args: string[], extraEnv: Record<string, string> = {}): Promise<Started> {
  const s = spawnServe<Started['doc']>(['--url', db.url, ...args], { ...env, ...extraEnv });
  return { child: s.child, doc: await s.doc, exited: s.exited, stderr: s.stderr };
}

describe('pgstate serve, operated', () => {
  it('refuses --port/--host after serve (they are the PostgreSQL flags), names --listen; a busy port is clear', async () => {
    for (const flag of [['--port', '9100'], ['--host=0.0.0.0']]) {
      const r = await runCli(['serve', '--url', db.url, ...flag], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/PostgreSQL connection/);
      expect(r.stderr).toContain('--listen HOST:PORT');
    }
    const bad = await runCli(['serve', '--url', db.url, '--listen', 'nonsense'], env);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining('is not HOST:PORT')]);
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const busy = await runCli(['serve', '--url', db.url, '--listen', `127.0.0.1:${port}`], env);
      expect(busy.code).not.toBe(0);
      expect(busy.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}: the port is already in use`));
      expect(busy.stderr).not.toMatch(/QUERY_FAILED/);
    } finally {
      taken.close();
    }
  });

  it('prints the AWS_* variables beside pulumi login, never the secret', async () => {
    const child = spawn(process.execPath, [BIN, 'serve', '--url', db.url, '--listen', '127.0.0.1:0'], {
      env: { ...env, PGSTATE_S3_ACCESS_KEY_ID: 'AKOPS', PGSTATE_S3_SECRET_ACCESS_KEY: 'ops-secret-value-123' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    await new Promise<void>((resolve) => {
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('pulumi login') && out.includes('health')) resolve();
      });
    });
    const lines = out.split('\n');
    const aws = lines.findIndex((l) => l.includes('AWS_ACCESS_KEY_ID=AKOPS'));
    const login = lines.findIndex((l) => l.includes('pulumi login'));
    expect(aws).toBeGreaterThan(-1);
    expect(login).toBe(aws + 1);
    expect(lines[aws]).toContain('AWS_REGION=us-east-1');
    expect(out).not.toContain('ops-secret-value-123');
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  });

  it('/health and /ready answer without credentials and reveal nothing; /ready waits for migrations', async () => {
    const s = await startServe(['--listen', '127.0.0.1:0'], {
      PGSTATE_S3_ACCESS_KEY_ID: 'AKOPS',
      PGSTATE_S3_SECRET_ACCESS_KEY: 'ops-secret-value-123',
    });
    try {
      const health = await fetch(`${s.doc.url}/health`);
      expect([health.status, await health.text()]).toEqual([200, 'ok\n']);
      // The Pulumi tables are not migrated in this database yet.
      const before = await fetch(`${s.doc.url}/ready`);
      expect([before.status, await before.text()]).toEqual([503, 'not ready\n']);
      const migrated = await runCli(['migrate', '--adapter', 'pulumi', '--url', db.url], env);
      expect(migrated.code, migrated.stderr).toBe(0);
      let ready = 0;
      for (let i = 0; i < 50 && ready !== 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        ready = (await fetch(`${s.doc.url}/ready`)).status;
      }
      expect(ready).toBe(200);
      // Everything else still needs a signature.
      expect((await fetch(`${s.doc.url}/pulumi-state?list-type=2`)).status).toBe(403);
      expect(s.stderr()).toMatch(/"msg":"readiness".*migrations pending for pulumi/);
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  });

  it('--metrics-listen serves Prometheus metrics: requests by operation and status, latency, bytes, pool, budget', async () => {
    const s = await startServe(['--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0']);
    try {
      expect(s.doc.metrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      expect((await fetch(`${s.doc.url}/pulumi-state/m/one`, { method: 'PUT', body: 'x'.repeat(1000) })).status).toBe(
        200,
      );
      expect((await fetch(`${s.doc.url}/pulumi-state/m/one`)).status).toBe(200);
      expect((await fetch(`${s.doc.url}/pulumi-state/m/missing`)).status).toBe(404);
      const text = await (await fetch(s.doc.metrics!)).text();
      expect(text).toContain('pgstate_s3_requests_total{operation="PutObject",status="200"} 1');
      expect(text).toContain('pgstate_s3_requests_total{operation="GetObject",status="200"} 1');
      expect(text).toContain('pgstate_s3_requests_total{operation="GetObject",status="404"} 1');
      expect(text).toMatch(
        /pgstate_s3_request_duration_seconds_bucket\{le="[^"]+",operation="PutObject",status="200"\}/,
      );
      expect(text).toMatch(/pgstate_s3_received_bytes_total\{operation="PutObject"\} (\d+)/);
      expect(Number(/pgstate_s3_received_bytes_total\{operation="PutObject"\} (\d+)/.exec(text)![1])).toBeGreaterThan(
        1000,
      );
      expect(text).toMatch(/pgstate_s3_sent_bytes_total\{operation="GetObject"\} \d+/);
      expect(text).toMatch(/pgstate_s3_pool_connections_in_use \d+/);
      expect(text).toMatch(/pgstate_s3_pool_waiting_requests 0/);
      expect(text).toMatch(/pgstate_s3_body_budget_bytes \d+/);
      expect(text).toMatch(/pgstate_s3_body_budget_used_bytes 0/);
      // Not on the S3 port, and nothing but /metrics on the metrics port.
      expect((await fetch(`${s.doc.url}/metrics`)).status).not.toBe(200);
      expect((await fetch(s.doc.metrics!.replace('/metrics', '/health'))).status).toBe(404);
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  });

  it('SIGTERM: an upload in flight finishes and is stored, new requests are refused, the process exits 0', async () => {
    const s = await startServe(['--listen', '127.0.0.1:0']);
    const url = new URL(s.doc.url);
    const body = Buffer.alloc(300_000, 9);
    const socket = net.connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    let answer = '';
    const response = new Promise<string>((resolve) => {
      socket.on('data', (d) => {
        answer += d;
        if (answer.includes('\r\n\r\n')) resolve(answer);
      });
      socket.on('close', () => resolve(answer));
    });
    socket.write(
      `PUT /pulumi-state/inflight HTTP/1.1\r\nHost: ${url.host}\r\nContent-Length: ${body.length}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n`,
    );
    socket.write(body.subarray(0, 1000));
    await new Promise((resolve) => setTimeout(resolve, 200));
    s.child.kill('SIGTERM');
    // The listener stops accepting: a new connection is refused (or answered 503 while it closes).
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      refused = await fetch(`${s.doc.url}/ready`)
        .then((r) => r.status === 503)
        .catch(() => true);
    }
    expect(refused).toBe(true);
    socket.write(body.subarray(1000));
    expect(await response).toMatch(/^HTTP\/1.1 200/);
    socket.destroy();
    expect(await s.exited).toBe(0);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query("SELECT octet_length(data) AS n FROM pulumi_state WHERE key = 'inflight'");
    await client.end();
    expect(rows).toEqual([{ n: body.length }]);
  });
});
