/**
 * The gateway over HTTPS with real clients. Over TLS the AWS SDKs send `aws-chunked` bodies with trailing checksums
 * (STREAMING-UNSIGNED-PAYLOAD-TRAILER), the case that broke Pulumi on other S3-compatible stores.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { BucketHandler } from '@pgstate/core';
import { createTestDatabase, generateTestCertificates } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createS3Gateway, type LogRecord, type S3Gateway } from '../src/index.js';
import { KEY } from './support/sign.js';
import { createTableHandler } from './support/table-handler.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let handler: BucketHandler & { pool: pg.Pool };
let pool: pg.Pool;
let gateway: S3Gateway;
let dir: string;
let caFile: string;
const logs: LogRecord[] = [];

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_tls');
  handler = await createTableHandler(db.url);
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-tls-'));
  const certs = generateTestCertificates(dir);
  caFile = certs.caFile;
  gateway = await createS3Gateway({
    buckets: { state: handler },
    credentials: [KEY],
    host: 'localhost', // the test certificate names localhost only
    tls: { cert: fs.readFileSync(certs.serverCertFile), key: fs.readFileSync(certs.serverKeyFile) },
    uploads: { pool },
    logger: (r) => logs.push(r),
  });
});

afterAll(async () => {
  await gateway?.close();
  await pool?.end();
  await handler?.close?.();
  await db?.drop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('HTTPS', () => {
  it('@aws-sdk/client-s3 streams a body as aws-chunked with a trailing CRC32; it lands byte-exact', async () => {
    expect(gateway.url).toMatch(/^https:\/\/localhost:/);
    const s3 = new S3Client({
      endpoint: gateway.url,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: KEY,
      requestHandler: { httpsAgent: new https.Agent({ ca: fs.readFileSync(caFile) }) },
    });
    const body = randomBytes(3 * 1024 * 1024 + 17);
    await s3.send(
      new PutObjectCommand({
        Bucket: 'state',
        Key: 'streamed',
        Body: Readable.from([body.subarray(0, 1000), body.subarray(1000)]),
        ContentLength: body.length,
      }),
    );
    const put = logs.find((r) => r.msg === 'request' && r.method === 'PUT' && r.key === 'streamed');
    expect(put?.status).toBe(200);
    expect(put?.payload).toBe('STREAMING-UNSIGNED-PAYLOAD-TRAILER');
    expect(Buffer.from((await handler.getObject('streamed'))!.body).equals(body)).toBe(true);
    const got = await s3.send(new GetObjectCommand({ Bucket: 'state', Key: 'streamed', ChecksumMode: 'ENABLED' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body)).toBe(true);
    s3.destroy();
  });

  const aws =
    fs.existsSync('/usr/bin/aws') ||
    (process.env.PATH ?? '').split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, 'aws')));
  (aws ? it : it.skip)(
    `${aws ? '' : 'NOT RUN: aws not installed: '}awscli uploads over HTTPS with its default checksums`,
    async () => {
      const file = path.join(dir, 'file.bin');
      const data = randomBytes(2 * 1024 * 1024);
      fs.writeFileSync(file, data);
      const env = {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        AWS_ACCESS_KEY_ID: KEY.accessKeyId,
        AWS_SECRET_ACCESS_KEY: KEY.secretAccessKey,
        AWS_DEFAULT_REGION: 'us-east-1',
        AWS_CONFIG_FILE: path.join(dir, 'none'),
        AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'none'),
      };
      const out = await new Promise<{ code: number; text: string }>((resolve) =>
        execFile(
          'aws',
          [
            '--endpoint-url',
            gateway.url,
            '--ca-bundle',
            caFile,
            's3',
            'cp',
            '--no-progress',
            file,
            's3://state/from-aws',
          ],
          { env },
          (error, stdout, stderr) => resolve({ code: error ? 1 : 0, text: stdout + stderr }),
        ),
      );
      expect(out.code, out.text).toBe(0);
      expect(Buffer.from((await handler.getObject('from-aws'))!.body).equals(data)).toBe(true);
    },
  );
});
