/**
 * The bucket-handler contract as a test suite any adapter runs against its own handler: every promise of
 * `BucketHandler` (round trips, ranges, conditional writes, copy, delete, S3 listing order and paging, atomic
 * conditional writes under concurrency), each checked twice: through the handler, and in PostgreSQL directly through
 * a probe the adapter supplies (the way auth.js's adapter tests read the database behind the adapter).
 *
 * The caller passes its test framework's `describe`/`test`/`beforeEach`/`afterEach` (vitest's fit), so this module
 * depends on no test framework; assertions use node:assert.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { BucketHandler, ListRequest, ListResult } from './bucket-handler.js';

/** The parts of a test framework the contract needs (vitest's `describe`, `test`, `beforeEach`, `afterEach`). */
export interface ContractTestApi {
  describe(name: string, fn: () => void): void;
  test(name: string, fn: () => Promise<void>, timeout?: number): void;
  beforeEach(fn: () => Promise<void>): void;
  afterEach(fn: () => Promise<void>): void;
}

export interface BucketContractProbe {
  /**
   * What PostgreSQL holds for `key`, read with SQL (never through the handler), in whatever shape suits the table;
   * null when nothing is stored. Compared (deep, strict) with `expectedRow(key, body)`.
   */
  rowFor(key: string): Promise<unknown>;
}

export interface BucketContractOptions {
  /** Names the suite (`describe`). */
  name: string;
  /** Opens a handler on an empty bucket; called before each test. The contract closes it after the test. */
  open(): Promise<BucketHandler> | BucketHandler;
  probe: BucketContractProbe;
  /** What `probe.rowFor(key)` must return once `body` is stored at `key`. */
  expectedRow(key: string, body: Uint8Array): unknown;
  /**
   * A key this handler accepts for an object named `name` (names are short, of [a-z0-9-]). Different names give
   * different keys; keys of names sharing a prefix ("b", "b-1") should share one too, for the prefix cases.
   */
  key(name: string): string;
  /**
   * The n-th sample body: one the handler stores byte for byte (for handlers that normalize, e.g. JSON, the
   * normalized form), different for every n, at least 8 bytes long.
   */
  body(n: number): Uint8Array;
  /** Keys the handler must refuse with INVALID_INPUT (e.g. outside its keyspace). */
  invalidKeys?: string[];
  /** Concurrent writers in the atomicity cases (default 8; at most the handler's pool size is pointless). */
  concurrency?: number;
  /** Per-test timeout in ms (default 60 s). */
  timeoutMs?: number;
}

const md5 = (bytes: Uint8Array) => createHash('md5').update(bytes).digest('hex');
const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return String((error as { code?: unknown }).code);
  }
  return 'no error';
}

/**
 * S3's listing rules as a plain function (the model the handler's answers are compared with): keys after
 * `startAfter` that start with `prefix`, in UTF-8 byte order; with a delimiter, keys with the delimiter after the
 * prefix roll up into one common prefix; objects and common prefixes together count against `maxKeys`.
 */
export function modelListing(keys: readonly string[], request: ListRequest): ListResult {
  const prefix = request.prefix ?? '';
  const result: ListResult = { objects: [], commonPrefixes: [], isTruncated: false };
  const entries: Array<{ key: string; rollup: boolean }> = [];
  for (const key of [...keys].sort(utf8Order)) {
    if (!key.startsWith(prefix)) continue;
    if (request.startAfter !== undefined && utf8Order(key, request.startAfter) <= 0) continue;
    const at = request.delimiter ? key.indexOf(request.delimiter, prefix.length) : -1;
    if (at >= 0 && request.delimiter) {
      const common = key.slice(0, at + request.delimiter.length);
      // A common prefix at or before startAfter was listed on an earlier page.
      if (request.startAfter !== undefined && utf8Order(common, request.startAfter) <= 0) continue;
      if (entries.at(-1)?.key !== common) entries.push({ key: common, rollup: true });
    } else entries.push({ key, rollup: false });
  }
  for (const [i, entry] of entries.entries()) {
    if (i >= request.maxKeys) {
      result.isTruncated = true;
      break;
    }
    if (entry.rollup) result.commonPrefixes.push(entry.key);
    else result.objects.push({ key: entry.key, size: 0, etag: '', lastModified: new Date(0) });
  }
  return result;
}

