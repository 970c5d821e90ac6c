import fs from 'node:fs';
import { PgStateError } from '@pgstate/core';
import {
  exportDiyDirectory,
  importDiyDirectory,
  PulumiBlobStore,
  PulumiStateStore,
  pulumiAdapter,
  pulumiStoreOptions,
  type TransferProgress,
} from '@pgstate/pulumi';
import { assertLayout, migrationStatus } from '@pgstate/schema';
import type { Command } from 'commander';
import { configure, migrateCommand } from '../adapters.js';
import type { CommandContext } from '../context.js';
import { UsageError } from '../errors.js';
import { withExamples } from '../help.js';

interface StoreOptions {
  schema?: string;
  table?: string;
  layout?: string;
  keyPrefix?: string;
}

/** `project/stack` or `organization/project/stack`. */
function parseStack(value: string): { project: string; stack: string } {
  const parts = value.split('/');
  if (parts.length === 3 && parts[0] === 'organization') parts.shift();
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    throw new UsageError(`"${value}" is not a stack: use <project>/<stack>, e.g. "app/dev".`);
  }
  return { project: parts[0], stack: parts[1] };
}

/** `30d`, `12h`, `45m` before now, or an ISO date. */
function parseAge(value: string): Date {
  const m = /^(\d+)([dhm])$/.exec(value);
  if (m) {
    const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[m[2] as 'd' | 'h' | 'm'];
    return new Date(Date.now() - Number(m[1]) * unit);
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new UsageError(`--older-than "${value}": use 30d, 12h, 45m or a date.`);
  return date;
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`"${value}" is not a count (0, 1, 2, ...).`);
  return n;
}

