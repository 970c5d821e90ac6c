/**
 * isConnectionLoss: what pg and Node actually throw when PostgreSQL goes away under a query is recognised as a lost
 * connection (retryable), and ordinary query errors are not. The losses are produced for real: a TCP proxy in front
 * of the test server that cuts the connection while a large query is being written, and pg_terminate_backend.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { connectClient, createPool, isConnectionLoss, parseConnectionSettings, toPgStateError } from '../src/index.js';
import { createTestDatabase } from '../src/testing.js';
import { rejectionOf } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'lost');
});

afterAll(async () => {
  await db?.drop();
});

/** Forwards to the test server until the client has sent `cutAfter` bytes, then resets both sides. */
async function cuttingProxy(cutAfter: number): Promise<{ port: number; close: () => Promise<void> }> {
  const target = new URL(db.url);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
    }
    let sent = 0;
    client.on('data', (data: Buffer) => {
      sent += data.length;
      if (sent > cutAfter) {
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      upstream.write(data);
    });
    upstream.on('data', (data: Buffer) => client.write(data));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The error Node gives a write to a closed peer (`write EPIPE`), produced for real: a pipe whose reader closed it. */
async function realEpipe(): Promise<Error> {
  const child = spawn('sh', ['-c', 'exec 0<&-; echo closed; sleep 5'], { stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    await new Promise((resolve) => child.stdout.once('data', resolve));
    return await new Promise<Error>((resolve) => {
      child.stdin.once('error', resolve);
      const write = () => child.stdin.write(Buffer.alloc(1024), (e) => !e && setImmediate(write));
      write();
    });
  } finally {
    child.kill();
  }
}

describe('isConnectionLoss', () => {
  test('write EPIPE is a loss', async () => {
    const epipe = await realEpipe();
    expect([epipe.message, (epipe as { code?: string }).code]).toEqual(['write EPIPE', 'EPIPE']);
    expect(isConnectionLoss(epipe)).toBe(true);
    expect(toPgStateError(epipe).code).toBe('UNREACHABLE');
  });

  test('a connection cut while a large query is written (write EPIPE / ECONNRESET) is a loss, and UNREACHABLE', async () => {
    const proxy = await cuttingProxy(256 * 1024);
    try {
      const url = new URL(db.url);
      url.host = `127.0.0.1:${proxy.port}`;
      const client = new pg.Client({ connectionString: url.toString() });
      client.on('error', () => {});
      await client.connect();
      const error = await rejectionOf(client.query('SELECT length($1::bytea)', [Buffer.alloc(16 * 1024 * 1024, 1)]));
      await client.end().catch(() => {});
      expect(isConnectionLoss(error)).toBe(true);
      expect(toPgStateError(error).code).toBe('UNREACHABLE');
    } finally {
      await proxy.close();
    }
  });

  test('a Node socket write to a reset peer (EPIPE), and pg_terminate_backend (57P01), are losses', async () => {
    const server = net.createServer((s) => s.resetAndDestroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const socketError = await new Promise<Error>((resolve) => {
      socket.on('error', resolve);
      const write = () => {
        if (!socket.destroyed) socket.write(Buffer.alloc(64 * 1024), () => setImmediate(write));
      };
      socket.on('connect', write);
    });
    await new Promise((resolve) => server.close(resolve));
    expect(['EPIPE', 'ECONNRESET']).toContain((socketError as { code?: string }).code);
    expect(isConnectionLoss(socketError)).toBe(true);
    // Wrapped by another layer, the cause still counts.
    expect(isConnectionLoss(new Error('upload failed', { cause: socketError }))).toBe(true);

    const victim = new pg.Client({ connectionString: db.url, application_name: 'lost-victim' });
    victim.on('error', () => {});
    await victim.connect();
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    const pending = rejectionOf(victim.query('SELECT pg_sleep(30)'));
    for (let i = 0; i < 100; i++) {
      const r = await admin.query(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = 'lost-victim' AND state = 'active'`,
      );
      if (r.rowCount) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const terminated = await pending;
    expect(isConnectionLoss(terminated)).toBe(true);

    // A query error on a healthy connection is not a loss.
    const syntax = await rejectionOf(admin.query('SELEC 1'));
    expect(isConnectionLoss(syntax)).toBe(false);
    expect(isConnectionLoss(new Error('something else'))).toBe(false);
    await admin.end();
    await victim.end().catch(() => {});
  });
});

/** Forwards to the test server and reports when each client connection has closed. */
async function watchingProxy(): Promise<{ port: number; open: () => number; allClosed: () => Promise<void> }> {
  const target = new URL(db.url);
  let open = 0;
  const waiters: Array<() => void> = [];
  const server = net.createServer((client) => {
    open++;
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.pipe(upstream).pipe(client);
    client.on('close', () => {
      open--;
      upstream.destroy();
      if (open === 0) for (const w of waiters.splice(0)) w();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    open: () => open,
    // Bounded: the server's authentication_timeout (60 s) would close a forgotten socket much later.
    allClosed: () =>
      new Promise<void>((resolve, reject) => {
        if (open === 0) return resolve();
        const timer = setTimeout(() => {
          server.close();
          reject(new Error(`${open} client connection(s) still open`));
        }, 10_000);
        waiters.push(() => {
          clearTimeout(timer);
          server.close();
          resolve();
        });
      }),
  };
}

describe('a connection refused for a missing password', () => {
  test('is closed at once (dedicated client and pool), not held until the server gives up', async () => {
    const proxy = await watchingProxy();
    const url = new URL(db.url);
    url.host = `127.0.0.1:${proxy.port}`;
    url.password = '';
    const settings = parseConnectionSettings({ url: url.toString(), passfile: '/nonexistent/pgpass' }, { env: {} });
    expect(settings.password).toBeUndefined();
    const direct = await rejectionOf(connectClient(settings));
    expect(direct).toMatchObject({ code: 'AUTH_FAILED' });
    const pool = createPool(settings);
    const pooled = await rejectionOf(pool.query('SELECT 1'));
    expect(pooled).toMatchObject({ code: 'AUTH_FAILED' });
    await proxy.allClosed();
    expect(proxy.open()).toBe(0);
    await pool.end();
  });
});
