/**
 * Scoped access keys: an auditor key that may only read, a Meltano key that may only touch the Meltano bucket, an
 * unscoped key that may do everything. Refusals are AccessDenied and write nothing (checked in PostgreSQL).
 */
import type { BucketHandler } from '@pgstate/core';
import { isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type Credential, createS3Gateway, type S3Gateway } from '../src/index.js';
import { rawRequest } from './support/sign.js';
import { createTableHandler } from './support/table-handler.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pulumi: BucketHandler & { pool: pg.Pool };
let meltano: BucketHandler & { pool: pg.Pool };
let gateway: S3Gateway;

const ADMIN: Credential = { accessKeyId: 'AKADMIN', secretAccessKey: 'admin-secret' };
const AUDITOR: Credential = { accessKeyId: 'AKAUDITOR', secretAccessKey: 'auditor-secret', buckets: { '*': 'read' } };
const MELTANO: Credential = {
  accessKeyId: 'AKMELTANO',
  secretAccessKey: 'meltano-secret',
  buckets: { 'meltano-state': 'read-write' },
};
const sign = (c: Credential) => ({ accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey });

async function keys(h: BucketHandler & { pool: pg.Pool }, table: string): Promise<string[]> {
  const r = await h.pool.query<{ key: string }>(`SELECT key FROM ${table} ORDER BY key`);
  return r.rows.map((row) => row.key);
}

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_keys');
  pulumi = await createTableHandler(db.url, 'pulumi_objects');
  meltano = await createTableHandler(db.url, 'meltano_objects');
  gateway = await createS3Gateway({
    buckets: { 'pulumi-state': pulumi, 'meltano-state': meltano },
    credentials: [ADMIN, AUDITOR, MELTANO],
    logger: false,
  });
  await pulumi.putObject('.pulumi/stacks/app/prod.json', Buffer.from('{"prod":true}'));
});

afterAll(async () => {
  await gateway?.close();
  await pulumi?.close?.();
  await meltano?.close?.();
  await db?.drop();
});

describe('scoped access keys', () => {
  it('a read key reads and lists every bucket, and is refused every write', async () => {
    const get = await rawRequest(gateway.url, {
      method: 'GET',
      path: '/pulumi-state/.pulumi/stacks/app/prod.json',
      sign: sign(AUDITOR),
    });
    expect([get.status, get.text]).toEqual([200, '{"prod":true}']);
    const list = await rawRequest(gateway.url, { method: 'GET', path: '/', sign: sign(AUDITOR) });
    expect(list.text).toContain('<Name>meltano-state</Name>');
    expect(list.text).toContain('<Name>pulumi-state</Name>');
    for (const [method, path, query] of [
      ['PUT', '/pulumi-state/.pulumi/stacks/app/prod.json', {}],
      ['DELETE', '/pulumi-state/.pulumi/stacks/app/prod.json', {}],
      ['POST', '/pulumi-state/x', { uploads: '' }],
      ['PUT', '/meltano-state/state/x', {}],
    ] as const) {
      const r = await rawRequest(gateway.url, { method, path, query, body: 'evil', sign: sign(AUDITOR) });
      expect([method, path, r.status, r.code]).toEqual([method, path, 403, 'AccessDenied']);
    }
    expect(await keys(pulumi, 'pulumi_objects')).toEqual(['.pulumi/stacks/app/prod.json']);
    expect(await keys(meltano, 'meltano_objects')).toEqual([]);
  });

  it('a key scoped to the Meltano bucket cannot read, write, list or copy from the Pulumi bucket', async () => {
    const put = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/meltano-state/state/dev/state.json',
      body: '{}',
      sign: sign(MELTANO),
    });
    expect(put.status).toBe(200);
    for (const [method, path] of [
      ['GET', '/pulumi-state/.pulumi/stacks/app/prod.json'],
      ['HEAD', '/pulumi-state/.pulumi/stacks/app/prod.json'],
      ['GET', '/pulumi-state'],
      ['PUT', '/pulumi-state/x'],
    ] as const) {
      const r = await rawRequest(gateway.url, {
        method,
        path,
        body: method === 'PUT' ? 'x' : undefined,
        sign: sign(MELTANO),
      });
      expect([method, path, r.status]).toEqual([method, path, 403]);
    }
    // Copying another bucket's object into its own bucket needs read on the source.
    const copy = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/meltano-state/stolen',
      headers: { 'x-amz-copy-source': '/pulumi-state/.pulumi/stacks/app/prod.json' },
      sign: sign(MELTANO),
    });
    expect([copy.status, copy.code]).toEqual([403, 'AccessDenied']);
    const list = await rawRequest(gateway.url, { method: 'GET', path: '/', sign: sign(MELTANO) });
    expect(list.text).toContain('<Name>meltano-state</Name>');
    expect(list.text).not.toContain('pulumi-state');
    expect(await keys(meltano, 'meltano_objects')).toEqual(['state/dev/state.json']);
    expect(await keys(pulumi, 'pulumi_objects')).toEqual(['.pulumi/stacks/app/prod.json']);
    // The unscoped key may do all of it.
    const adminCopy = await rawRequest(gateway.url, {
      method: 'PUT',
      path: '/meltano-state/copied',
      headers: { 'x-amz-copy-source': '/pulumi-state/.pulumi/stacks/app/prod.json' },
      sign: sign(ADMIN),
    });
    expect(adminCopy.status).toBe(200);
  });

  it('refuses key sets naming unknown buckets, unknown rights or one key twice', async () => {
    for (const credentials of [
      [{ ...AUDITOR, buckets: { nope: 'read' as const } }],
      [{ ...AUDITOR, buckets: { 'pulumi-state': 'write' as never } }],
      [ADMIN, { ...ADMIN }],
    ]) {
      await expect(
        createS3Gateway({ buckets: { 'pulumi-state': pulumi }, credentials, logger: false }),
      ).rejects.toSatisfy((e: unknown) => isPgStateError(e, 'BAD_SETTING') && !String(e).includes('secret'));
    }
  });
});
