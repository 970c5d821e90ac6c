import fs from 'node:fs';
import { PgStateError } from '@pgstate/core';
import { dumpJson, type JsonValue, MeltanoStateStore, meltanoAdapter } from '@pgstate/meltano';
import { assertLayout } from '@pgstate/schema';
import { type Command, Option } from 'commander';
import { configure, migrateCommand } from '../adapters.js';
import type { CommandContext } from '../context.js';
import { UsageError } from '../errors.js';
import { withExamples } from '../help.js';

interface StoreOptions {
  layout?: string;
  schema?: string;
  table?: string;
  lockWait?: number;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`"${value}" is not a number of seconds (e.g. 30 or 0.5).`);
  return n;
}

/** Meltano's own log line timestamp: `%Y-%m-%d %H:%M:%S%z` in UTC. */
function now(): string {
  return `${new Date().toISOString().slice(0, 19).replace('T', ' ')}+0000`;
}

/** The state argument, `--input-file`, (merge: `--from-state-id`): exactly one, as `meltano state` insists. */
function exactlyOne(options: Record<string, unknown>): void {
  if (Object.values(options).filter((v) => v !== undefined && v !== '').length !== 1) {
    throw new UsageError(`Must provide exactly one of: ${Object.keys(options).join(',')}`);
  }
}

