// @pgstate/meltano on every lane, plus stock Meltano 4.4 (from PyPI, in a venv outside the repo) in two peer lanes:
// through the S3 gateway (no Python plugin), and on its own system database next to pgstate's systemdb layout.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createMeltanoBucketHandler, type MeltanoLayout, MeltanoStateStore } from '@pgstate/meltano';
import { createS3Gateway } from '@pgstate/s3-gateway';
import { migrate } from '@pgstate/schema';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type LaneTarget } from '../../src/kit.js';

const run = promisify(execFile);
const VENV = path.join(
  process.env.PGSTATE_PEERS_DIR ?? path.join(os.homedir(), '.cache', 'pgstate-peers'),
  'meltano-venv',
);
const MELTANO = path.join(VENV, 'bin', 'meltano');
const needMeltano = () =>
  fs.existsSync(MELTANO) ? undefined : `meltano is not installed in ${VENV} (run scripts/peers/meltano.sh)`;
// The `meltano run` lane's extractor and loader, from PyPI (no Meltano Hub here): see scripts/peers/meltano-run-plugins.sh.
const PLUGINS = path.join(path.dirname(VENV), 'meltano-plugins');
const TAP = path.join(PLUGINS, 'tap-postgres', 'bin', 'tap-postgres');
const TARGET = path.join(PLUGINS, 'target-jsonl', 'bin', 'target-jsonl');
const needMeltanoRun = () =>
  needMeltano() ??
  (fs.existsSync(TAP) && fs.existsSync(TARGET)
    ? undefined
    : `tap-postgres / target-jsonl are not installed in ${PLUGINS} (run scripts/peers/meltano-run-plugins.sh)`);

const S = (bookmarks: Record<string, number>) => ({ singer_state: { bookmarks } });
const SEED_LAYOUTS: MeltanoLayout[] = ['pgstate', 'plugin', 'systemdb'];
const STORE_LANES = ['direct', 'pgbouncer', 'least-privilege', 'tls-verify-full', 'mtls'];

