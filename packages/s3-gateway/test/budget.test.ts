/**
 * The in-flight body budget: while bodies already held fill it, a new upload waits with its body unread and gets
 * S3's 503 SlowDown if no room comes in time (readable by the client, nothing written); room given back lets the
 * next one through; a body larger than the whole budget still gets through alone.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { BucketHandler } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createS3Gateway, type S3Gateway } from '../src/index.js';
import { rawRequest, signer } from './support/sign.js';
import { createTableHandler } from './support/table-handler.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let handler: BucketHandler & { pool: pg.Pool };
let gateway: S3Gateway;
const KIB = 1024;

async function keys(): Promise<string[]> {
  const r = await handler.pool.query<{ key: string }>('SELECT key FROM objects ORDER BY key');
  return r.rows.map((row) => row.key);
}

/** A signed PUT whose headers and first `sendFirst` body bytes are written; `finish()` sends the rest. */
async function slowPut(key: string, body: Buffer, sendFirst: number, headers: Record<string, string> = {}) {
  const url = new URL(gateway.url);
  const signed = await signer().sign(
    {
      method: 'PUT',
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path: `/state/${key}`,
      query: {},
      headers: {
        host: url.host,
        'content-length': String(body.length),
        'x-amz-content-sha256': createHash('sha256').update(body).digest('hex'),
        ...headers,
      },
    },
    {},
  );
  const socket = net.connect(Number(url.port), url.hostname);
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  let text = '';
  const response = new Promise<string>((resolve) => {
    socket.on('data', (d) => {
      text += d.toString();
      const head = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text)?.[1];
      if (head !== -1 && !/^HTTP\/1.1 100/.test(text) && length && text.length >= head + 4 + Number(length)) {
        resolve(text);
      }
    });
    socket.on('close', () => resolve(text));
  });
  const head = Object.entries(signed.headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n');
  socket.write(`PUT /state/${key} HTTP/1.1\r\n${head}\r\n\r\n`);
  if (sendFirst > 0) socket.write(body.subarray(0, sendFirst));
  return {
    response,
    /** Text received so far (e.g. a 100 Continue). */
    received: () => text,
    finish: () => socket.write(body.subarray(sendFirst)),
    close: () => socket.destroy(),
  };
}

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_budget');
  handler = await createTableHandler(db.url);
  gateway = await createS3Gateway({
    buckets: { state: handler },
    credentials: [{ accessKeyId: 'AKIDPGSTATETEST', secretAccessKey: 'test-secret-key/with+chars' }],
    limits: { maxBodyBytesInFlight: 1000 * KIB, bodyWaitMs: 500 },
    logger: false,
  });
});

afterAll(async () => {
  await gateway?.close();
  await handler?.close?.();
  await db?.drop();
});

describe('in-flight body budget', () => {
  it('answers 503 SlowDown to an upload that finds the budget held, writes nothing for it, and lets it in later', async () => {
    const first = Buffer.alloc(600 * KIB, 1);
    const second = Buffer.alloc(600 * KIB, 2);
    const holder = await slowPut('first', first, 1000);
    // Held while its body trickles in: 600 KiB of the 1000 KiB budget.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const waiting = await slowPut('second', second, 0, { expect: '100-continue' });
    const refused = await waiting.response;
    expect(refused).toMatch(/^HTTP\/1.1 503/);
    expect(refused).toContain('<Code>SlowDown</Code>');
    // It was never told to send its body.
    expect(refused).not.toContain('100 Continue');
    waiting.close();
    holder.finish();
    expect(await holder.response).toMatch(/^HTTP\/1.1 200/);
    holder.close();
    expect(await keys()).toEqual(['first']);
    // The budget is free again: the same upload now goes through, byte-exact.
    const retry = await rawRequest(gateway.url, { method: 'PUT', path: '/state/second', body: second });
    expect(retry.status).toBe(200);
    const stored = await handler.getObject('second');
    expect(Buffer.from(stored!.body).equals(second)).toBe(true);
  });

  it('lets a client that sends its body without 100-continue read the SlowDown answer', async () => {
    const first = Buffer.alloc(600 * KIB, 3);
    const eager = Buffer.alloc(600 * KIB, 4);
    const holder = await slowPut('held', first, 1000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sender = await slowPut('eager', eager, 0);
    sender.finish();
    const answer = await sender.response;
    expect(answer).toMatch(/^HTTP\/1.1 503/);
    expect(answer).toContain('<Code>SlowDown</Code>');
    sender.close();
    holder.finish();
    expect(await holder.response).toMatch(/^HTTP\/1.1 200/);
    holder.close();
    expect(await handler.headObject('eager')).toBeNull();
  });

  it('a body larger than the whole budget gets through alone; a waiting client that hangs up writes nothing', async () => {
    const holder = await slowPut('h2', Buffer.alloc(600 * KIB, 5), 1000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const quitter = await slowPut('quitter', Buffer.alloc(600 * KIB, 6), 0, { expect: '100-continue' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    quitter.close();
    holder.finish();
    expect(await holder.response).toMatch(/^HTTP\/1.1 200/);
    holder.close();
    const big = Buffer.alloc(1500 * KIB, 7);
    const r = await rawRequest(gateway.url, { method: 'PUT', path: '/state/big', body: big });
    expect(r.status).toBe(200);
    expect((await handler.headObject('big'))?.size).toBe(big.length);
    expect(await handler.headObject('quitter')).toBeNull();
  });
});
