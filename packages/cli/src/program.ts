import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import * as commands from './commands/index.js';
import { CliContext, type CommandContext } from './context.js';
import { UsageError } from './errors.js';
import { EXIT } from './exit-codes.js';
import { withExamples } from './help.js';

/** How a command plugs in: `export function register(program, context) { program.command('x')... }`. */
export { withExamples };

/** How a command plugs in: `export function register(program, context) { program.command('x')... }`. */
export type RegisterCommand = (program: Command, context: CommandContext) => void;

const version = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

const EXIT_CODES_HELP = `
Connection: --url, else PGSTATE_URL, else the libpq environment (PGHOST, PGUSER, PGPASSWORD, ..., ~/.pgpass);
with none of them, pgstate uses its own PostgreSQL (see pgstate db --help). Flags override the URL.

Exit codes: 0 ok, 1 failure (or a doctor check failed), 2 usage error, 3 connection/auth/TLS error,
4 permission denied, 5 migrations pending, 6 lock timeout/conflict, 130 interrupted.`;

export function createProgram(context: CliContext): Command {
  const program = new Command('pgstate');
  context.attach(program);
  program
    .description('Keep Pulumi, Meltano and PowerSync state in PostgreSQL.')
    .version(version, '-V, --version')
    .addOption(
      new Option('--url <url>', 'PostgreSQL URL (postgres://user@host:5432/db?sslmode=verify-full)').env('PGSTATE_URL'),
    )
    .option('--host <host>', 'server host name or unix socket directory (overrides the URL)')
    .option('--port <port>', 'server port')
    .option('--user <user>', 'role to connect as')
    .option('--database <name>', 'database name')
    .addOption(
      new Option('--sslmode <mode>', 'TLS mode, as libpq').choices([
        'disable',
        'allow',
        'prefer',
        'require',
        'verify-ca',
        'verify-full',
      ]),
    )
    .option('--sslrootcert <file>', 'CA certificate(s) to verify the server with (file or PEM)')
    .option('--sslcert <file>', 'client certificate for mutual TLS')
    .option('--sslkey <file>', 'client key for mutual TLS')
    .option('--application-name <name>', 'application_name reported to the server')
    .option('--connect-timeout <seconds>', 'give up connecting after this many seconds')
    .option('--passfile <file>', 'password file in ~/.pgpass format (default: PGPASSFILE, ~/.pgpass)')
    .option('--secret-file <file>', 'JSON secret {"username","password","host","port","dbname"} to connect with')
    .option('--json', 'machine-readable output: one JSON document on stdout', false)
    .option('--debug', 'show stack traces and debug notes on stderr', false)
    .option('--no-color', 'never use colours (also: NO_COLOR=1)')
    .addHelpText('after', EXIT_CODES_HELP)
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      // Usage errors are reported by main() in the house format (and as JSON with --json).
      outputError: () => {},
    });
  withExamples(program, [
    ['pgstate doctor', 'check pgstate’s own server (started on first use)'],
    ['pgstate doctor --url postgres://app@db.example.com/app?sslmode=verify-full', 'check a server'],
    ['pgstate migrate --adapter all', 'create or update every adapter’s tables'],
    ['pulumi login "$(pgstate db url)"', 'point a tool at pgstate’s own server'],
  ]);
  program.hook('preAction', () => context.resetOutput());
  for (const register of Object.values(commands) as RegisterCommand[]) register(program, context);
  return program;
}

/** Runs the CLI and returns the process exit code. Never throws. */
export async function main(
  argv: readonly string[] = process.argv.slice(2),
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const context = new CliContext(env, argv);
  let code: number;
  try {
    const program = createProgram(context);
    await program.parseAsync(argv as string[], { from: 'user' });
    code = context.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) code = EXIT.OK;
      else if (error.code === 'commander.help' || error.code === 'commander.helpDisplayed') code = EXIT.USAGE;
      else {
        const message = error.message.replace(/^error:\s*/i, '');
        code = context.report(new UsageError(message, 'See pgstate --help (or pgstate <command> --help).'));
      }
    } else {
      code = context.report(error);
    }
  } finally {
    await context.close();
  }
  return code;
}
