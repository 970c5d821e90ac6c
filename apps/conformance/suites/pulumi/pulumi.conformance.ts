// @pgstate/pulumi on every lane: the blob contract the Pulumi CLI relies on, the stack API, locks raced by real OS
// processes, a writer SIGKILLed mid-save, both layouts, custom and hostile names. Probes read the tables directly.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PulumiBlobStore, PulumiStateStore } from '@pgstate/pulumi';
import { migrate } from '@pgstate/schema';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type LaneTarget, type SuiteContext } from '../../src/kit.js';

const children = path.join(path.dirname(fileURLToPath(import.meta.url)), 'children');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const bytes = (s: string) => Buffer.from(s);

/** Every configuration the tests use: an admin migrates them, so the least-privilege role needs DML only. */
const CONFIGS = [
  { table: 'pulumi_state' },
  { table: 'native_state', layout: 'native' },
  { table: 'team_x', schema: 'infra' },
  { table: 'race2' },
  { table: 'race16' },
  { table: 'killed' },
] as const;

function urlWith(lane: LaneTarget, params: Record<string, string>): string {
  const url = new URL(lane.url);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}

interface Row {
  key: string;
  md5: string;
  size: number;
  updated_at: Date;
}

const probesFor = (admin: pg.Pool) => ({
  /** The blob row as stored (seed: raw bytes; native: JSON with base64), with its side row. */
  async row(table: string, key: string): Promise<(Row & { side: Row | null; native?: string }) | null> {
    const native = table === 'native_state';
    const body = native ? "decode(t.data->>'data', 'base64')" : 't.data';
    const { rows } = await admin.query(
      `SELECT t.key, md5(${body}) AS md5, octet_length(${body})::int AS size, t.updated_at,
              ${native ? 't.data::text' : 'NULL'} AS native,
              o.md5 AS side_md5, o.size::int AS side_size, o.updated_at AS side_updated_at
         FROM public.${table} t LEFT JOIN public.${table}_objects o ON o.key = t.key WHERE t.key = $1`,
      [key],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      key: r.key,
      md5: r.md5,
      size: r.size,
      updated_at: r.updated_at,
      native: r.native ?? undefined,
      side: r.side_md5 ? { key: r.key, md5: r.side_md5, size: r.side_size, updated_at: r.side_updated_at } : null,
    };
  },
  async keys(table: string, schema = 'public'): Promise<string[]> {
    const { rows } = await admin.query(`SELECT key FROM ${schema}.${table} ORDER BY key COLLATE "C"`);
    return rows.map((r) => r.key);
  },
  async stackIndex(table: string): Promise<{ key: string; updated: boolean; size: number; count: number | null }[]> {
    const { rows } = await admin.query(
      `SELECT s.key, s.updated_at = t.updated_at AS updated, s.size::int AS size, s.resource_count AS count
         FROM public.${table}_stacks s LEFT JOIN public.${table} t ON t.key = s.key ORDER BY s.key COLLATE "C"`,
    );
    return rows;
  },
  async journal(): Promise<string[]> {
    const { rows } = await admin.query(
      "SELECT config || ' ' || migration AS m FROM pgstate.migrations WHERE config LIKE 'pulumi%' ORDER BY 1",
    );
    return rows.map((r) => r.m);
  },
});
type Probes = ReturnType<typeof probesFor>;
type Ctx = SuiteContext<PulumiStateStore, Probes>;

function deployment(project: string, stack: string, count: number, time = '2026-02-03T04:05:06Z') {
  const urn = (type: string, name: string) => `urn:pulumi:${stack}::${project}::${type}::${name}`;
  const resources = [{ urn: urn('pulumi:pulumi:Stack', `${project}-${stack}`), type: 'pulumi:pulumi:Stack' }];
  for (let i = 1; i < count; i++) {
    resources.push({
      urn: urn('random:index/randomPet:RandomPet', `pet${i}`),
      type: 'random:index/randomPet:RandomPet',
    });
  }
  return { version: 3, deployment: { manifest: { time }, resources } };
}

/** A store on another configuration of this lane, closed after the test. */
function storeOn(t: Ctx, params: Record<string, string>): PulumiStateStore {
  const store = new PulumiStateStore(urlWith(t.lane, params));
  t.onCleanup(() => store.close());
  return store;
}