/** Registers the contract suite with the caller's test framework. */
export function runBucketHandlerContract(api: ContractTestApi, options: BucketContractOptions): void {
  const { probe, key, body } = options;
  const timeout = options.timeoutMs ?? 60_000;
  const writers = options.concurrency ?? 8;
  let handler: BucketHandler;

  const expectStored = async (k: string, b: Uint8Array, what: string) => {
    assert.deepStrictEqual(await probe.rowFor(k), options.expectedRow(k, b), `${what}: the row for ${k}`);
  };
  const expectAbsent = async (k: string, what: string) => {
    assert.equal(await probe.rowFor(k), null, `${what}: no row for ${k}`);
    assert.equal(await handler.headObject(k), null, `${what}: headObject(${k})`);
  };
  const expectObject = async (k: string, b: Uint8Array, what: string) => {
    const got = await handler.getObject(k);
    assert.ok(got, `${what}: getObject(${k}) found it`);
    assert.equal(hex(got.body), hex(b), `${what}: the bytes of ${k}`);
    assert.equal(got.info.key, k);
    assert.equal(got.info.size, b.byteLength, `${what}: size`);
    assert.equal(got.info.etag, md5(b), `${what}: ETag = MD5 of the bytes`);
    assert.ok(got.info.lastModified instanceof Date, `${what}: lastModified is a Date`);
    const head = await handler.headObject(k);
    assert.deepStrictEqual(
      head && { key: head.key, size: head.size, etag: head.etag },
      { key: k, size: b.byteLength, etag: md5(b) },
      `${what}: headObject agrees with getObject`,
    );
    await expectStored(k, b, what);
  };
  const it = (name: string, fn: () => Promise<void>) => api.test(name, fn, timeout);

  api.describe(`bucket handler contract: ${options.name}`, () => {
    api.beforeEach(async () => {
      handler = await options.open();
    });
    api.afterEach(async () => {
      await handler?.close?.();
    });

    it('has a kind', async () => {
      assert.equal(typeof handler.kind, 'string');
      assert.ok(handler.kind.length > 0);
    });

    it('missing keys: get and head are null, delete is false, copy from them is null', async () => {
      const k = key('missing');
      assert.equal(await handler.getObject(k), null);
      assert.equal(await handler.getObject(k, { start: 0, end: 3 }), null);
      assert.equal(await handler.deleteObject(k), false);
      assert.equal(await handler.copyObject(k, key('target')), null);
      await expectAbsent(k, 'missing');
      await expectAbsent(key('target'), 'copy of a missing key');
    });

    it('put stores the bytes (row in PostgreSQL included) and returns their size and MD5 ETag', async () => {
      const k = key('a');
      const info = await handler.putObject(k, body(1));
      assert.deepStrictEqual(
        { key: info.key, size: info.size, etag: info.etag },
        { key: k, size: body(1).byteLength, etag: md5(body(1)) },
      );
      assert.ok(info.lastModified instanceof Date);
      await expectObject(k, body(1), 'after put');
    });

    it('put replaces the whole object', async () => {
      const k = key('a');
      await handler.putObject(k, body(1));
      await handler.putObject(k, body(2));
      await expectObject(k, body(2), 'after the second put');
    });

    it('ranges: inclusive start..end, and start to the end; the info describes the whole object', async () => {
      const k = key('a');
      const b = body(3);
      await handler.putObject(k, b);
      const middle = await handler.getObject(k, { start: 1, end: 4 });
      assert.equal(hex(middle?.body ?? new Uint8Array()), hex(b.subarray(1, 5)));
      assert.equal(middle?.info.size, b.byteLength);
      assert.equal(middle?.info.etag, md5(b));
      const tail = await handler.getObject(k, { start: 2 });
      assert.equal(hex(tail?.body ?? new Uint8Array()), hex(b.subarray(2)));
      const first = await handler.getObject(k, { start: 0, end: 0 });
      assert.equal(hex(first?.body ?? new Uint8Array()), hex(b.subarray(0, 1)));
    });

    it('If-None-Match: * writes only a new key; a refused write changes nothing', async () => {
      const k = key('a');
      await handler.putObject(k, body(1), { ifNoneMatch: '*' });
      await expectObject(k, body(1), 'created with If-None-Match');
      assert.equal(await codeOf(handler.putObject(k, body(2), { ifNoneMatch: '*' })), 'PRECONDITION_FAILED');
      await expectObject(k, body(1), 'after a refused If-None-Match');
    });

    it('If-Match writes only over the same ETag; a refused write changes nothing', async () => {
      const k = key('a');
      assert.equal(await codeOf(handler.putObject(k, body(1), { ifMatch: md5(body(1)) })), 'PRECONDITION_FAILED');
      await expectAbsent(k, 'If-Match on a missing key');
      const first = await handler.putObject(k, body(1));
      assert.equal(await codeOf(handler.putObject(k, body(2), { ifMatch: md5(body(9)) })), 'PRECONDITION_FAILED');
      await expectObject(k, body(1), 'after a refused If-Match');
      await handler.putObject(k, body(2), { ifMatch: first.etag });
      await expectObject(k, body(2), 'after a matching If-Match');
    });

    it('copy writes the source’s bytes at the destination and leaves the source', async () => {
      await handler.putObject(key('a'), body(1));
      await handler.putObject(key('b'), body(2));
      const info = await handler.copyObject(key('a'), key('b'));
      assert.equal(info?.etag, md5(body(1)));
      await expectObject(key('b'), body(1), 'copy destination');
      await expectObject(key('a'), body(1), 'copy source');
    });

    it('delete removes the object and its row; a second delete is false', async () => {
      await handler.putObject(key('a'), body(1));
      await handler.putObject(key('b'), body(2));
      assert.equal(await handler.deleteObject(key('a')), true);
      await expectAbsent(key('a'), 'after delete');
      assert.equal(await handler.deleteObject(key('a')), false);
      await expectObject(key('b'), body(2), 'a neighbour of the deleted key');
    });

    it('invalid keys are refused with INVALID_INPUT, and nothing is written', async () => {
      for (const bad of options.invalidKeys ?? []) {
        assert.equal(await codeOf(handler.putObject(bad, body(1))), 'INVALID_INPUT', `putObject(${bad})`);
        assert.equal(await codeOf(handler.getObject(bad)), 'INVALID_INPUT', `getObject(${bad})`);
      }
      const listing = await handler.listObjects({ maxKeys: 1000 });
      assert.deepStrictEqual(listing.objects, []);
    });

    it('list: S3 byte order, prefix, delimiter, maxKeys and startAfter, as the model says', async () => {
      const names = ['c', 'a', 'b-1', 'b', 'x-y', 'b-2'];
      const keys = names.map((n) => key(n));
      for (const [i, k] of keys.entries()) await handler.putObject(k, body(10 + i));
      const sharedB = commonStart(key('b'), key('b-1'));
      const prefixes = ['', sharedB, key('b'), key('x-y'), `${sharedB}zzz-none`];
      for (const prefix of prefixes) {
        for (const delimiter of [undefined, '/', '-']) {
          const empty = await handler.listObjects({ prefix, delimiter, maxKeys: 0 });
          assert.deepStrictEqual([empty.objects, empty.commonPrefixes], [[], []], 'maxKeys 0 lists nothing');
          for (const maxKeys of [1000, 3, 1]) {
            // No startAfter inside what the delimiter rolls up: S3 implementations differ on listing that common
            // prefix again. Pages chain through nextStartAfter instead (next case).
            const inside = (after: string) => delimiter !== undefined && after.indexOf(delimiter, prefix.length) >= 0;
            for (const startAfter of [undefined, key('b')].filter((a) => a === undefined || !inside(a))) {
              const request: ListRequest = { prefix, delimiter, maxKeys, startAfter };
              const got = await handler.listObjects(request);
              const want = modelListing(keys, request);
              const where = JSON.stringify(request);
              assert.deepStrictEqual(
                got.objects.map((o) => o.key),
                want.objects.map((o) => o.key),
                `objects of ${where}`,
              );
              assert.deepStrictEqual(got.commonPrefixes, want.commonPrefixes, `common prefixes of ${where}`);
              assert.equal(got.isTruncated, want.isTruncated, `isTruncated of ${where}`);
            }
          }
        }
      }
      const all = await handler.listObjects({ maxKeys: 1000 });
      for (const o of all.objects) {
        const i = keys.indexOf(o.key);
        assert.equal(o.size, body(10 + i).byteLength, `listed size of ${o.key}`);
        assert.equal(o.etag, md5(body(10 + i)), `listed ETag of ${o.key}`);
      }
    });

    it('list pages chain through nextStartAfter to exactly the whole listing', async () => {
      const keys = ['a', 'b', 'b-1', 'b-2', 'c', 'd'].map((n) => key(n));
      for (const [i, k] of keys.entries()) await handler.putObject(k, body(20 + i));
      for (const delimiter of [undefined, '/', '-']) {
        for (const maxKeys of [1, 2, 5]) {
          const whole = modelListing(keys, { delimiter, maxKeys: 1000 });
          const seen: string[] = [];
          const prefixes: string[] = [];
          let startAfter: string | undefined;
          for (let page = 0; page <= keys.length; page++) {
            const got = await handler.listObjects({ delimiter, maxKeys, startAfter });
            assert.ok(got.objects.length + got.commonPrefixes.length <= maxKeys, 'a page holds at most maxKeys');
            seen.push(...got.objects.map((o) => o.key));
            prefixes.push(...got.commonPrefixes);
            if (!got.isTruncated) break;
            assert.ok(got.nextStartAfter, 'a truncated page says where the next one starts');
            startAfter = got.nextStartAfter;
          }
          const where = `delimiter ${String(delimiter)}, maxKeys ${maxKeys}`;
          assert.deepStrictEqual(
            seen,
            whole.objects.map((o) => o.key),
            `paged objects (${where})`,
          );
          assert.deepStrictEqual(prefixes, whole.commonPrefixes, `paged common prefixes (${where})`);
        }
      }
    });

    it('concurrent If-None-Match: * writes to one key: exactly one wins, the row holds its bytes', async () => {
      const k = key('race');
      const results = await Promise.allSettled(
        Array.from({ length: writers }, (_, i) => handler.putObject(k, body(30 + i), { ifNoneMatch: '*' })),
      );
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      assert.equal(won.length, 1, 'exactly one writer wins');
      for (const r of results) {
        if (r.status === 'rejected') assert.equal((r.reason as { code?: unknown }).code, 'PRECONDITION_FAILED');
      }
      await expectObject(k, body(30 + (won[0] as number)), 'the winner');
    });

    it('concurrent If-Match writes over one ETag: exactly one wins, the row holds its bytes', async () => {
      const k = key('race');
      const start = await handler.putObject(k, body(40));
      const results = await Promise.allSettled(
        Array.from({ length: writers }, (_, i) => handler.putObject(k, body(41 + i), { ifMatch: start.etag })),
      );
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      assert.equal(won.length, 1, 'exactly one writer wins');
      for (const r of results) {
        if (r.status === 'rejected') assert.equal((r.reason as { code?: unknown }).code, 'PRECONDITION_FAILED');
      }
      await expectObject(k, body(41 + (won[0] as number)), 'the winner');
    });
  });
}

function commonStart(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}