/** A throwaway Meltano project; `env` carries the state backend settings, `yaml` more of meltano.yml. */
function meltanoProject(env: Record<string, string>, yaml = '') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-meltano-'));
  fs.writeFileSync(
    path.join(dir, 'meltano.yml'),
    `default_environment: dev\nproject_id: pgstate-conformance\nenvironments:\n- name: dev\n${yaml}`,
  );
  const fullEnv = {
    ...process.env,
    MELTANO_SEND_ANONYMOUS_USAGE_STATS: 'false',
    MELTANO_DISABLE_TRACKING: 'true',
    MELTANO_CLI_LOG_LEVEL: 'warning',
    ...env,
  };
  return {
    dir,
    /** Runs `meltano state ...` asynchronously (the gateway lives in this process). */
    async state(...args: string[]): Promise<string> {
      const { stdout } = await run(MELTANO, ['state', ...args], { cwd: dir, env: fullEnv, timeout: 120_000 });
      return stdout.trim();
    },
    /** `meltano run ...`; `extra` adds environment (plugin settings as `<PLUGIN>_<SETTING>`). */
    async run(args: string[], extra: Record<string, string> = {}): Promise<void> {
      await run(MELTANO, ['run', ...args], { cwd: dir, env: { ...fullEnv, ...extra }, timeout: 300_000 });
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

function storeFor(lane: LaneTarget, layout: MeltanoLayout, schema?: string): MeltanoStateStore {
  return new MeltanoStateStore({ url: lane.url, ...lane.fields, layout, schema: schema ?? `mel_${layout}` });
}

defineConformance<MeltanoStateStore, { rows(table: string): Promise<Record<string, unknown>[]> }>({
  adapter: '@pgstate/meltano',
  lanes: [
    'direct',
    'pgbouncer',
    'least-privilege',
    'tls-verify-full',
    'mtls',
    { name: 'meltano-s3', via: 'direct', requires: needMeltano },
    { name: 'meltano-systemdb', via: 'direct', requires: needMeltano },
    { name: 'meltano-run', via: 'direct', requires: needMeltanoRun },
  ],
  async setup(admin: pg.Pool, lane: LaneTarget) {
    // As an administrator would: every layout migrated in its own schema (the systemdb lane lets Meltano create
    // its own system database tables instead).
    if (lane.lane === 'meltano-systemdb') return;
    for (const layout of SEED_LAYOUTS) {
      await admin.query(`CREATE SCHEMA IF NOT EXISTS mel_${layout}`);
      await migrate(admin, { adapter: 'meltano', layout, schema: `mel_${layout}` });
    }
  },
  create: (lane) => storeFor(lane, 'pgstate'),
  close: (store) => store.close(),
  probes: (admin) => ({
    rows: async (table) => (await admin.query(`SELECT * FROM ${table} ORDER BY state_id`)).rows,
  }),
  tests({ test }) {
    for (const layout of SEED_LAYOUTS) {
      test(
        `${layout}: set / merge / get / list / copy / move / clear / export / import`,
        async ({ lane, probes, onCleanup }) => {
          const store = storeFor(lane, layout);
          onCleanup(() => store.close());
          const table = layout === 'pgstate' ? `mel_${layout}.meltano_state` : `mel_${layout}.state`;
          await store.set('dev:tap_a-to-t', S({ a: 1 }));
          await store.merge('dev:tap_a-to-t', S({ b: 2 }));
          await store.set('dev:tapXa-to-t', S({ x: 1 }));
          expect((await store.get('dev:tap_a-to-t'))?.merged).toEqual(S({ a: 1, b: 2 }));
          // Matched as the host does: `_` is a LIKE wildcard, `\` escapes it.
          expect(await store.list('dev:tap_a*')).toEqual(['dev:tapXa-to-t', 'dev:tap_a-to-t']);
          expect(await store.list('dev:tap\\_a*')).toEqual(['dev:tap_a-to-t']);
          await store.copy('dev:tap_a-to-t', 'copy');
          await store.move('copy', 'moved');
          expect(await store.list()).toEqual(['dev:tapXa-to-t', 'dev:tap_a-to-t', 'moved']);
          const exported = await store.export();
          expect(await store.clear('moved')).toBe(true);
          expect(await store.clearAll()).toBe(2);
          expect(await store.import(JSON.stringify(exported))).toBe(3);
          const rows = await probes.rows(table);
          expect(rows.map((r) => r.state_id)).toEqual(['dev:tapXa-to-t', 'dev:tap_a-to-t', 'moved']);
          await expect(store.set('bad', '{"singer_state": ')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
          expect((await probes.rows(table)).length).toBe(3);
        },
        { lanes: STORE_LANES },
      );
    }

    test(
      'seed: 16 processes x 25 merges through this lane lose no update',
      async ({ lane, runProcesses, admin }) => {
        const script = path.join(import.meta.dirname, 'merge-worker.mjs');
        const results = await runProcesses(16, script, { args: (i) => [String(i), '25'] });
        for (const r of results) expect(r.code, r.stderr).toBe(0);
        const { rows } = await admin.query<{ partial_state: string }>(
          `SELECT partial_state FROM mel_pgstate.meltano_state WHERE state_id = 'dev:concurrent'`,
        );
        const bookmarks = JSON.parse(rows[0]?.partial_state ?? '{}').singer_state.bookmarks;
        expect(Object.keys(bookmarks)).toHaveLength(16 * 25);
        expect(lane.lane).toBeTruthy();
      },
      { lanes: ['direct', 'pgbouncer', 'least-privilege'], timeout: 300_000 },
    );

    for (const layout of ['plugin', 'systemdb'] as const) {
      test(
        `${layout}: acquireLock holds the upstream plugin's advisory key on its own connection (same TLS as the pool)`,
        async ({ lane, admin, onCleanup }) => {
          const store = storeFor(lane, layout);
          onCleanup(() => store.close());
          const id = 'dev:tap-github-to-target-postgres';
          const key = '2128584585411889108'; // the upstream plugin's key for this id
          const lock = await store.acquireLock(id, { timeoutSeconds: 5 });
          onCleanup(() => lock.release());
          // The holder is another backend than the admin's, connected the way the lane connects (TLS, client cert).
          const { rows } = await admin.query<{ ssl: boolean | null; usename: string }>(
            `SELECT s.ssl, a.usename FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             LEFT JOIN pg_stat_ssl s USING (pid)
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid::int8 = (($1::int8 >> 32) & 4294967295) AND l.objid::int8 = ($1::int8 & 4294967295)`,
            [key],
          );
          expect(rows).toEqual([
            { ssl: lane.lane !== 'direct' && lane.lane !== 'least-privilege', usename: lane.user },
          ]);
          // A Python writer (pg_try_advisory_lock on the same key) is refused while pgstate holds it.
          const tried = await admin.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::int8) AS ok', [key]);
          expect(tried.rows[0]?.ok).toBe(false);
          await store.merge(id, S({ under_lock: 1 }), { lock });
          // Another pgstate writer waits for it and gives up with LOCK_TIMEOUT.
          const other = new MeltanoStateStore({
            url: lane.url,
            ...lane.fields,
            layout,
            schema: `mel_${layout}`,
            lockWaitSeconds: 0.5,
          });
          onCleanup(() => other.close());
          await expect(other.merge(id, S({ other: 1 }))).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
          await lock.release();
          await other.merge(id, S({ other: 1 }));
          expect((await store.get(id))?.merged).toEqual(S({ under_lock: 1, other: 1 }));
        },
        { lanes: ['direct', 'least-privilege', 'tls-verify-full', 'mtls'] },
      );
    }

    test(
      'plugin: acquireLock reports that transaction pooling breaks session advisory locks',
      async ({ lane, onCleanup }) => {
        const store = storeFor(lane, 'plugin');
        onCleanup(() => store.close());
        await expect(store.acquireLock('dev:x')).rejects.toMatchObject({ code: 'BAD_SETTING' });
        // Writes still work: they lock with a transaction-scoped advisory lock.
        await store.merge('dev:x', S({ a: 1 }));
        expect((await store.get('dev:x'))?.merged).toEqual(S({ a: 1 }));
      },
      { lanes: ['pgbouncer'] },
    );

    test(
      'stock Meltano through the S3 gateway: state lands in meltano_state, locks are real rows',
      async ({ lane, admin, probes, onCleanup }) => {
        const store = storeFor(lane, 'pgstate');
        onCleanup(() => store.close());
        const gateway = await createS3Gateway({
          buckets: { meltano: createMeltanoBucketHandler({ store, prefix: 'state' }) },
          credentials: [{ accessKeyId: 'AKIDPGSTATEMELTANO', secretAccessKey: 'meltano-conformance-secret' }],
          uploads: { pool: admin },
          logger: false,
        });
        onCleanup(() => gateway.close());
        const project = meltanoProject({
          MELTANO_STATE_BACKEND_URI: 's3://meltano/state',
          MELTANO_STATE_BACKEND_S3_ENDPOINT_URL: gateway.url,
          MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID: 'AKIDPGSTATEMELTANO',
          MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY: 'meltano-conformance-secret',
          AWS_DEFAULT_REGION: 'us-east-1',
        });
        onCleanup(project.cleanup);
        const id = 'dev:tap-github-to-target-postgres';
        await project.state('set', '--force', id, JSON.stringify(S({ issues: 1 })));
        await project.state('merge', id, JSON.stringify(S({ pulls: 2 })));
        expect(await store.get(id)).toMatchObject({ completed: S({ issues: 1 }), partial: S({ pulls: 2 }) });
        expect(JSON.parse(await project.state('get', id))).toEqual(S({ issues: 1, pulls: 2 }));
        // What pgstate writes, Meltano reads.
        await store.merge(id, S({ commits: 3 }));
        expect(JSON.parse(await project.state('get', id))).toEqual(S({ issues: 1, pulls: 2, commits: 3 }));
        await project.state('copy', '--force', id, 'dev:copy');
        await project.state('move', '--force', 'dev:copy', 'dev:moved');
        expect((await project.state('list')).split('\n').sort()).toEqual(['dev:moved', id]);
        expect(await store.list()).toEqual(['dev:moved', id]);
        expect((await store.get('dev:moved'))?.completed).toEqual(S({ issues: 1, pulls: 2, commits: 3 }));
        await project.state('clear', '--force', 'dev:moved');
        expect(await store.get('dev:moved')).toBeNull();

        // A concurrent pair of merges: with real locks (atomic lock-file PUT) neither update is lost.
        await Promise.all([
          project.state('merge', id, JSON.stringify(S({ left: 1 }))),
          project.state('merge', id, JSON.stringify(S({ right: 1 }))),
        ]);
        expect((await store.get(id))?.merged).toEqual(S({ issues: 1, pulls: 2, commits: 3, left: 1, right: 1 }));
        // Every lock file was released: no lock rows left.
        expect(await probes.rows('mel_pgstate.meltano_state_locks')).toEqual([]);
      },
      { lanes: ['meltano-s3'], timeout: 600_000 },
    );

    test(
      'a real `meltano run` (tap-postgres -> target-jsonl, from PyPI) through the S3 gateway: the bookmark lands in meltano_state, and the next run resumes from what pgstate wrote',
      async ({ lane, admin, probes, onCleanup }) => {
        await admin.query(
          'CREATE TABLE public.events (id int PRIMARY KEY, updated_at timestamptz NOT NULL, name text)',
        );
        await admin.query(
          `INSERT INTO public.events SELECT g, '2026-01-01 00:00+00'::timestamptz + g * interval '1 hour', 'e' || g
           FROM generate_series(1, 3) g`,
        );
        const store = storeFor(lane, 'pgstate');
        onCleanup(() => store.close());
        const gateway = await createS3Gateway({
          buckets: { meltano: createMeltanoBucketHandler({ store, prefix: 'state' }) },
          credentials: [{ accessKeyId: 'AKIDPGSTATEMELTANO', secretAccessKey: 'meltano-conformance-secret' }],
          uploads: { pool: admin },
          logger: false,
        });
        onCleanup(() => gateway.close());
        const f = lane.fields;
        const source = `postgresql://${encodeURIComponent(String(f.user))}:${encodeURIComponent(String(f.password ?? 'unused'))}@${f.host}:${f.port}/${f.database}?sslmode=disable`;
        // Custom plugin definitions (no Meltano Hub): the executables installed from PyPI.
        const project = meltanoProject(
          {
            MELTANO_STATE_BACKEND_URI: 's3://meltano/state',
            MELTANO_STATE_BACKEND_S3_ENDPOINT_URL: gateway.url,
            MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID: 'AKIDPGSTATEMELTANO',
            MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY: 'meltano-conformance-secret',
            AWS_DEFAULT_REGION: 'us-east-1',
            TAP_POSTGRES_SQLALCHEMY_URL: source,
          },
          `plugins:
  extractors:
  - name: tap-postgres
    namespace: tap_postgres
    executable: ${TAP}
    capabilities: [catalog, discover, state, about]
    settings:
    - name: sqlalchemy_url
      kind: password
    config:
      filter_schemas: [public]
    select: [public-events.*]
    metadata:
      public-events:
        replication-method: INCREMENTAL
        replication-key: updated_at
  loaders:
  - name: target-jsonl
    namespace: target_jsonl
    executable: ${TARGET}
    settings:
    - name: destination_path
    config:
      do_timestamp_file: false
`,
        );
        onCleanup(project.cleanup);
        const id = 'dev:tap-postgres-to-target-jsonl';
        const records = (dir: string) =>
          fs
            .readFileSync(path.join(dir, 'public-events.jsonl'), 'utf8')
            .trim()
            .split('\n')
            .map((l) => (JSON.parse(l) as { id: number }).id);
        const bookmark = (value: string) => ({
          singer_state: {
            bookmarks: { 'public-events': { replication_key: 'updated_at', replication_key_value: value } },
          },
        });

        const first = path.join(project.dir, 'out-1');
        fs.mkdirSync(first);
        await project.run(['tap-postgres', 'target-jsonl'], { TARGET_JSONL_DESTINATION_PATH: first });
        expect(records(first)).toEqual([1, 2, 3]);
        expect(await store.get(id)).toMatchObject({
          completed: bookmark('2026-01-01T03:00:00.000000+00:00'),
          partial: {},
        });
        expect((await probes.rows('mel_pgstate.meltano_state')).map((r) => r.state_id)).toEqual([id]);
        expect(await probes.rows('mel_pgstate.meltano_state_locks')).toEqual([]);

        // pgstate rewinds the bookmark; the next run starts from it (Singer SDK: replication key >= bookmark).
        await store.set(id, bookmark('2026-01-01T02:00:00+00:00'));
        await admin.query(`INSERT INTO public.events VALUES (4, '2026-01-01 04:00+00', 'e4')`);
        const second = path.join(project.dir, 'out-2');
        fs.mkdirSync(second);
        await project.run(['tap-postgres', 'target-jsonl'], { TARGET_JSONL_DESTINATION_PATH: second });
        expect(records(second)).toEqual([2, 3, 4]);
        expect((await store.get(id))?.merged).toEqual(bookmark('2026-01-01T04:00:00.000000+00:00'));
        expect(await probes.rows('mel_pgstate.meltano_state_locks')).toEqual([]);
      },
      { lanes: ['meltano-run'], timeout: 600_000 },
    );

    test(
      "Meltano's systemdb: what meltano writes, the systemdb layout reads, and the other way round",
      async ({ lane, onCleanup }) => {
        const uri = new URL(lane.url);
        uri.protocol = 'postgresql+psycopg:';
        uri.searchParams.delete('sslmode');
        const project = meltanoProject({ MELTANO_DATABASE_URI: uri.toString() });
        onCleanup(project.cleanup);
        const id = 'dev:tap-a-to-target-b';
        await project.state('set', '--force', id, JSON.stringify(S({ a: 1 })));
        await project.state('merge', id, JSON.stringify(S({ b: 2 })));
        const store = storeFor(lane, 'systemdb', 'public');
        onCleanup(() => store.close());
        expect(await store.get(id)).toMatchObject({ completed: S({ a: 1 }), partial: S({ b: 2 }) });
        await store.merge(id, S({ c: 3 }));
        await store.set('dev:from-pgstate', '{"singer_state": {"bookmarks": {"big": 12345678901234567890}}}');
        expect(await project.state('get', id)).toBe('{"singer_state":{"bookmarks":{"a":1,"b":2,"c":3}}}');
        expect(await project.state('get', 'dev:from-pgstate')).toBe(
          '{"singer_state":{"bookmarks":{"big":12345678901234567890}}}',
        );
        expect((await project.state('list')).split('\n').sort()).toEqual(['dev:from-pgstate', id]);

        // `--pattern` selects the same ids as stock Meltano on its systemdb (`*` -> %, then SQL LIKE: `_` and `%`
        // are wildcards there, `?` is literal).
        for (const extra of ['sys:one', 'sys:?ne', 'sys_x', 'sysAx', 'sys%lit', 'sysx', 'sys?x'])
          await store.set(extra, JSON.stringify(S({ n: 1 })));
        for (const pattern of ['sys:?ne', 'sys_*', 'sys%', 'sys?x', 'dev:*', '*x']) {
          const stock = (await project.state('list', '--pattern', pattern)).split('\n').filter(Boolean).sort();
          expect((await store.list(pattern)).sort(), pattern).toEqual(stock);
        }
      },
      { lanes: ['meltano-systemdb'], timeout: 600_000 },
    );
  },
});
