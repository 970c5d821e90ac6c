import {
  type ConnectionFields,
  type ConnectionSettings,
  createPool,
  type ParseOptions,
  parseConnectionSettings,
  withoutSqlAlchemyDriver,
} from '@pgstate/core';
import type { Command } from 'commander';
import { ADAPTER_URL_PARAMS, SCHEMA_PATH } from './adapters.js';
import { ensureEmbeddedServer } from './embedded.js';
import { reportError, toPgStateError } from './errors.js';
import { Output } from './output.js';

/** The global options every command accepts (`pgstate --help` lists them). */
export interface GlobalOptions {
  url?: string;
  host?: string;
  port?: string;
  user?: string;
  database?: string;
  sslmode?: string;
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
  applicationName?: string;
  connectTimeout?: string;
  passfile?: string;
  secretFile?: string;
  json: boolean;
  debug: boolean;
  color: boolean;
}

export type Pool = ReturnType<typeof createPool>;

/** PG* variables that name a server: any of them means "connect like libpq would", not pgstate's own server. */
const PG_TARGET_ENV = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'PGSERVICE'];

/**
 * Every command accepts every adapter's URL parameters (`?schema=&table=&layout=&key_prefix=`, returned in
 * `settings.adapterParams`) and the `/database/schema` path: each adapter's settings parser picks what it reads.
 */
const DEFAULT_PARSE: Omit<ParseOptions, 'env'> = { adapterParams: ADAPTER_URL_PARAMS, allowSchemaPath: SCHEMA_PATH };

/** What every command gets: parsed global options, output, and a lazily connected database. */
export interface CommandContext {
  /** Global options (after parsing). */
  readonly options: GlobalOptions;
  readonly output: Output;
  readonly env: Record<string, string | undefined>;
  /** True when nothing names a server, so commands use pgstate's own PostgreSQL (`pgstate db`). */
  usesEmbeddedServer(): boolean;
  /**
   * Resolved connection settings (global flags > URL > PG* env > .pgpass); starts pgstate's own server when
   * nothing is configured. `parse` replaces the default parse options (every adapter's URL parameters).
   */
  settings(parse?: Omit<ParseOptions, 'env'>): Promise<ConnectionSettings>;
  /** One shared pool for the command (created on first call, closed when the command ends). */
  pool(): Promise<Pool>;
  /** Runs `fn` when the command ends (success or failure), before the process exits. */
  onClose(fn: () => unknown): void;
  /** Exit code the process ends with when the action returns normally (default 0). */
  exitCode: number;
}

export class CliContext implements CommandContext {
  exitCode = 0;
  readonly env: Record<string, string | undefined>;
  private program: Command | undefined;
  private outputCache: Output | undefined;
  private settingsCache: Promise<ConnectionSettings> | undefined;
  private poolCache: Promise<Pool> | undefined;
  private readonly closers: (() => unknown)[] = [];
  /** Secrets known to this run (redacted from any error text as a last line of defence). */
  readonly secrets: string[] = [];
  lastSettings: ConnectionSettings | undefined;
  private readonly warned = new Set<string>();

  constructor(
    env: Record<string, string | undefined>,
    private readonly argv: readonly string[],
  ) {
    this.env = env;
  }

  attach(program: Command): void {
    this.program = program;
  }

  get options(): GlobalOptions {
    return (this.program?.opts() ?? {}) as GlobalOptions;
  }

  get output(): Output {
    if (!this.outputCache) {
      const opts = this.options;
      // Before commander has parsed (usage errors), read the flags straight from argv.
      const json = opts.json ?? this.argv.includes('--json');
      const debug = opts.debug ?? this.argv.includes('--debug');
      const color = this.argv.includes('--no-color') ? false : undefined;
      this.outputCache = new Output({ json: !!json, debug: !!debug, color, env: this.env });
    }
    return this.outputCache;
  }

  /** Re-derives output after parsing (the first access may have happened before the flags were known). */
  resetOutput(): void {
    this.outputCache = undefined;
  }

  private fields(): ConnectionFields & { url?: string } {
    const o = this.options;
    const fields: ConnectionFields & { url?: string } = {};
    // Meltano's own `database_uri` form (`postgresql+psycopg://`) is accepted as the library accepts it.
    if (o.url) fields.url = withoutSqlAlchemyDriver(o.url);
    if (o.host) fields.host = o.host;
    if (o.port) fields.port = o.port;
    if (o.user) fields.user = o.user;
    if (o.database) fields.database = o.database;
    if (o.sslmode) fields.sslmode = o.sslmode;
    if (o.sslrootcert) fields.sslRootCert = o.sslrootcert;
    if (o.sslcert) fields.sslCert = o.sslcert;
    if (o.sslkey) fields.sslKey = o.sslkey;
    if (o.applicationName) fields.applicationName = o.applicationName;
    if (o.connectTimeout) fields.connectTimeoutSeconds = o.connectTimeout;
    if (o.passfile) fields.passfile = o.passfile;
    if (o.secretFile) fields.secretFile = o.secretFile;
    return fields;
  }

  usesEmbeddedServer(): boolean {
    const o = this.options;
    if (o.url || o.host || o.port || o.user || o.database || o.secretFile) return false;
    return !PG_TARGET_ENV.some((name) => this.env[name]);
  }

  settings(parse?: Omit<ParseOptions, 'env'>): Promise<ConnectionSettings> {
    if (this.settingsCache && parse === undefined) return this.settingsCache;
    const resolved = (async () => {
      const fields = this.fields();
      if (this.usesEmbeddedServer()) {
        const server = await ensureEmbeddedServer(this.env, (text) => this.output.note(text));
        fields.url = server.url;
      }
      const settings = parseConnectionSettings(fields, { ...(parse ?? DEFAULT_PARSE), env: this.env });
      if (settings.password) this.secrets.push(settings.password);
      // As libpq does: say why a ~/.pgpass was ignored (group/world access), once per run.
      for (const warning of settings.warnings ?? []) {
        if (this.warned.has(warning)) continue;
        this.warned.add(warning);
        this.output.warn(warning);
      }
      this.lastSettings = settings;
      return settings;
    })();
    if (parse === undefined) this.settingsCache = resolved;
    return resolved;
  }

  pool(): Promise<Pool> {
    this.poolCache ??= this.settings().then((settings) => {
      const pool = createPool(settings);
      this.onClose(() => pool.end());
      return pool;
    });
    return this.poolCache;
  }

  onClose(fn: () => unknown): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.closers.splice(0).reverse()) {
      try {
        await fn();
      } catch (error) {
        this.output.debug(`cleanup failed: ${toPgStateError(error).message}`);
      }
    }
  }

  /** Prints an error the house way and returns the exit code for it. */
  report(error: unknown): number {
    return reportError(error, this.output, { where: this.lastSettings, secrets: this.secrets });
  }
}
