import { type MigrateResult, migrate } from '@pgstate/schema';
import type { Command } from 'commander';
import { ADAPTERS, describeTarget, layoutHelp, selectAdapters } from '../adapters.js';
import type { CommandContext } from '../context.js';
import { EXIT } from '../exit-codes.js';
import { withExamples } from '../help.js';

interface MigrateFlags {
  adapter: string;
  schema?: string;
  table?: string;
  layout?: string;
  dryRun?: boolean;
  check?: boolean;
  internalSchema?: string;
}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('migrate')
    .description('create or update the tables of one adapter, or all (safe to run from many processes at once)')
    .option('--adapter <name>', `${ADAPTERS.map((a) => a.name).join(' | ')} | all`, 'all')
    .option(
      '--schema <name>',
      'schema for the adapter’s tables (default: ?schema=, the URL’s /database/schema, else the adapter’s own)',
    )
    .option('--table <name>', 'table name, for layouts with one table (pulumi; meltano plugin/systemdb)')
    .option('--layout <layout>', `table layout (default: ?layout=, else the adapter’s first): ${layoutHelp()}`)
    .option(
      '--internal-schema <name>',
      'schema of pgstate’s own journal and leases (default: pgstate; PowerSync: its own schema)',
    )
    .option('--dry-run', 'print the SQL that would run; change nothing')
    .option('--check', 'change nothing; exit 5 when migrations are pending (for CI and deploy checks)')
    .action(async (flags: MigrateFlags) => {
      const settings = await context.settings();
      const targets = selectAdapters(flags, settings, context.env);
      const dryRun = !!(flags.dryRun || flags.check);
      const pool = await context.pool();
      const progress = context.output.progress('migrating', targets.length);
      const results: (MigrateResult & { target: string; adapter: string })[] = [];
      try {
        for (const selected of targets) {
          progress.tick(0, describeTarget(selected));
          const result = await migrate(pool, selected.target, { dryRun, internalSchema: flags.internalSchema });
          results.push({ ...result, target: describeTarget(selected), adapter: selected.resolved.adapter });
          progress.tick(1);
        }
      } finally {
        progress.done();
      }
      // Several targets share the internal tables: a dry run lists their migration once per target; show it once.
      const seen = new Set<string>();
      const pending = results.flatMap((r) =>
        r.applied.filter((m) => {
          const key = `${m.config} ${m.migration}`;
          if (seen.has(key)) return false;
          seen.add(key);
          return true;
        }),
      );
      // The journal alone can say "up to date" for tables that lack what pgstate needs (changed by hand, or created
      // by another tool and adopted): the dry run also compares the tables with the adapter's definitions.
      const shape = [...new Set(results.flatMap((r) => r.shape))];
      const behind = pending.length > 0 || shape.length > 0;
      if (flags.check && behind) context.exitCode = EXIT.MIGRATIONS_PENDING;
      const o = context.output;
      if (o.json) {
        const data = {
          dryRun,
          upToDate: !behind,
          ...(shape.length ? { shape } : {}),
          migrations: pending.map((m) => ({
            config: m.config,
            adapter: m.adapter,
            migration: m.migration,
            hash: m.hash,
          })),
          ...(flags.dryRun
            ? {
                sql: pending
                  .map((m) => `-- ${m.config}: ${m.migration}\n${m.statements.map(terminated).join('\n')}\n`)
                  .join('\n'),
              }
            : {}),
        };
        if (!(flags.check && behind)) return o.emitJson(data);
        return o.emitJsonFailure(
          {
            code: 'MIGRATIONS_PENDING',
            message: `${pending.length} migration(s) pending${shape.length ? `, ${shape.length} table shape problem(s)` : ''}.`,
            fix: 'Run pgstate migrate (with a role that may create tables).',
          },
          data,
        );
      }
      for (const problem of shape) o.line(`${o.style('shape', 'red')}  ${problem}`);
      if (flags.dryRun) {
        if (pending.length === 0) o.note('-- up to date: nothing to apply');
        for (const m of pending)
          o.value(`-- ${m.config}: ${m.migration}\n${m.statements.map(terminated).join('\n')}\n`);
        return;
      }
      const verb = dryRun ? o.style('pending', 'yellow') : o.style('applied', 'green');
      for (const m of pending) o.line(`${verb}  ${m.config}  ${m.migration}`);
      if (!behind) o.line(`${o.style('up to date', 'green')}  ${results.map((r) => r.target).join(', ')}`);
      if (flags.check && pending.length) o.line(`${pending.length} migration(s) pending: run pgstate migrate`);
      if (flags.check && shape.length && !pending.length)
        o.line('the journal is up to date but the tables are not: restore what is missing (see above)');
    });
  withExamples(command, [
    ['pgstate migrate', 'every adapter, default names'],
    ['pgstate migrate --adapter pulumi --table my_state', 'Pulumi’s table under another name'],
    ['pgstate migrate --adapter meltano --layout systemdb', 'Meltano’s systemdb `state` table'],
    [
      'pgstate migrate --adapter pulumi --layout native',
      'pgstate’s side tables next to `pulumi login postgres://`’s table',
    ],
    ['pgstate migrate --adapter meltano --url postgres://app@db/warehouse/meltano', 'the seed plugin’s /db/schema URL'],
    ['pgstate migrate --dry-run > migrations.sql', 'the SQL, for a DBA to review and run'],
    ['pgstate migrate --check', 'exit 5 if anything is pending'],
  ]);
}

/** drizzle-kit's statements may or may not end with a semicolon: print exactly one. */
function terminated(statement: string): string {
  const trimmed = statement.trimEnd();
  return trimmed.endsWith(';') ? trimmed : `${trimmed};`;
}
