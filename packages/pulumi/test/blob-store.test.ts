import { createHash, randomBytes } from 'node:crypto';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createPulumiBucketHandler, type PulumiBlobStore, PulumiBlobStore as Store } from '../src/index.js';

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const text = (s: string) => Buffer.from(s);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const stores: PulumiBlobStore[] = [];

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'pulumi_blob');
});
afterAll(async () => {
  for (const s of stores) await s.close();
  await db.drop();
});

function open(params = ''): PulumiBlobStore {
  const url = new URL(db.url);
  for (const [k, v] of new URLSearchParams(params)) url.searchParams.set(k, v);
  const store = new Store({ connection: url.toString() });
  stores.push(store);
  return store;
}

async function rawQuery(sql: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return (await client.query(sql, values)).rows;
  } finally {
    await client.end();
  }
}

describe.each([
  ['seed', 'table=blob_seed'],
  ['native', 'table=blob_native&layout=native'],
])('blob store, %s layout', (_layout, params) => {
  let store: PulumiBlobStore;
  beforeAll(() => {
    store = open(params);
  });

  it('puts, heads and gets bytes with ETag = hex MD5 and size', async () => {
    const body = randomBytes(1000);
    const info = await store.put('a/b.bin', body);
    expect(info.etag).toBe(md5(body));
    expect(info.size).toBe(1000);
    const head = await store.head('a/b.bin');
    expect(head).toMatchObject({ key: 'a/b.bin', size: 1000, etag: md5(body) });
    expect(head!.lastModified.getTime()).toBe(info.lastModified.getTime());
    const got = await store.get('a/b.bin');
    expect(Buffer.from(got!.body).equals(body)).toBe(true);
    expect(got!.info.etag).toBe(md5(body));
    expect(await store.head('a/missing')).toBeNull();
    expect(await store.get('a/missing')).toBeNull();
  });

  it('serves byte ranges and rejects unsatisfiable ones', async () => {
    const body = text('0123456789');
    await store.put('range.txt', body);
    expect(Buffer.from((await store.get('range.txt', { start: 2, end: 4 }))!.body).toString()).toBe('234');
    expect(Buffer.from((await store.get('range.txt', { start: 7 }))!.body).toString()).toBe('789');
    expect(Buffer.from((await store.get('range.txt', { start: 8, end: 100 }))!.body).toString()).toBe('89');
    await expect(store.get('range.txt', { start: 10 })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(store.get('range.txt', { start: 5, end: 2 })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });

  it('stores empty objects', async () => {
    const info = await store.put('empty', new Uint8Array());
    expect(info).toMatchObject({ size: 0, etag: md5(new Uint8Array()) });
    expect((await store.get('empty'))!.body.byteLength).toBe(0);
  });

  it('put-if-absent writes once and then fails with PRECONDITION_FAILED, leaving the first bytes', async () => {
    await store.put('once', text('first'), { ifNoneMatch: '*' });
    await expect(store.put('once', text('second'), { ifNoneMatch: '*' })).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
    expect(Buffer.from((await store.get('once'))!.body).toString()).toBe('first');
  });

  it('put-if-match swaps only on the current ETag', async () => {
    const first = await store.put('cas', text('v1'));
    const second = await store.put('cas', text('v2'), { ifMatch: first.etag });
    expect(second.etag).toBe(md5(text('v2')));
    await expect(store.put('cas', text('v3'), { ifMatch: first.etag })).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
    await expect(store.put('cas-missing', text('x'), { ifMatch: first.etag })).rejects.toMatchObject({
      code: 'PRECONDITION_FAILED',
    });
    expect(Buffer.from((await store.get('cas'))!.body).toString()).toBe('v2');
    expect(await store.head('cas-missing')).toBeNull();
  });

  it('CAS races: of 8 concurrent writers with the same ETag exactly one wins', async () => {
    for (let round = 0; round < 5; round++) {
      const base = await store.put('race', text(`base-${round}`));
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => store.put('race', text(`w${i}`), { ifMatch: base.etag })),
      );
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason.code).toBe('PRECONDITION_FAILED');
      expect(Buffer.from((await store.get('race'))!.body).toString()).toBe(`w${winners[0]}`);
    }
    // put-if-absent races the same way.
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => store.put('race-new', text(`n${i}`), { ifNoneMatch: '*' })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('concurrent writers of a checkpoint key leave side rows and stack index matching the bytes that won', async () => {
    const table = new URLSearchParams(params).get('table')!;
    const key = '.pulumi/stacks/race/dev.json';
    // Bodies from 3.5 MiB on take the other write path (blob row first, side rows after it, one transaction).
    const checkpoint = (n: number, large: boolean) =>
      text(
        JSON.stringify({
          version: 3,
          checkpoint: {
            stack: 'organization/race/dev',
            latest: {
              resources: Array.from({ length: n }, () => ({ pad: large ? 'x'.repeat((3.5 * 2 ** 20) / n) : '' })),
            },
          },
        }),
      );
    for (let round = 0; round < 4; round++) {
      // Plain writes, small and large, and copies onto the key racing each other.
      await store.put('race/backup.json', checkpoint(100 + round, round % 2 === 1));
      await Promise.all([
        ...Array.from({ length: 6 }, (_, i) => store.put(key, checkpoint(i + 1, (i + round) % 2 === 0))),
        store.copy('race/backup.json', key),
      ]);
      const [row] = await rawQuery(
        `SELECT o.md5, o.size, o.updated_at = t.updated_at AS side_fresh, s.resource_count,
                s.updated_at = t.updated_at AS index_fresh
           FROM ${table} t JOIN ${table}_objects o USING (key) JOIN ${table}_stacks s USING (key)
          WHERE t.key LIKE $1`,
        [`%${key}`],
      );
      const bytes = Buffer.from((await store.read(key))!);
      const count = JSON.parse(bytes.toString()).checkpoint.latest.resources.length;
      expect(row).toEqual({
        md5: md5(bytes),
        size: String(bytes.length),
        side_fresh: true,
        resource_count: count,
        index_fresh: true,
      });
    }
  });

  it('copies inside the database, with the source ETag; missing source -> null', async () => {
    const body = randomBytes(300);
    await store.put('copy/src', body);
    const info = await store.copy('copy/src', 'copy/dst');
    expect(info).toMatchObject({ key: 'copy/dst', size: 300, etag: md5(body) });
    expect(Buffer.from((await store.get('copy/dst'))!.body).equals(body)).toBe(true);
    expect(await store.copy('copy/none', 'copy/dst2')).toBeNull();
    expect(await store.head('copy/dst2')).toBeNull();
  });

  it('deletes: true once, then false; deleteExisting throws NOT_FOUND', async () => {
    await store.put('del/x', text('x'));
    expect(await store.delete('del/x')).toBe(true);
    expect(await store.delete('del/x')).toBe(false);
    await expect(store.deleteExisting('del/x')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('lists in UTF-8 byte order with literal _ and %, delimiters and pagination', async () => {
    const keys = [
      'l/a',
      'l/a_b',
      'l/a%b',
      'l/aXb',
      'l/ab',
      'l/a/1',
      'l/a/2',
      'l/b/1',
      'l/z',
      'l/é',
      'l/\u{1F600}',
      'l/\uFFFD',
      'l/Z',
    ];
    for (const k of keys) await store.put(k, text(k));
    await store.put('m/other', text('outside'));
    const byteOrder = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const all = await store.listAll('l/');
    expect(all.map((o) => o.key)).toEqual(byteOrder);
    expect(all.every((o) => o.etag === md5(text(o.key)) && o.size === Buffer.byteLength(o.key))).toBe(true);
    // `_` and `%` are not wildcards.
    expect((await store.listAll('l/a_')).map((o) => o.key)).toEqual(['l/a_b']);
    expect((await store.listAll('l/a%')).map((o) => o.key)).toEqual(['l/a%b']);
    // Delimiter: common prefixes, in order, interleaved with objects.
    const top = await store.list({ prefix: 'l/', delimiter: '/', maxKeys: 1000 });
    expect(top.commonPrefixes).toEqual(['l/a/', 'l/b/']);
    expect(top.objects.map((o) => o.key)).toEqual(byteOrder.filter((k) => k.split('/').length === 2));
    // Pages of 2, with and without delimiter, join up to the full listing.
    for (const delimiter of [undefined, '/']) {
      const seen: string[] = [];
      let startAfter: string | undefined;
      for (let pages = 0; pages < 20; pages++) {
        const page = await store.list({ prefix: 'l/', delimiter, startAfter, maxKeys: 2 });
        const items = [...page.objects.map((o) => o.key), ...page.commonPrefixes].sort((a, b) =>
          Buffer.compare(Buffer.from(a), Buffer.from(b)),
        );
        expect(items.length).toBeLessThanOrEqual(2);
        seen.push(...items);
        if (!page.isTruncated) break;
        startAfter = page.nextStartAfter;
      }
      const expected = delimiter
        ? [...top.objects.map((o) => o.key), ...top.commonPrefixes].sort((a, b) =>
            Buffer.compare(Buffer.from(a), Buffer.from(b)),
          )
        : byteOrder;
      expect(seen).toEqual(expected);
    }
    const empty = await store.list({ prefix: 'nothing/', maxKeys: 10 });
    expect(empty).toEqual({ objects: [], commonPrefixes: [], isTruncated: false });
  });

  it('rejects hostile keys with INVALID_INPUT and writes nothing', async () => {
    const hostile = [
      '../etc/passwd',
      'a/../b',
      './a',
      '/abs',
      'a//b',
      '',
      'nul\u0000byte',
      'new\nline',
      'bad\uD800surrogate',
      'back\\slash',
      'x'.repeat(1025),
    ];
    for (const key of hostile) {
      await expect(store.put(key, text('x')), JSON.stringify(key)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      await expect(store.get(key)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    }
    await expect(store.list({ prefix: '../', maxKeys: 10 })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    // A long but legal key works.
    await store.put('k'.repeat(1024), text('long'));
    expect((await store.head('k'.repeat(1024)))?.size).toBe(4);
  });

  it('a BucketHandler serves the same store', async () => {
    const handler = createPulumiBucketHandler(store);
    expect(handler.kind).toBe('pulumi');
    await handler.putObject('h/1', text('one'));
    expect((await handler.headObject('h/1'))?.etag).toBe(md5(text('one')));
    expect(await handler.deleteObject('h/1')).toBe(true);
    expect(await handler.deleteObject('h/1')).toBe(false);
    await handler.close?.();
    expect(await store.head('h/1')).toBeNull(); // the store is still open: close() only closes what it created
  });
});

describe('layouts on disk', () => {
  it('seed rows hold raw bytes; native rows hold {"data": base64} under the database-name prefix', async () => {
    const seed = open('table=disk_seed');
    const native = open('table=disk_native&layout=native');
    const body = randomBytes(64);
    await seed.put('.pulumi/meta.yaml', body);
    await native.put('.pulumi/meta.yaml', body);
    const [seedRow] = await rawQuery('SELECT key, data FROM disk_seed');
    expect(seedRow.key).toBe('.pulumi/meta.yaml');
    expect(Buffer.from(seedRow.data).equals(body)).toBe(true);
    const [nativeRow] = await rawQuery('SELECT key, data FROM disk_native');
    expect(nativeRow.key).toBe(`${db.name}/.pulumi/meta.yaml`);
    expect(nativeRow.data).toEqual({ data: body.toString('base64') });
    const cols = await rawQuery(
      "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'disk_seed' ORDER BY ordinal_position",
    );
    expect(cols).toEqual([
      { column_name: 'key', data_type: 'text' },
      { column_name: 'data', data_type: 'bytea' },
      { column_name: 'updated_at', data_type: 'timestamp with time zone' },
    ]);
  });

  it('rows written by other tools (no side row, stale side row) still get a correct size and ETag', async () => {
    const seed = open('table=foreign_seed');
    await seed.put('f/1', text('ours'));
    // Another tool (the seed's Go driver) overwrites the row directly.
    await rawQuery("UPDATE foreign_seed SET data = 'theirs!'::bytea, updated_at = now() WHERE key = 'f/1'");
    await rawQuery("INSERT INTO foreign_seed (key, data) VALUES ('f/2', 'new row'::bytea)");
    expect(await seed.head('f/1')).toMatchObject({ size: 7, etag: md5(text('theirs!')) });
    expect(await seed.head('f/2')).toMatchObject({ size: 7, etag: md5(text('new row')) });
    const listed = await seed.listAll('f/');
    expect(listed.map((o) => [o.key, o.etag])).toEqual([
      ['f/1', md5(text('theirs!'))],
      ['f/2', md5(text('new row'))],
    ]);
    const native = open('table=foreign_native&layout=native');
    await native.put('n/1', text('ours'));
    await rawQuery(
      `UPDATE foreign_native SET data = json_build_object('data', encode('pulumi wrote'::bytea, 'base64')), updated_at = now()`,
    );
    expect(await native.head('n/1')).toMatchObject({ size: 12, etag: md5(text('pulumi wrote')) });
    expect(Buffer.from((await native.get('n/1'))!.body).toString()).toBe('pulumi wrote');
  });

  it('rejects hostile table names with INVALID_IDENTIFIER before connecting', () => {
    for (const table of ['x; DROP TABLE y', 'a"b', '1abc', '', 'a'.repeat(60), 'tbl-name']) {
      expect(() => new Store({ connection: db.url, table }), table).toThrow(
        expect.objectContaining({ code: 'INVALID_IDENTIFIER' }),
      );
    }
    expect(() => new Store({ connection: db.url, layout: 'weird' as 'seed' })).toThrow(
      expect.objectContaining({ code: 'BAD_SETTING' }),
    );
  });

  it('custom table and schema names from the URL', async () => {
    await rawQuery('CREATE SCHEMA IF NOT EXISTS state');
    const store = open('table=My_State&schema=state');
    await store.put('x', text('y'));
    const rows = await rawQuery('SELECT key FROM state."My_State"');
    expect(rows).toEqual([{ key: 'x' }]);
  });

  it('with migrate: false nothing is created: a missing table is MIGRATIONS_PENDING', async () => {
    const store = new Store({ connection: db.url, table: 'never_created', migrate: false });
    stores.push(store);
    await expect(store.head('x')).rejects.toMatchObject({ code: 'MIGRATIONS_PENDING' });
    expect(await rawQuery("SELECT to_regclass('public.never_created') AS t")).toEqual([{ t: null }]);
  });
});

describe('byte order under a linguistic collation', () => {
  it('lists in UTF-8 byte order even when the key column sorts linguistically', async () => {
    // A table created by someone else with an ICU collation: ORDER BY key would give a/A/_ interleaved.
    await rawQuery(`CREATE TABLE icu_state (
      key text COLLATE "und-x-icu" PRIMARY KEY, data bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
    await rawQuery('CREATE INDEX icu_state_key_prefix_idx ON icu_state (key text_pattern_ops)');
    const store = open('table=icu_state');
    const keys = ['p/b', 'p/B', 'p/_x', 'p/a', 'p/A', 'p/é', 'p/e', 'p/Z'];
    for (const k of keys) await store.put(k, text(k));
    const linguistic = (await rawQuery("SELECT key FROM icu_state WHERE key LIKE 'p/%' ORDER BY key")).map(
      (r) => r.key,
    );
    const bytes = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(linguistic).not.toEqual(bytes); // the collation really differs, so this test can fail
    expect((await store.listAll('p/')).map((o) => o.key)).toEqual(bytes);
    const paged: string[] = [];
    let startAfter: string | undefined;
    do {
      const page = await store.list({ prefix: 'p/', startAfter, maxKeys: 3 });
      paged.push(...page.objects.map((o) => o.key));
      startAfter = page.isTruncated ? page.nextStartAfter : undefined;
    } while (startAfter);
    expect(paged).toEqual(bytes);
  });
});
