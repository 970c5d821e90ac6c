import { isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { createMeltanoBucketHandler, MeltanoStateStore } from '../src/index.js';
import { openStore } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Client;
let store: MeltanoStateStore;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'meltano_bucket');
  sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  store = await openStore(db.url, 'pgstate', { lockTimeoutSeconds: 2 });
});
afterAll(async () => {
  await store?.close();
  await sql?.end();
  await db?.drop();
});

const enc = (s: string) => Buffer.from(s, 'utf8');
const dec = (b: Uint8Array | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');

test("Meltano's S3 files map to rows: state.json <-> meltano_state, lock <-> an expiring lock row", async () => {
  const bucket = createMeltanoBucketHandler({ store, prefix: '/state/' });
  const key = 'state/dev:tap-a-to-target-b/state.json';
  // What Meltano's S3 backend writes (json.dumps of MeltanoState.to_dict()).
  await bucket.putObject(key, enc('{"completed": {"singer_state": {"bookmarks": {"a": 1}}}, "partial": {}}'));
  expect((await store.get('dev:tap-a-to-target-b'))?.merged).toEqual({ singer_state: { bookmarks: { a: 1 } } });
  const raw = await sql.query('SELECT partial_state, completed_state FROM mel_pgstate.meltano_state');
  expect(raw.rows).toEqual([{ partial_state: null, completed_state: '{"singer_state": {"bookmarks": {"a": 1}}}' }]);

  // pgstate's merge shows up in the file Meltano reads.
  await store.merge('dev:tap-a-to-target-b', { singer_state: { bookmarks: { b: 2 } } });
  const got = await bucket.getObject(key);
  expect(JSON.parse(dec(got?.body))).toEqual({
    completed: { singer_state: { bookmarks: { a: 1 } } },
    partial: { singer_state: { bookmarks: { b: 2 } } },
  });
  expect(got?.info.etag).toMatch(/^[0-9a-f]{32}$/);
  expect((await bucket.headObject(key))?.etag).toBe(got?.info.etag);
  expect(dec((await bucket.getObject(key, { start: 0, end: 12 }))?.body)).toBe('{"completed":');

  // Lock file: absent, then a real row; a second writer's PUT waits (here: ifNoneMatch fails at once).
  const lockKey = 'state/dev:tap-a-to-target-b/lock';
  expect(await bucket.getObject(lockKey)).toBeNull();
  await bucket.putObject(lockKey, enc('1700000000.5'));
  expect(dec((await bucket.getObject(lockKey))?.body)).toBe('1700000000.5');
  const lockRow = await sql.query('SELECT lock_id, expires_at > now() AS live FROM mel_pgstate.meltano_state_locks');
  expect(lockRow.rows).toEqual([{ lock_id: 's3:1700000000.5', live: true }]);
  await expect(bucket.putObject(lockKey, enc('1700000001'), { ifNoneMatch: '*' })).rejects.toMatchObject({
    code: 'PRECONDITION_FAILED',
  });
  // pgstate writers respect the lock file.
  const impatient = await openStore(db.url, 'pgstate', { lockWaitSeconds: 0.3, lockRetrySeconds: 0.05 });
  await expect(impatient.merge('dev:tap-a-to-target-b', { singer_state: {} })).rejects.toMatchObject({
    code: 'LOCK_TIMEOUT',
  });
  await impatient.close();

  // Listing as Meltano's S3 backend does it (Prefix without a trailing slash, no delimiter).
  await bucket.putObject('state/prod:x/state.json', enc('{"completed": {"singer_state": {}}, "partial": null}'));
  const listed = await bucket.listObjects({ prefix: 'state', maxKeys: 1000 });
  expect(listed.objects.map((o) => o.key)).toEqual([
    'state/dev:tap-a-to-target-b/lock',
    'state/dev:tap-a-to-target-b/state.json',
    'state/prod:x/state.json',
  ]);
  const paged = await bucket.listObjects({ prefix: 'state/', maxKeys: 2 });
  expect(paged.isTruncated).toBe(true);
  const next = await bucket.listObjects({ prefix: 'state/', maxKeys: 2, startAfter: paged.nextStartAfter });
  expect(next.objects.map((o) => o.key)).toEqual(['state/prod:x/state.json']);
  const grouped = await bucket.listObjects({ prefix: 'state/', delimiter: '/', maxKeys: 1000 });
  expect(grouped.commonPrefixes).toEqual(['state/dev:tap-a-to-target-b/', 'state/prod:x/']);

  // Release (Meltano deletes the lock file), then a blocked PUT proceeds; an expired lock reads as absent.
  expect(await bucket.deleteObject(lockKey)).toBe(true);
  await bucket.putObject(lockKey, enc('1700000002'));
  await sql.query(`UPDATE mel_pgstate.meltano_state_locks SET expires_at = now() - interval '1 second'`);
  expect(await bucket.getObject(lockKey)).toBeNull();
  await bucket.putObject(lockKey, enc('1700000003')); // takes the expired lock over
  await bucket.deleteObject(lockKey);

  // copy + delete of state files (Meltano's migrate() and clear use them).
  await bucket.copyObject(key, 'state/copy/state.json');
  expect((await store.get('copy'))?.partial).toEqual({ singer_state: { bookmarks: { b: 2 } } });
  expect(await bucket.deleteObject('state/copy/state.json')).toBe(true);
  expect(await store.get('copy')).toBeNull();
});

test('a lock-file PUT waits for the holder and then wins; a dead holder is taken over after expiry', async () => {
  const bucket = createMeltanoBucketHandler({ store, prefix: 'state' });
  const lockKey = 'state/dev:wait/lock';
  await bucket.putObject(lockKey, enc('1'));
  let second = false;
  const waiting = bucket.putObject(lockKey, enc('2')).then(() => {
    second = true;
  });
  await new Promise((r) => setTimeout(r, 300));
  expect(second).toBe(false);
  await bucket.deleteObject(lockKey);
  await waiting;
  expect(dec((await bucket.getObject(lockKey))?.body)).toBe('2');
  // Never released (the holder died): the next PUT gets it once the 2 s expiry passed.
  await bucket.putObject(lockKey, enc('3'));
  expect(dec((await bucket.getObject(lockKey))?.body)).toBe('3');
  await bucket.deleteObject(lockKey);
});

test('bad keys and bodies are rejected precisely and write nothing', async () => {
  const bucket = createMeltanoBucketHandler({ store, prefix: 'state' });
  const before = await sql.query('SELECT * FROM mel_pgstate.meltano_state ORDER BY state_id');
  for (const [key, body] of [
    ['state/dev:x/state.json', '{"completed": '],
    ['state/dev:x/state.json', '[1]'],
    ['state/dev:x/state.json', '{"completed": [1]}'],
    ['other/dev:x/state.json', '{}'],
    ['state/dev:x/notes.txt', '{}'],
    ['state/a/b/state.json', '{}'],
    ['state/dev:x/lock', 'soon'],
  ] as const) {
    const error = await bucket.putObject(key, enc(body)).catch((e: unknown) => e);
    expect(isPgStateError(error, 'INVALID_INPUT'), `${key} ${body}: ${String(error)}`).toBe(true);
  }
  expect((await sql.query('SELECT * FROM mel_pgstate.meltano_state ORDER BY state_id')).rows).toEqual(before.rows);
});

test('on an unmigrated database the bucket creates its tables on first use, as the Pulumi bucket does', async () => {
  const fresh = new pg.Pool({ connectionString: db.url, max: 2 });
  try {
    const off = createMeltanoBucketHandler({ storeOptions: { pool: fresh, schema: 'mel_lazy_off' }, migrate: false });
    await expect(off.listObjects({ prefix: '', maxKeys: 10 })).rejects.toThrow();
    expect((await sql.query("SELECT to_regclass('mel_lazy_off.meltano_state') AS t")).rows[0].t).toBeNull();

    const bucket = createMeltanoBucketHandler({ storeOptions: { pool: fresh, schema: 'mel_lazy' }, prefix: 'state' });
    expect((await bucket.listObjects({ prefix: 'state/', maxKeys: 10 })).objects).toEqual([]);
    await bucket.putObject(
      'state/dev:lazy/state.json',
      enc('{"completed": {"singer_state": {"a": 1}}, "partial": {}}'),
    );
    const { rows } = await sql.query('SELECT state_id FROM mel_lazy.meltano_state');
    expect(rows).toEqual([{ state_id: 'dev:lazy' }]);
    // The former layout name still opens the same tables.
    const alias = new MeltanoStateStore({ pool: fresh, schema: 'mel_lazy', layout: 'seed' });
    expect(alias.layout).toBe('pgstate');
    expect((await alias.get('dev:lazy'))?.merged).toEqual({ singer_state: { a: 1 } });
  } finally {
    await fresh.end();
  }
});