async function lockRace(t: Ctx, processes: number, rounds: number, table: string): Promise<void> {
  const goDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pulumi-race-'));
  t.onCleanup(() => fs.rmSync(goDir, { recursive: true, force: true }));
  const racers = Array.from({ length: processes }, (_, i) =>
    t.spawn(path.join(children, 'lock-racer.mjs'), { args: [String(i), goDir, String(rounds), table] }),
  );
  await Promise.all(racers.map((r, i) => r.waitForLine(new RegExp(`^ready ${i}$`), 90_000)));
  for (let round = 0; round < rounds; round++) {
    fs.writeFileSync(path.join(goDir, `go-${round}`), '');
    const lines = await Promise.all(racers.map((r) => r.waitForLine(new RegExp(`^round ${round} `), 60_000)));
    const won = lines.filter((l) => l.endsWith(' won'));
    expect(won, `round ${round}: ${lines.join(' | ')}`).toHaveLength(1);
    // Losers lose with CONFLICT (the stack is locked), never with an error.
    for (const l of lines.filter((x) => !x.endsWith(' won'))) expect(l).toMatch(/ lost CONFLICT$/);
    const locks = await t.admin.query(`SELECT count(*)::int AS n FROM public.${table} WHERE key LIKE $1`, [
      `.pulumi/locks/organization/race/race-${round}/%`,
    ]);
    expect(locks.rows[0].n).toBe(1);
  }
  const results = await Promise.all(racers.map((r) => r.done));
  for (const r of results) expect(r.code, r.stderr.slice(-500)).toBe(0);
}

