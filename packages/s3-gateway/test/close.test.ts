/**
 * `close()` in a process of its own: with idle keep-alive connections of a real client (after a PUT and a GET),
 * and a connected socket that never sent a request, the process must end by itself once the gateway and its
 * handler are closed. A leftover socket or timer would keep it alive (the test would then hit its timeout).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { KEY } from './support/sign.js';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let db: Awaited<ReturnType<typeof createTestDatabase>>;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_close');
});
afterAll(async () => {
  await db?.drop();
});

it('a gateway process exits by itself after close(), with idle keep-alive and silent connections open', async () => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=pgstate-source', 'test/children/serve-until-closed.ts', db.url],
    { cwd: packageDir, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve(line);
    });
    child.once('exit', () => reject(new Error(`the gateway child exited before listening: ${out}`)));
  });
  const s3 = new S3Client({ endpoint: url, forcePathStyle: true, region: 'us-east-1', credentials: KEY });
  const silent = net.connect(Number(new URL(url).port), '127.0.0.1');
  const silentClosed = new Promise((resolve) => silent.once('close', resolve));
  silent.on('error', () => {});
  try {
    await s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'a/b', Body: Buffer.alloc(100_000, 1) }));
    // Large enough for the SDK to send `Expect: 100-continue` (the gateway answers it before reading the body).
    await s3.send(new PutObjectCommand({ Bucket: 'state', Key: 'a/large', Body: Buffer.alloc(3 * 2 ** 20, 2) }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'state', Key: 'a/b' }));
    expect((await got.Body!.transformToByteArray()).byteLength).toBe(100_000);
    // The client's sockets stay open (keep-alive) while the child closes.
    child.send('close');
    expect(await exited).toBe(0);
    expect(out).toContain('closed');
    await silentClosed; // the gateway ended the connection that never sent a request
  } finally {
    s3.destroy();
    silent.destroy();
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
