// `pgstate meltano state ...` run as the BUILT binary, as a user would: Meltano's arguments and output, --json
// shapes, exit codes, and bad input rejected with nothing written (checked with SQL, not through the CLI).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, jsonData, runCli } from './helpers.js';

const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used', NO_COLOR: '1' });
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let url: string;
let admin: pg.Client;
let tmp: string;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_meltano');
  url = db.url;
  admin = new pg.Client({ connectionString: url });
  await admin.connect();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-cli-meltano-'));
});
afterAll(async () => {
  fs.rmSync(tmp, { recursive: true, force: true });
  await admin?.end();
  await db?.drop();
});

/** `pgstate --url ... meltano --schema mel state <args>` (pgstate layout unless the args say otherwise). */
const state = (args: string[], store: string[] = ['--schema', 'mel']) =>
  runCli(['--url', url, 'meltano', ...store, 'state', ...args], env);
const row = async (id: string, table = 'mel.meltano_state') =>
  (
    await admin.query<{ completed_state: string | null; partial_state: string | null }>(
      `SELECT completed_state, partial_state FROM ${table} WHERE state_id = $1`,
      [id],
    )
  ).rows[0];
const ids = async (table = 'mel.meltano_state') =>
  (await admin.query<{ state_id: string }>(`SELECT state_id FROM ${table} ORDER BY state_id COLLATE "C"`)).rows.map(
    (r) => r.state_id,
  );

const ID = 'dev:tap-github-to-target-postgres';