export function register(program: Command, context: CommandContext): void {
  const pulumi = program
    .command('pulumi')
    .description('Pulumi DIY state in PostgreSQL: stacks, export/import, history, locks, retention, migration')
    .option('--schema <name>', 'schema of the state table (default: ?schema= of the URL, else public)')
    .option('--table <name>', 'state table (default: ?table= of the URL, else pulumi_state)')
    .option(
      '--layout <layout>',
      'bytea (pgstate’s table; formerly seed) or native (the table of `pulumi login postgres://`); default: ?layout=, else bytea',
    )
    .option('--key-prefix <prefix>', 'key prefix (default: ?key_prefix=; native: "<database>/")');
  withExamples(pulumi, [
    ['pgstate pulumi stacks', 'every stack in pgstate’s table (pulumi_state)'],
    ['pgstate pulumi --layout native stacks', 'the table `pulumi login postgres://` writes'],
    ['pgstate --url "postgres://app@db/app?layout=native" pulumi stacks', 'the same, set in the URL'],
    ['pgstate pulumi export app/dev > dev.json', 'save a deployment'],
    ['pgstate pulumi run -- up', 'the stock pulumi CLI with its state here'],
  ]);

  /**
   * The store of the selected configuration. A command that only reads never writes: it applies no migrations and
   * creates no side tables; it refuses a table of another layout and an unmigrated database instead.
   */
  async function open(mode: 'read' | 'write'): Promise<PulumiStateStore> {
    const opts = pulumi.opts<StoreOptions>();
    const selected = configure(
      pulumiAdapter,
      { layout: opts.layout, schema: opts.schema, table: opts.table, key_prefix: opts.keyPrefix },
      await context.settings(),
      context.env,
    );
    const pool = await context.pool();
    await assertLayout(pool, selected.target);
    if (mode === 'read' && !(await migrationStatus(pool, selected.target)).upToDate) {
      throw new PgStateError(
        'MIGRATIONS_PENDING',
        `The Pulumi ${selected.settings.layout} tables are not set up here.`,
        {
          fix: `Run \`${migrateCommand(selected)}\` (reading commands never create tables).`,
        },
      );
    }
    const blobs = new PulumiBlobStore({ pool, ...pulumiStoreOptions(selected.settings), migrate: mode === 'write' });
    return new PulumiStateStore(blobs);
  }

  function progressReporter(label: string) {
    let bar: ReturnType<typeof context.output.progress> | undefined;
    return {
      onProgress: (p: TransferProgress) => {
        bar ??= context.output.progress(label, p.total);
        bar.tick(1, p.key);
      },
      done: () => bar?.done(),
    };
  }

  withExamples(
    pulumi
      .command('stacks')
      .description('list stacks with last update and resource count (from the index: no checkpoint is read)')
      .option('--project <name>', 'only this project')
      .action(async (o: { project?: string }) => {
        const stacks = await (await open('read')).listStacks(o.project);
        if (context.output.json) {
          context.output.emitJson(stacks.map((s) => ({ ...s, modified: s.modified.toISOString() })));
          return;
        }
        if (stacks.length === 0) return context.output.line('no stacks');
        context.output.line(context.output.style('NAME\tLAST UPDATE\tRESOURCE COUNT', 'bold'));
        for (const s of stacks) {
          context.output.line(`${s.project}/${s.stack}\t${s.lastUpdate ?? 'n/a'}\t${s.resourceCount ?? 'n/a'}`);
        }
      }),
    [
      ['pgstate pulumi stacks', 'all stacks'],
      ['pgstate pulumi stacks --project app --json', 'one project, as JSON'],
    ],
  );

  withExamples(
    pulumi
      .command('export <stack>')
      .description('print a stack’s deployment like `pulumi stack export` (JSON; with --json inside the envelope)')
      .option('--file <path>', 'write to a file instead of stdout')
      .action(async (stack: string, o: { file?: string }) => {
        const { project, stack: name } = parseStack(stack);
        const deployment = await (await open('read')).exportDeployment(project, name);
        // The file (or plain stdout) is exactly what `pulumi stack export` writes; --json wraps stdout in the envelope.
        if (o.file) {
          fs.writeFileSync(o.file, `${JSON.stringify(deployment, null, 4)}\n`);
          if (context.output.json) context.output.emitJson({ exported: `${project}/${name}`, file: o.file });
        } else if (context.output.json) context.output.emitJson(deployment);
        else context.output.stdout.write(`${JSON.stringify(deployment, null, 4)}\n`);
      }),
    [['pgstate pulumi export app/dev > dev.json', 'save a deployment']],
  );

  withExamples(
    pulumi
      .command('import <stack> <file>')
      .description('import a deployment (`-` reads stdin); invalid JSON or another stack’s URNs write nothing')
      .option('--force', 'import even when the URNs name another stack')
      .action(async (stack: string, file: string, o: { force?: boolean }) => {
        const { project, stack: name } = parseStack(stack);
        const input = fs.readFileSync(file === '-' ? 0 : file);
        await (await open('write')).importDeployment(project, name, input, { force: o.force });
        if (context.output.json) context.output.emitJson({ imported: `${project}/${name}` });
        else context.output.line(`imported into ${project}/${name}`);
      }),
    [['pgstate pulumi import app/dev dev.json', 'restore a deployment']],
  );

  withExamples(
    pulumi
      .command('history <stack>')
      .description('update history, newest first')
      .option('--limit <n>', 'at most n entries', count)
      .action(async (stack: string, o: { limit?: number }) => {
        const { project, stack: name } = parseStack(stack);
        const history = await (await open('read')).history(project, name, o.limit);
        if (context.output.json) return context.output.emitJson(history);
        if (history.length === 0) return context.output.line('no history');
        for (const h of history) {
          const when = h.info.startTime ? new Date(h.info.startTime * 1000).toISOString() : h.timestamp;
          context.output.line(`${when}\t${h.info.kind}\t${h.info.result ?? ''}\t${h.info.message ?? ''}`);
        }
      }),
    [['pgstate pulumi history app/dev --limit 10', 'the last 10 updates']],
  );

  withExamples(
    pulumi
      .command('locks [stack]')
      .description('who holds stack locks, since when (all locked stacks without an argument)')
      .action(async (stack: string | undefined) => {
        const store = await open('read');
        const locks = stack
          ? [
              {
                ...parseStack(stack),
                holders: await store.lockHolders(parseStack(stack).project, parseStack(stack).stack),
              },
            ]
          : await store.listLocks();
        const held = locks.filter((l) => l.holders.length > 0);
        if (context.output.json) return context.output.emitJson(held);
        if (held.length === 0) return context.output.line('no locks');
        for (const l of held) {
          for (const h of l.holders) {
            context.output.line(
              `${l.project}/${l.stack}\t${h.username}@${h.hostname} (pid ${h.pid})\tsince ${h.timestamp}\t${h.id}`,
            );
          }
        }
      }),
    [['pgstate pulumi locks', 'every locked stack']],
  );

  withExamples(
    pulumi
      .command('cancel <stack>')
      .description('break a stack’s lock (like `pulumi cancel` for DIY stores): deletes every lock file of the stack')
      .action(async (stack: string) => {
        const { project, stack: name } = parseStack(stack);
        const removed = await (await open('write')).cancel(project, name);
        if (context.output.json) context.output.emitJson({ removed });
        else
          context.output.line(removed > 0 ? `removed ${removed} lock(s) of ${project}/${name}` : 'no lock to remove');
      }),
    [['pgstate pulumi cancel app/dev', 'after a crashed `pulumi up`']],
  );

  withExamples(
    pulumi
      .command('prune')
      .description('delete old history, backups and .bak files')
      .option('--project <name>', 'only this project')
      .option('--stack <name>', 'only this stack (with --project)')
      .option('--keep-history <n>', 'keep the n newest updates per stack', count)
      .option('--keep-backups <n>', 'keep the n newest backups per stack', count)
      .option('--older-than <age>', 'only entries older than 30d / 12h / 45m / a date', parseAge)
      .option('--remove-bak', 'also delete checkpoint .bak files')
      .option('--dry-run', 'only list what would be deleted')
      .action(
        async (o: {
          project?: string;
          stack?: string;
          keepHistory?: number;
          keepBackups?: number;
          olderThan?: Date;
          removeBak?: boolean;
          dryRun?: boolean;
        }) => {
          if (o.keepHistory === undefined && o.keepBackups === undefined && !o.olderThan && !o.removeBak) {
            throw new UsageError('Say what to prune: --keep-history, --keep-backups, --older-than or --remove-bak.');
          }
          const result = await (await open(o.dryRun ? 'read' : 'write')).prune(o);
          if (context.output.json) return context.output.emitJson({ ...result, dryRun: !!o.dryRun });
          for (const key of result.deleted) context.output.line(`${o.dryRun ? 'would delete' : 'deleted'} ${key}`);
          context.output.line(`${result.deleted.length} object(s), ${result.bytes} bytes`);
        },
      ),
    [
      ['pgstate pulumi prune --keep-history 20 --keep-backups 5 --remove-bak', 'bounded history'],
      ['pgstate pulumi prune --older-than 90d --dry-run', 'what is older than 90 days'],
    ],
  );

  withExamples(
    pulumi
      .command('migrate-from <dir>')
      .description('copy a `pulumi login file://<dir>` store into PostgreSQL')
      .action(async (dir: string) => {
        const progress = progressReporter('importing');
        const result = await importDiyDirectory((await open('write')).blobs, dir, progress).finally(progress.done);
        if (context.output.json) context.output.emitJson(result);
        else context.output.line(`imported ${result.files} file(s), ${result.bytes} bytes`);
      }),
    [['pgstate pulumi migrate-from ~/.pulumi-state', 'then `pulumi login` to the S3 endpoint or postgres://']],
  );

  withExamples(
    pulumi
      .command('migrate-to <dir>')
      .description('write every .pulumi/ key into a directory usable with `pulumi login file://<dir>`')
      .action(async (dir: string) => {
        if (!fs.existsSync(dir)) {
          throw new PgStateError('NOT_FOUND', `The directory ${dir} does not exist.`, { fix: `mkdir -p ${dir}` });
        }
        const progress = progressReporter('exporting');
        const result = await exportDiyDirectory((await open('read')).blobs, dir, progress).finally(progress.done);
        if (context.output.json) context.output.emitJson(result);
        else context.output.line(`exported ${result.files} file(s), ${result.bytes} bytes`);
      }),
    [['pgstate pulumi migrate-to ./state-copy', 'a file:// copy of the store']],
  );
}