function readInput(file: string): string {
  try {
    return fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (error) {
    throw new PgStateError('NOT_FOUND', `Cannot read ${file}: ${(error as Error).message}`, {
      fix: 'Pass an existing JSON file (or - for stdin).',
      cause: error,
    });
  }
}

export function register(program: Command, context: CommandContext): void {
  const meltano = program
    .command('meltano')
    .description('Meltano state in PostgreSQL, in the pgstate, plugin or systemdb table layout')
    .option(
      '--layout <layout>',
      'pgstate (meltano_state + meltano_state_locks, default; formerly seed), plugin (the upstream plugin’s table) or systemdb',
    )
    .option('--schema <name>', 'schema (default: ?schema= or the /database/schema URL path, else public)')
    .option('--table <name>', 'plugin/systemdb table (default: ?table= of the URL, else state)')
    .option('--lock-wait <seconds>', 'how long a write waits for the state’s lock (default 30)', seconds);

  async function open(): Promise<MeltanoStateStore> {
    const o = meltano.opts<StoreOptions>();
    // Meltano's settings as every command reads them: flags, `?layout=&schema=&table=`, the seed plugin's
    // `postgres://user@host/db/schema` path, MELTANO_STATE_BACKEND_POSTGRES(QL)_* variables.
    const selected = configure(
      meltanoAdapter,
      { layout: o.layout, schema: o.schema, table: o.table },
      await context.settings(),
      context.env,
    );
    const pool = await context.pool();
    const store = new MeltanoStateStore({
      pool,
      layout: selected.settings.layout,
      ...(selected.settings.schema ? { schema: selected.settings.schema } : {}),
      ...(selected.settings.table ? { table: selected.settings.table } : {}),
      ...(o.lockWait === undefined ? {} : { lockWaitSeconds: o.lockWait }),
      env: context.env,
    });
    // Pointed at another layout's tables: say which layout fits, before anything reads or writes.
    await assertLayout(pool, selected.target);
    const { rows } = await pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [store.config.stateTable]);
    if (!rows[0]?.t) {
      throw new PgStateError(
        'MIGRATIONS_PENDING',
        `The Meltano ${store.layout} table ${store.config.stateTable} does not exist.`,
        {
          fix: `Run \`${migrateCommand({ definition: meltanoAdapter, settings: { ...selected.settings, schema: store.config.schema } })}\` (or point --layout/--schema/--table at your existing table).`,
        },
      );
    }
    return store;
  }

  /** A JSON document that may hold state values: bigints stay exact (JSON.stringify would throw on them). */
  function emitState(data: JsonValue): void {
    context.output.stdout.write(`${dumpJson({ ok: true, data }, { indent: 2 })}\n`);
  }

  /** Meltano asks before destructive commands unless --force; without a terminal to ask on, --force is required. */
  async function confirm(prompt: string, force: boolean | undefined): Promise<boolean> {
    if (force) return true;
    if (!process.stdin.isTTY) throw new UsageError(`${prompt} Refusing without confirmation.`, 'Pass --force.');
    const { createInterface } = await import('node:readline/promises');
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await rl.question(`${prompt} Continue? [y/N]: `);
    rl.close();
    if (/^y(es)?$/i.test(answer.trim())) return true;
    context.output.note('Aborted!');
    context.exitCode = 1;
    return false;
  }

  function done(document: Record<string, JsonValue>, message: string): void {
    if (context.output.json) context.output.emitJson(document);
    else context.output.note(message);
  }

  withExamples(meltano, [
    ['pgstate meltano state list', 'pgstate layout (meltano_state) in schema public'],
    ['pgstate --url postgres://app@db/warehouse/meltano meltano state list', 'the seed plugin’s /db/schema URL'],
    ['pgstate meltano --layout plugin --table state state list', 'the upstream plugin’s table'],
  ]);
  const state = withExamples(meltano.command('state').description('manage Singer state, like `meltano state`'), [
    ['pgstate meltano state get dev:tap-github-to-target-postgres', 'what the next run starts from'],
    ['pgstate meltano state export > states.json', 'back up every state'],
  ]);

  withExamples(
    state
      .command('list')
      .description(
        'list state ids (byte order), filtered by a glob matched as the layout’s host does: * and ? (systemdb: * only); _ and % are LIKE wildcards, \\ escapes',
      )
      .option('--pattern <glob>', 'filter state ids, e.g. "dev:tap-github-*"')
      .action(async (o: { pattern?: string }) => {
        const ids = await (await open()).list(o.pattern);
        if (context.output.json) return context.output.emitJson({ stateIds: ids });
        if (ids.length === 0) return context.output.note('No state IDs found.');
        for (const id of ids) context.output.line(id);
      }),
    [
      ['pgstate meltano state list', 'every state id'],
      ['pgstate meltano state list --pattern "dev:*" --json', 'one environment, as JSON'],
    ],
  );

  withExamples(
    state
      .command('get <state-id>')
      .description('print the state Meltano hands to the tap (partial merged over completed); {} when there is none')
      .addOption(new Option('--format <format>', 'json (compact, default) or pretty').choices(['json', 'pretty']))
      .action(async (id: string, o: { format?: string }) => {
        const view = await (await open()).get(id);
        const merged = view?.merged ?? {};
        if (context.output.json) {
          return emitState({
            stateId: id,
            exists: view !== null,
            state: merged,
            completed: view?.completed ?? {},
            partial: view?.partial ?? {},
            updatedAt: view?.updatedAt?.toISOString() ?? null,
          });
        }
        context.output.value(
          o.format === 'pretty' ? dumpJson(merged, { indent: 2 }) : dumpJson(merged, { compact: true }),
        );
      }),
    [
      ['pgstate meltano state get dev:tap-github-to-target-postgres', 'compact JSON, like `meltano state get`'],
      ['pgstate meltano state get dev:tap-github-to-target-postgres --json', 'merged, completed and partial parts'],
    ],
  );

  withExamples(
    state
      .command('set <state-id> [state]')
      .description('set a completed state (needs a top-level singer_state); invalid JSON writes nothing')
      .option('--input-file <file>', 'read the state from a JSON file (- for stdin)')
      .option('--no-validate', 'skip the singer_state check (not recommended)')
      .option('--force', 'do not ask for confirmation')
      .action(
        async (
          id: string,
          value: string | undefined,
          o: { inputFile?: string; validate: boolean; force?: boolean },
        ) => {
          exactlyOne({ '--input-file': o.inputFile, STATE: value });
          const text = o.inputFile !== undefined ? readInput(o.inputFile) : (value as string);
          const store = await open();
          if (!(await confirm("This will overwrite the state's current value.", o.force))) return;
          if (!o.validate)
            context.output.warn('Skipping state validation. Invalid state may cause issues in future runs.');
          await store.set(id, text, { validate: o.validate });
          done({ action: 'set', stateId: id }, `State for ${id} was successfully set at ${now()}.`);
        },
      ),
    [
      ['pgstate meltano state set --force dev:tap-a-to-target-b \'{"singer_state": {"bookmarks": {}}}\'', 'overwrite'],
      ['pgstate meltano state set --force dev:tap-a-to-target-b --input-file state.json', 'from a file'],
    ],
  );

  withExamples(
    state
      .command('merge <state-id> [state]')
      .description('deep-merge bookmarks into the state under its lock (lists are replaced)')
      .option('--input-file <file>', 'read the state to merge from a JSON file (- for stdin)')
      .option('--from-state-id <state-id>', 'merge another state id’s state')
      .action(async (id: string, value: string | undefined, o: { inputFile?: string; fromStateId?: string }) => {
        exactlyOne({ '--input-file': o.inputFile, STATE: value, '--from-state-id': o.fromStateId });
        const store = await open();
        if (o.fromStateId !== undefined) await store.mergeFrom(o.fromStateId, id);
        else await store.merge(id, o.inputFile !== undefined ? readInput(o.inputFile) : (value as string));
        done(
          { action: 'merge', stateId: id, ...(o.fromStateId === undefined ? {} : { from: o.fromStateId }) },
          `State for ${id} was successfully merged at ${now()}.`,
        );
      }),
    [
      ['pgstate meltano state merge dev:tap-a-to-target-b \'{"singer_state": {"bookmarks": {"s": {}}}}\'', 'add'],
      ['pgstate meltano state merge dev:tap-a-to-target-b --from-state-id dev:tap-a-to-target-c', 'from another id'],
    ],
  );

  withExamples(
    state
      .command('copy <src-state-id> <dst-state-id>')
      .description('set the destination to the source’s state')
      .option('--force', 'do not ask for confirmation')
      .action(async (src: string, dst: string, o: { force?: boolean }) => {
        const store = await open();
        if (!(await confirm('This will overwrite state for the destination.', o.force))) return;
        await store.copy(src, dst);
        done(
          { action: 'copy', from: src, to: dst },
          `State for ${dst} was successfully copied from ${src} at ${now()}.`,
        );
      }),
    [['pgstate meltano state copy --force dev:tap-a-to-target-b prod:tap-a-to-target-b', 'seed prod from dev']],
  );

  withExamples(
    state
      .command('move <src-state-id> <dst-state-id>')
      .description('set the destination to the source’s state, then clear the source')
      .option('--force', 'do not ask for confirmation')
      .action(async (src: string, dst: string, o: { force?: boolean }) => {
        const store = await open();
        if (!(await confirm('This will clear the source state and overwrite destination state.', o.force))) return;
        await store.move(src, dst);
        done({ action: 'move', from: src, to: dst }, `State for ${src} was successfully moved to ${dst} at ${now()}.`);
      }),
    [['pgstate meltano state move --force dev:old-to-target dev:new-to-target', 'after renaming a plugin']],
  );

  withExamples(
    state
      .command('clear [state-id]')
      .description('delete one state (under its lock), or every state with --all')
      .option('--all', 'clear every state id')
      .option('--force', 'do not ask for confirmation')
      .action(async (id: string | undefined, o: { all?: boolean; force?: boolean }) => {
        if ((id !== undefined) === !!o.all) {
          throw new UsageError('A state ID or the --all flag must be provided, but not both');
        }
        const store = await open();
        if (!(await confirm('This will clear state for the job(s).', o.force))) return;
        if (id !== undefined) {
          const cleared = await store.clear(id);
          done(
            { action: 'clear', stateId: id, cleared },
            cleared ? `State for ${id} was successfully cleared at ${now()}.` : `No state for ${id}: nothing to clear.`,
          );
        } else {
          const count = await store.clearAll();
          done({ action: 'clear', all: true, cleared: count }, `${count} state(s) were successfully cleared`);
        }
      }),
    [
      ['pgstate meltano state clear --force dev:tap-a-to-target-b', 'start the next run from scratch'],
      ['pgstate meltano state clear --all --force', 'every state'],
    ],
  );

  withExamples(
    state
      .command('export')
      .description(
        'print every state as {"<state id>": {"completed": ..., "partial": ...}} (compact JSON, like `meltano state export`; streamed)',
      )
      .option('--pattern <glob>', 'only state ids matching this glob')
      .option('--file <path>', 'write to a file instead of stdout')
      .action(async (o: { pattern?: string; file?: string }) => {
        const store = await open();
        const total = await store.count();
        const bar = context.output.progress('exporting', total);
        // A file is written next to its destination and renamed at the end: a failed export leaves no half file.
        const partial = o.file ? `${o.file}.partial-${process.pid}` : undefined;
        const out = partial ? fs.createWriteStream(partial) : context.output.stdout;
        const write = (chunk: string) =>
          out.write(chunk) ? Promise.resolve() : new Promise<void>((resolve) => out.once('drain', () => resolve()));
        // With --json on stdout the export document is the envelope's data. The opening is written together with the
        // first state, so a state that cannot be read leaves nothing on stdout.
        const [head, tail] = context.output.json && !o.file ? ['{"ok":true,"data":{', '}}\n'] : ['{', '}\n'];
        let n = 0;
        try {
          for await (const s of store.states(o.pattern)) {
            const entry = dumpJson({ completed: s.completed, partial: s.partial }, { compact: true });
            await write(`${n === 0 ? head : ','}${dumpJson(s.stateId, { compact: true })}:${entry}`);
            n++;
            bar.tick(1, s.stateId);
          }
          await write(n === 0 ? `${head}${tail}` : tail);
          if (partial && o.file) {
            await new Promise<void>((resolve, reject) =>
              (out as fs.WriteStream).end((e?: Error | null) => (e ? reject(e) : resolve())),
            );
            fs.renameSync(partial, o.file);
          }
        } finally {
          bar.done();
          if (partial && fs.existsSync(partial)) {
            (out as fs.WriteStream).destroy();
            fs.rmSync(partial, { force: true });
          }
        }
        if (o.file) {
          if (context.output.json) context.output.emitJson({ action: 'export', exported: n, file: o.file });
          else context.output.note(`Exported ${n} state(s) to ${o.file}.`);
        }
      }),
    [
      ['pgstate meltano state export > states.json', 'back up every state'],
      ['pgstate meltano state export --pattern "dev:*" --file dev.json', 'one environment'],
    ],
  );

  withExamples(
    state
      .command('import [input-file]')
      .description('overwrite the states in an export file (- or nothing: stdin); all validated first, one transaction')
      .action(async (file: string | undefined) => {
        const text = readInput(file ?? '-');
        const store = await open();
        let bar: ReturnType<typeof context.output.progress> | undefined;
        let reported = 0;
        const count = await store
          .import(text, {
            onProgress: (written, total) => {
              bar ??= context.output.progress('importing', total);
              bar.tick(written - reported);
              reported = written;
            },
          })
          .finally(() => bar?.done());
        done({ action: 'import', imported: count }, `Successfully imported ${count} state(s).`);
      }),
    [
      ['pgstate meltano state import states.json', 'restore a backup'],
      ['meltano state export | pgstate meltano state import', 'move states from another backend into PostgreSQL'],
    ],
  );
}