describe('pgstate meltano state', () => {
  it('before the tables exist: exit 5 with the migrate command to run; then migrate creates them', async () => {
    const missing = await state(['list']);
    expect(missing.code).toBe(5);
    expect(missing.stderr).toContain('error [MIGRATIONS_PENDING]');
    expect(missing.stderr).toContain('pgstate migrate --adapter meltano --schema mel');
    const asJson = await state(['list', '--json']);
    expect(asJson.code).toBe(5);
    expect(asJson.json()).toMatchObject({ ok: false, error: { code: 'MIGRATIONS_PENDING' } });

    for (const [layout, schema] of [
      ['seed', 'mel'],
      ['plugin', 'plug'],
    ]) {
      const migrated = await runCli(
        ['--url', url, 'migrate', '--adapter', 'meltano', '--layout', layout!, '--schema', schema!],
        env,
      );
      expect(migrated.code, migrated.stderr).toBe(0);
    }
    const empty = await state(['list']);
    expect(empty).toMatchObject({ code: 0, stdout: '' });
    expect(empty.stderr).toContain('No state IDs found.');
  });

  it('set / merge / get print what `meltano state` prints, and the rows are what Meltano writes', async () => {
    const set = await state([
      'set',
      '--force',
      ID,
      '{"singer_state": {"bookmarks": {"issues": {"since": "2024-01-01"}}}}',
    ]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toBe('');
    expect(set.stderr).toMatch(new RegExp(`State for ${ID} was successfully set at \\d{4}-\\d\\d-\\d\\d `));
    expect(await row(ID)).toEqual({
      completed_state: '{"singer_state": {"bookmarks": {"issues": {"since": "2024-01-01"}}}}',
      partial_state: null,
    });

    const merge = await state(['merge', ID, '{"singer_state": {"bookmarks": {"pulls": {"n": 12345678901234567890}}}}']);
    expect(merge.code, merge.stderr).toBe(0);
    expect(merge.stderr).toContain(`State for ${ID} was successfully merged`);
    expect((await row(ID))?.partial_state).toBe(
      '{"singer_state": {"bookmarks": {"pulls": {"n": 12345678901234567890}}}}',
    );

    const get = await state(['get', ID]);
    expect(get.code).toBe(0);
    // Compact, like `meltano state get` (json.dumps(..., separators=(",", ":"))); big integers exact.
    expect(get.stdout).toBe(
      '{"singer_state":{"bookmarks":{"issues":{"since":"2024-01-01"},"pulls":{"n":12345678901234567890}}}}\n',
    );
    const pretty = await state(['get', ID, '--format', 'pretty']);
    expect(pretty.stdout).toContain('\n  "singer_state": {\n');

    const asJson = await state(['get', ID, '--json']);
    expect(asJson.code).toBe(0);
    expect(asJson.stdout).toContain('"n": 12345678901234567890');
    const doc = jsonData(['meltano', 'state', 'get', '--json'], asJson.stdout.replaceAll('12345678901234567890', '1'));
    expect(doc).toEqual({
      stateId: ID,
      exists: true,
      state: { singer_state: { bookmarks: { issues: { since: '2024-01-01' }, pulls: { n: 1 } } } },
      completed: { singer_state: { bookmarks: { issues: { since: '2024-01-01' } } } },
      partial: { singer_state: { bookmarks: { pulls: { n: 1 } } } },
      updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    // No state: `{}`, as Meltano prints.
    expect(await state(['get', 'dev:none'])).toMatchObject({ code: 0, stdout: '{}\n' });
    expect((await state(['get', 'dev:none', '--json'])).json()).toMatchObject({ exists: false, state: {} });
  });

  it('bad input exits 2 with a precise error and writes nothing', async () => {
    const before = await row(ID);
    const cases: [string[], RegExp][] = [
      [['set', '--force', ID, '{"singer_state": '], /error \[INVALID_INPUT\]: .*not valid JSON/],
      [['set', '--force', ID, '{"bookmarks": {}}'], /singer_state not found/],
      [['set', '--force', ID, '[1, 2]'], /must be a JSON object/],
      [['merge', ID, '{"singer_state": {"a": 1}} trailing'], /INVALID_INPUT/],
      [['set', '--force', 'x'.repeat(901), '{"singer_state": {}}'], /at most 900/],
      [['set', ID, '{"singer_state": {}}'], /Refusing without confirmation[\s\S]*fix: Pass --force/],
      [['set', '--force', ID], /Must provide exactly one of: --input-file,STATE/],
      [['set', '--force', ID, '{}', '--input-file', '/dev/null'], /Must provide exactly one of/],
      [['merge', ID], /Must provide exactly one of: --input-file,STATE,--from-state-id/],
      [['clear', '--force'], /A state ID or the --all flag must be provided, but not both/],
      [['clear', '--force', '--all', ID], /but not both/],
      [['get', ID, '--format', 'yaml'], /error \[USAGE\]/],
      [['list', '--layout', 'sqlite'], /Unknown Meltano layout/],
    ];
    for (const [args, message] of cases) {
      const result = await state(args);
      expect(result.code, `${args.join(' ')}\n${result.stderr}`).toBe(2);
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.stdout).toBe('');
    }
    const json = await state(['set', '--force', ID, '{"singer_state": ', '--json']);
    expect(json.code).toBe(2);
    expect(json.json()).toEqual({
      ok: false,
      error: { code: 'INVALID_INPUT', message: expect.stringContaining('JSON'), fix: expect.any(String) },
    });
    // The seed layout has fixed table names.
    const table = await state(['list'], ['--schema', 'mel', '--table', 'x']);
    expect(table.code).toBe(2);
    expect(table.stderr).toContain('BAD_SETTING');
    expect(await row(ID)).toEqual(before);
    expect(await ids()).toEqual([ID]);

    // --no-validate lets a state without singer_state through (with a warning), as Meltano's flag does.
    const loose = await state(['set', '--force', '--no-validate', 'dev:loose', '{"bookmarks": {}}']);
    expect(loose.code, loose.stderr).toBe(0);
    expect(loose.stderr).toContain('Skipping state validation');
    expect((await row('dev:loose'))?.completed_state).toBe('{"bookmarks": {}}');
  });

  it('--input-file, merge --from-state-id, list --pattern (matched like the plugin: _ is a LIKE wildcard), copy, move, clear', async () => {
    const file = path.join(tmp, 'state.json');
    fs.writeFileSync(file, '{"singer_state": {"bookmarks": {"a": 1}}}');
    expect((await state(['set', '--force', 'dev:tap_a-to-t', '--input-file', file])).code).toBe(0);
    fs.writeFileSync(file, '{"singer_state": {"bookmarks": {"b": [2]}}}');
    expect((await state(['merge', 'dev:tap_a-to-t', '--input-file', file])).code).toBe(0);
    expect((await state(['set', '--force', 'dev:tapXa-to-t', '{"singer_state": {"bookmarks": {"x": 1}}}'])).code).toBe(
      0,
    );
    const from = await state(['merge', 'dev:tapXa-to-t', '--from-state-id', 'dev:tap_a-to-t', '--json']);
    expect(from.json()).toEqual({ action: 'merge', stateId: 'dev:tapXa-to-t', from: 'dev:tap_a-to-t' });
    expect((await state(['get', 'dev:tapXa-to-t'])).stdout).toBe(
      '{"singer_state":{"bookmarks":{"x":1,"a":1,"b":[2]}}}\n',
    );

    const all = await state(['list']);
    expect(all.stdout).toBe(`${['dev:loose', ID, 'dev:tapXa-to-t', 'dev:tap_a-to-t'].join('\n')}\n`);
    expect((await state(['list', '--pattern', 'dev:tap_a*', '--json'])).json()).toEqual({
      stateIds: ['dev:tapXa-to-t', 'dev:tap_a-to-t'],
    });
    expect((await state(['list', '--pattern', 'dev:tap\\_a*', '--json'])).json()).toEqual({
      stateIds: ['dev:tap_a-to-t'],
    });
    expect((await state(['list', '--pattern', 'dev:tap?a-to-?', '--json'])).json()).toEqual({
      stateIds: ['dev:tapXa-to-t', 'dev:tap_a-to-t'],
    });

    const copy = await state(['copy', '--force', 'dev:tap_a-to-t', 'prod:tap_a-to-t', '--json']);
    expect(copy.json()).toEqual({ action: 'copy', from: 'dev:tap_a-to-t', to: 'prod:tap_a-to-t' });
    expect(await row('prod:tap_a-to-t')).toEqual({
      completed_state: '{"singer_state": {"bookmarks": {"a": 1, "b": [2]}}}',
      partial_state: null,
    });
    const move = await state(['move', '--force', 'prod:tap_a-to-t', 'prod:renamed']);
    expect(move.code).toBe(0);
    expect(move.stderr).toContain('State for prod:tap_a-to-t was successfully moved to prod:renamed');
    expect(await row('prod:tap_a-to-t')).toBeUndefined();
    expect((await row('prod:renamed'))?.completed_state).toBe('{"singer_state": {"bookmarks": {"a": 1, "b": [2]}}}');

    expect((await state(['clear', '--force', 'prod:renamed', '--json'])).json()).toEqual({
      action: 'clear',
      stateId: 'prod:renamed',
      cleared: true,
    });
    expect((await state(['clear', '--force', 'prod:renamed', '--json'])).json()).toMatchObject({ cleared: false });
    expect(await ids()).toEqual(['dev:loose', ID, 'dev:tapXa-to-t', 'dev:tap_a-to-t']);
  });

  it('export prints Meltano’s export format; import restores it (into another layout); bad import writes nothing', async () => {
    const exported = await state(['export']);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout.endsWith('}\n')).toBe(true);
    expect(exported.stdout).toContain(
      `"${ID}":{"completed":{"singer_state":{"bookmarks":{"issues":{"since":"2024-01-01"}}}},"partial":{"singer_state":{"bookmarks":{"pulls":{"n":12345678901234567890}}}}}`,
    );
    const parsed = JSON.parse(exported.stdout) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['dev:loose', ID, 'dev:tapXa-to-t', 'dev:tap_a-to-t']);
    // --json: the same document as the envelope's data (bigints exact, so compare the text).
    const enveloped = await state(['export', '--json']);
    expect(enveloped.code, enveloped.stderr).toBe(0);
    expect(enveloped.stdout).toBe(`{"ok":true,"data":${exported.stdout.trimEnd()}}\n`);
    expect(jsonData(['meltano', 'state', 'export', '--json'], enveloped.stdout)).toEqual(parsed);
    expect(parsed['dev:loose']).toEqual({ completed: { bookmarks: {} }, partial: {} });

    const file = path.join(tmp, 'export.json');
    const toFile = await state(['export', '--pattern', 'dev:tap?a*', '--file', file, '--json']);
    expect(toFile.json()).toEqual({ action: 'export', exported: 2, file });
    expect(Object.keys(JSON.parse(fs.readFileSync(file, 'utf8')))).toEqual(['dev:tapXa-to-t', 'dev:tap_a-to-t']);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.partial-'))).toEqual([]);

    // Into the plugin layout, from a file and from stdin ("-").
    const plugin = ['--layout', 'plugin', '--schema', 'plug'];
    const all = path.join(tmp, 'all.json');
    fs.writeFileSync(all, exported.stdout);
    const imported = await state(['import', all, '--json'], plugin);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.json()).toEqual({ action: 'import', imported: 4 });
    expect(await ids('plug.state')).toEqual(['dev:loose', ID, 'dev:tapXa-to-t', 'dev:tap_a-to-t']);
    expect(await row(ID, 'plug.state')).toEqual(await row(ID));
    expect((await state(['export'], plugin)).stdout).toBe(exported.stdout);

    fs.writeFileSync(all, '{"dev:new": {"completed": {"singer_state": {}}}, "dev:bad": {"completed": [1]}}');
    const bad = await state(['import', all], plugin);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/error \[INVALID_INPUT\]: The "completed" part of import entry "dev:bad"/);
    fs.writeFileSync(all, '{"dev:new": {"completed": {}}');
    expect((await state(['import', all], plugin)).code).toBe(2);
    expect(await ids('plug.state')).toEqual(['dev:loose', ID, 'dev:tapXa-to-t', 'dev:tap_a-to-t']);
    expect((await state(['import', path.join(tmp, 'missing.json')], plugin)).code).toBe(1);

    const cleared = await state(['clear', '--all', '--force', '--json'], plugin);
    expect(cleared.json()).toEqual({ action: 'clear', all: true, cleared: 4 });
    expect(await ids('plug.state')).toEqual([]);
  });

  it('a state locked by another writer: exit 6 after --lock-wait, nothing written', async () => {
    await admin.query(
      `INSERT INTO mel.meltano_state_locks (state_id, lock_id, expires_at) VALUES ($1, 'other', now() + interval '1 hour')`,
      [ID],
    );
    const before = await row(ID);
    try {
      const locked = await state(
        ['merge', ID, '{"singer_state": {"c": 1}}'],
        ['--schema', 'mel', '--lock-wait', '0.5'],
      );
      expect(locked.code).toBe(6);
      expect(locked.stderr).toContain('error [LOCK_TIMEOUT]');
      expect(await row(ID)).toEqual(before);
    } finally {
      await admin.query('DELETE FROM mel.meltano_state_locks');
    }
  });

  it('migrate accepts the /database/schema URL form and SQLAlchemy’s postgresql+psycopg:// like meltano state does', async () => {
    const u = new URL(url);
    u.pathname = `${u.pathname}/mel_path`;
    const migrated = await runCli(['--url', u.toString(), 'migrate', '--adapter', 'meltano'], env);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect((await admin.query("SELECT to_regclass('mel_path.meltano_state') AS t")).rows[0].t).not.toBeNull();
    const psycopg = u.toString().replace(/^postgres(ql)?:/, 'postgresql+psycopg:');
    const set = await runCli(
      ['--url', psycopg, 'meltano', 'state', 'set', '--force', ID, '{"singer_state": {"p": 1}}'],
      env,
    );
    expect(set.code, set.stderr).toBe(0);
    expect((await admin.query('SELECT state_id FROM mel_path.meltano_state')).rows).toEqual([{ state_id: ID }]);
    const checked = await runCli(['--url', psycopg, 'migrate', '--adapter', 'meltano', '--check'], env);
    expect(checked.code, checked.stderr).toBe(0);
  });

  it('pointed at another layout’s table, a command names the --layout that fits; old layout names still work', async () => {
    const migrated = await runCli(
      ['--url', url, 'migrate', '--adapter', 'meltano', '--layout', 'systemdb', '--schema', 'mel_sys'],
      env,
    );
    expect(migrated.code, migrated.stderr).toBe(0);
    const wrong = await runCli(['--url', url, 'meltano', '--schema', 'mel_sys', 'state', 'list'], env);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('mel_sys.state has the Meltano plugin layout, not pgstate');
    expect(wrong.stderr).toContain('--layout plugin');
    const right = await runCli(
      ['--url', url, 'meltano', '--schema', 'mel_sys', '--layout', 'systemdb', 'state', 'list'],
      env,
    );
    expect(right.code, right.stderr).toBe(0);
    const q = new URL(url);
    q.searchParams.set('schema', 'mel_sys');
    q.searchParams.set('layout', 'systemdb');
    const viaUrl = await runCli(['--url', q.toString(), 'meltano', 'state', 'list'], env);
    expect(viaUrl.code, viaUrl.stderr).toBe(0);
    const alias = await runCli(['--url', url, 'meltano', '--schema', 'mel', '--layout', 'seed', 'state', 'list'], env);
    expect(alias.code, alias.stderr).toBe(0);
  });

  it('the seed plugin’s URL form postgres://…/database/schema selects the schema', async () => {
    const u = new URL(url);
    u.pathname = `${u.pathname}/mel`;
    const listed = await runCli(['--url', u.toString(), 'meltano', 'state', 'list', '--pattern', 'dev:tap?a*'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toBe('dev:tapXa-to-t\ndev:tap_a-to-t\n');
  });
});