defineConformance({
  adapter: '@pgstate/pulumi',
  lanes: ['direct', 'tls-verify-full', 'mtls', 'pgbouncer', 'least-privilege'],
  async setup(admin) {
    // As `pgstate migrate --adapter pulumi` would, once per configuration, before any lane role connects.
    for (const c of CONFIGS) await migrate(admin, { adapter: 'pulumi', ...c });
  },
  // Default options: the store runs its own up-to-date migrate check on first use (no DDL, no lock).
  create: (lane) => new PulumiStateStore(lane.url),
  close: (store) => store.close(),
  probes: probesFor,
  tests({ test }) {
    test('blob operations: put/head/get/ranges/CAS/copy/delete land byte-exact with a matching MD5 side row', async (t) => {
      const blobs = t.adapter.blobs;
      const body = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256)); // not UTF-8
      const put = await blobs.put('dir/a.bin', body);
      expect(put.etag).toBe(md5(body));
      const row = await t.probes.row('pulumi_state', 'dir/a.bin');
      expect(row).toMatchObject({ md5: md5(body), size: 3000 });
      expect(row!.side).toMatchObject({ md5: md5(body), size: 3000, updated_at: row!.updated_at });
      expect(await blobs.head('dir/a.bin')).toMatchObject({ size: 3000, etag: md5(body) });
      expect(Buffer.from((await blobs.get('dir/a.bin'))!.body).equals(body)).toBe(true);
      expect(Buffer.from((await blobs.get('dir/a.bin', { start: 10, end: 19 }))!.body)).toEqual(body.subarray(10, 20));
      expect(Buffer.from((await blobs.get('dir/a.bin', { start: 2990 }))!.body)).toEqual(body.subarray(2990));
      await expect(blobs.get('dir/a.bin', { start: 3000 })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      expect(await blobs.get('missing')).toBeNull();
      expect(await blobs.head('missing')).toBeNull();

      // put-if-absent and put-if-match (compare-and-swap): a failed condition writes nothing.
      await expect(blobs.put('dir/a.bin', bytes('other'), { ifNoneMatch: '*' })).rejects.toMatchObject({
        code: 'PRECONDITION_FAILED',
      });
      await expect(blobs.put('dir/a.bin', bytes('other'), { ifMatch: md5(bytes('nope')) })).rejects.toMatchObject({
        code: 'PRECONDITION_FAILED',
      });
      expect((await t.probes.row('pulumi_state', 'dir/a.bin'))!.md5).toBe(md5(body));
      await blobs.put('dir/a.bin', bytes('v2'), { ifMatch: md5(body) });
      expect((await t.probes.row('pulumi_state', 'dir/a.bin'))!.md5).toBe(md5(bytes('v2')));
      await blobs.put('dir/new', bytes('n'), { ifNoneMatch: '*' });

      // Copy inside the database; delete; a missing key is NOT_FOUND.
      expect(await blobs.copy('dir/a.bin', 'dir/b.bin')).toMatchObject({ etag: md5(bytes('v2')) });
      expect((await t.probes.row('pulumi_state', 'dir/b.bin'))!.side).toMatchObject({ md5: md5(bytes('v2')) });
      expect(await blobs.copy('nope', 'dir/c')).toBeNull();
      expect(await blobs.delete('dir/b.bin')).toBe(true);
      await expect(blobs.deleteExisting('dir/b.bin')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect(await t.probes.row('pulumi_state', 'dir/b.bin')).toBeNull();
      const side = await t.admin.query(
        "SELECT count(*)::int AS n FROM public.pulumi_state_objects WHERE key = 'dir/b.bin'",
      );
      expect(side.rows[0].n).toBe(0);
    });

    test('list: UTF-8 byte order, delimiter roll-up, pagination, `_` and `%` literal in prefixes', async (t) => {
      const blobs = t.adapter.blobs;
      const keys = ['l/a_b/1', 'l/axb/1', 'l/a%b', 'l/aXb', 'l/Z', 'l/é', 'l/e', 'l/a_b/2', 'l/~'];
      for (const k of keys) await blobs.put(k, bytes(k));
      const byteOrder = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      expect((await blobs.listAll('l/')).map((o) => o.key)).toEqual(byteOrder);
      expect((await blobs.listAll('l/a_')).map((o) => o.key)).toEqual(['l/a_b/1', 'l/a_b/2']);
      expect((await blobs.listAll('l/a%')).map((o) => o.key)).toEqual(['l/a%b']);
      const top = await blobs.list({ prefix: 'l/', delimiter: '/', maxKeys: 1000 });
      expect(top.commonPrefixes).toEqual(['l/a_b/', 'l/axb/']);
      expect(top.objects.map((o) => o.key)).toEqual(byteOrder.filter((k) => k.split('/').length === 2));
      const paged: string[] = [];
      let startAfter: string | undefined;
      do {
        const page = await blobs.list({ prefix: 'l/', delimiter: '/', startAfter, maxKeys: 2 });
        paged.push(...page.objects.map((o) => o.key), ...page.commonPrefixes);
        startAfter = page.isTruncated ? page.nextStartAfter : undefined;
      } while (startAfter);
      expect(paged.sort()).toEqual([...top.objects.map((o) => o.key), ...top.commonPrefixes].sort());
    });

    test('native layout: Pulumi\'s own table, {"data": base64} rows under the database-name prefix', async (t) => {
      const store = storeOn(t, { table: 'native_state', layout: 'native' });
      const body = Buffer.from([0, 255, 1, 254, 128]);
      await store.blobs.put('.pulumi/meta.yaml', bytes('version: 1\n'));
      await store.blobs.put('x/bin', body);
      const key = `${t.lane.database}/x/bin`;
      const row = await t.probes.row('native_state', key);
      expect(JSON.parse(row!.native!)).toEqual({ data: body.toString('base64') });
      expect(row!.side).toMatchObject({ md5: md5(body), size: 5 });
      expect(Buffer.from((await store.blobs.get('x/bin'))!.body).equals(body)).toBe(true);
      await store.createStack('nat', 'dev');
      await store.importDeployment('nat', 'dev', deployment('nat', 'dev', 3));
      expect((await store.listStacks()).map((s) => [s.name, s.resourceCount])).toEqual([['organization/nat/dev', 3]]);
      expect((await store.exportDeployment('nat', 'dev')).deployment).toMatchObject({ resources: expect.any(Array) });
      // A row Pulumi's driver wrote behind our back (no side row) is still served with the right ETag.
      await t.admin.query('INSERT INTO public.native_state (key, data) VALUES ($1, $2)', [
        `${t.lane.database}/x/foreign`,
        JSON.stringify({ data: Buffer.from('foreign').toString('base64') }),
      ]);
      expect(await store.blobs.head('x/foreign')).toMatchObject({ etag: md5(bytes('foreign')), size: 7 });
    });

    test('stack operations: create/import/export/list/history/backups/tags/rename/remove/prune, index kept right', async (t) => {
      const state = t.adapter;
      await state.createStack('app', 'dev', { tags: { team: 'a' } });
      await expect(state.createStack('app', 'dev')).rejects.toMatchObject({ code: 'CONFLICT' });
      await state.importDeployment('app', 'dev', deployment('app', 'dev', 4));
      await expect(state.importDeployment('app', 'dev', '{not json')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      await expect(state.importDeployment('app', 'dev', deployment('app', 'other', 2))).rejects.toMatchObject({
        code: 'CONFLICT',
      });
      expect((await state.exportDeployment('app', 'dev')).deployment).toEqual(deployment('app', 'dev', 4).deployment);
      expect(await state.listStacks()).toMatchObject([
        { name: 'organization/app/dev', resourceCount: 4, lastUpdate: '2026-02-03T04:05:06Z' },
      ]);
      // The index row is the one written with the checkpoint (same updated_at), so no checkpoint is re-read.
      expect(await t.probes.stackIndex('pulumi_state')).toEqual([
        { key: '.pulumi/stacks/app/dev.json', updated: true, size: expect.any(Number), count: 4 },
      ]);
      expect(await state.getTags('app', 'dev')).toEqual({ team: 'a' });
      await state.setTags('app', 'dev', { team: 'b' });
      expect(await state.getTags('app', 'dev')).toEqual({ team: 'b' });

      for (let i = 0; i < 3; i++) {
        await state.importDeployment('app', 'dev', deployment('app', 'dev', 5 + i));
        await state.recordUpdate(
          'app',
          'dev',
          { kind: 'update', startTime: i, result: 'succeeded' },
          BigInt(1e18) + BigInt(i),
        );
      }
      expect((await state.history('app', 'dev')).map((h) => h.info.startTime)).toEqual([2, 1, 0]);
      expect(await state.listBackups('app', 'dev')).toHaveLength(3);
      const keys = await t.probes.keys('pulumi_state');
      expect(keys).toContain('.pulumi/stacks/app/dev.json.bak');
      const pruned = await state.prune({ keepHistory: 1, keepBackups: 1, removeBak: true });
      expect(pruned.deleted).toHaveLength(2 * 2 + 2 + 1);
      expect((await state.history('app', 'dev')).map((h) => h.info.startTime)).toEqual([2]);
      expect(await t.probes.keys('pulumi_state')).not.toContain('.pulumi/stacks/app/dev.json.bak');

      await state.renameStack('app', 'dev', 'app', 'prod');
      const exported = (await state.exportDeployment('app', 'prod')).deployment as { resources: { urn: string }[] };
      expect(exported.resources.every((r) => r.urn.startsWith('urn:pulumi:prod::app::'))).toBe(true);
      expect((await state.history('app', 'prod')).map((h) => h.info.startTime)).toEqual([2]);
      expect((await state.listStacks()).map((s) => s.name)).toEqual(['organization/app/prod']);
      await expect(state.removeStack('app', 'prod')).rejects.toMatchObject({ code: 'CONFLICT' });
      await state.removeStack('app', 'prod', { force: true, removeBackups: true });
      expect(await state.listStacks()).toEqual([]);
      expect((await t.probes.keys('pulumi_state')).filter((k) => k.includes('/prod'))).toEqual([]);
      expect(await t.probes.stackIndex('pulumi_state')).toEqual([]);
    });

    test('locks: atomic, CLI lock files honoured, holders inspected, cancel breaks them', async (t) => {
      const state = t.adapter;
      const lock = await state.acquireLock('lk', 's');
      const other = await t.create();
      await expect(other.acquireLock('lk', 's')).rejects.toMatchObject({ code: 'CONFLICT' });
      expect(await other.lockHolders('lk', 's')).toMatchObject([{ id: lock.id, pid: process.pid }]);
      await lock.release();
      // A lock file the stock CLI wrote (through the S3 gateway) blocks us too.
      await state.blobs.put(
        '.pulumi/locks/organization/lk/s/cli-lock.json',
        bytes('{"pid":1,"username":"ci","hostname":"runner","timestamp":"2026-01-01T00:00:00Z"}'),
      );
      await expect(state.acquireLock('lk', 's')).rejects.toMatchObject({ code: 'CONFLICT' });
      expect(await state.listLocks()).toMatchObject([{ project: 'lk', stack: 's', holders: [{ username: 'ci' }] }]);
      expect(await state.cancel('lk', 's')).toBe(1);
      expect((await t.probes.keys('pulumi_state')).filter((k) => k.startsWith('.pulumi/locks/'))).toEqual([]);
      await (await state.acquireLock('lk', 's')).release();
    });

    test('custom table and schema names: rows land only in the configured tables', async (t) => {
      const store = storeOn(t, { table: 'team_x', schema: 'infra' });
      await store.createStack('c', 'dev');
      expect(await t.probes.keys('team_x', 'infra')).toEqual(['.pulumi/meta.yaml', '.pulumi/stacks/c/dev.json']);
      expect(await t.probes.keys('pulumi_state')).not.toContain('.pulumi/stacks/c/dev.json');
      expect((await store.listStacks()).map((s) => s.name)).toEqual(['organization/c/dev']);
      expect(await t.probes.journal()).toEqual(
        expect.arrayContaining(['pulumi:infra.team_x 0000_init', 'pulumi:infra.team_x 0001_side_tables']),
      );
    });

    test('hostile keys and table names are rejected cleanly, nothing is written, the store keeps serving', async (t) => {
      const blobs = t.adapter.blobs;
      const before = await t.probes.keys('pulumi_state');
      const hostile = [
        '../etc/passwd',
        'a/../../b',
        'a//b',
        '/abs',
        'x\u0000y',
        'x\ny',
        'a\\b',
        'k'.repeat(1025),
        'bad\uD800',
      ];
      for (const key of hostile) {
        await expect(blobs.put(key, bytes('x')), JSON.stringify(key).slice(0, 40)).rejects.toMatchObject({
          code: 'INVALID_INPUT',
        });
        await expect(blobs.get(key)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      }
      await expect(blobs.copy('ok', '../x')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      await expect(blobs.list({ prefix: '../', maxKeys: 10 })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      await expect(t.adapter.createStack('../p', 's')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      await expect(t.adapter.acquireLock('p', 's/../../x')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      expect(await t.probes.keys('pulumi_state')).toEqual(before);
      for (const table of ['x; DROP TABLE pulumi_state', 'a"b', '1abc', 'tbl-name', 'a'.repeat(49), 'pg_%']) {
        expect(() => new PulumiBlobStore({ connection: urlWith(t.lane, { table }) }), table).toThrow(
          expect.objectContaining({ code: 'INVALID_IDENTIFIER' }),
        );
      }
      expect(() => new PulumiBlobStore({ connection: urlWith(t.lane, { schema: 'public; --' }) })).toThrow(
        expect.objectContaining({ code: 'INVALID_IDENTIFIER' }),
      );
      // Still serving, and `_`/`%`/a 1024-byte key are ordinary keys.
      const long = `k/${'y'.repeat(1022)}`;
      for (const key of ['p_%/x', long]) {
        await blobs.put(key, bytes(key));
        expect((await t.probes.row('pulumi_state', key))!.md5).toBe(md5(bytes(key)));
      }
    });

    test(
      '2 OS processes race for one stack lock: exactly one wins each round',
      async (t) => {
        await lockRace(t, 2, 8, 'race2');
      },
      { lanes: ['direct', 'pgbouncer', 'least-privilege'] },
    );

    test(
      '16 OS processes race for one stack lock: exactly one wins each round',
      async (t) => {
        await lockRace(t, 16, 3, 'race16');
      },
      { lanes: ['direct', 'pgbouncer'], timeout: 240_000 },
    );

    test(
      'a writer SIGKILLed during a 50 MB checkpoint save leaves exactly the old or the new checkpoint',
      async (t) => {
        const writer = t.spawn(path.join(children, 'checkpoint-writer.mjs'), { args: ['0', 'killed', '50'] });
        const first = (await writer.waitForLine(/^saved 1 /, 90_000)).split(' ');
        const second = (await writer.waitForLine(/^saving 2 /, 90_000)).split(' ');
        // Kill once the save transaction has written something (it has a transaction id), so the kill lands inside it.
        for (let i = 0; ; i++) {
          const { rows } = await t.admin.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL`,
          );
          if (rows[0].n > 0) break;
          if (i > 3000) throw new Error('the save transaction never started writing');
          await new Promise((r) => setTimeout(r, 5));
        }
        writer.kill('SIGKILL');
        await writer.done;
        // The server notices the dead client; wait until its transaction is gone, then check what is stored.
        for (;;) {
          const { rows } = await t.admin.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL`,
          );
          if (rows[0].n === 0) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        const row = await t.probes.row('killed', '.pulumi/stacks/p/s.json');
        expect([first[2], second[2]]).toContain(row!.md5);
        expect(row!.side).toMatchObject({ md5: row!.md5, size: row!.size, updated_at: row!.updated_at });
        expect(await t.probes.stackIndex('killed')).toEqual([
          { key: '.pulumi/stacks/p/s.json', updated: true, size: row!.size, count: expect.any(Number) },
        ]);
        const store = storeOn(t, { table: 'killed' });
        const read = await store.readCheckpointBytes('p', 's');
        expect(md5(read!.bytes)).toBe(row!.md5);
      },
      { lanes: ['direct', 'pgbouncer'], timeout: 240_000 },
    );
  },
});
