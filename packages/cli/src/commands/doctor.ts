import type { TLSSocket } from 'node:tls';
import {
  type ConnectionSettings,
  checkServerRole,
  connectedHost,
  createPool,
  describeConnection,
  hostsOf,
  isPgStateError,
  LayoutMismatchError,
  PgStateError,
  parseConnectionSettings,
} from '@pgstate/core';
import { assertLayout, migrationStatus, type ResolvedTarget } from '@pgstate/schema';
import type { Command } from 'commander';
import type pg from 'pg';
import {
  ADAPTERS,
  layoutHelp,
  migrateCommand,
  type Selected,
  selectAdapters,
  targetFlags,
  targetTables,
} from '../adapters.js';
import type { CommandContext } from '../context.js';
import { toPgStateError } from '../errors.js';
import { EXIT } from '../exit-codes.js';
import { withExamples } from '../help.js';
import type { Status } from '../output.js';

export interface DoctorCheck {
  /** Stable id: `connect`, `server`, `host`, `tls`, `role`, `rights:<adapter>`, `migrations:<adapter>`, `pooler`, `clock`. */
  id: string;
  status: Status;
  /** One line saying what was found. */
  detail: string;
  /** One line saying what to do (warn/fail only). */
  fix?: string;
  /** Stable error code when a check failed because of an error. */
  code?: string;
  data?: Record<string, unknown>;
}

interface DoctorFlags {
  adapter?: string;
  schema?: string;
  table?: string;
  layout?: string;
  internalSchema?: string;
  /** Adapters' own flags (e.g. PowerSync's --powersync-notify), camel-cased by commander. */
  [adapterFlag: string]: string | undefined;
}

/** `powersync-notify` -> `powersyncNotify`, as commander names option values. */
const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

type Client = pg.PoolClient;
type Pool = Awaited<ReturnType<CommandContext['pool']>>;

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('doctor')
    .description('check the connection, TLS, rights, migrations, poolers and clock; exit 1 when a check fails')
    .option(
      '--adapter <name>',
      `${ADAPTERS.map((a) => a.name).join(' | ')} | all (default: all, lenient about unused ones)`,
    )
    .option('--schema <name>', 'the adapter’s schema, when not the default (needs --adapter)')
    .option('--table <name>', 'the adapter’s table, when not the default (needs --adapter)')
    .option('--layout <layout>', `table layout (default: ?layout=, else the adapter’s first): ${layoutHelp()}`)
    .option(
      '--internal-schema <name>',
      'schema of pgstate’s own journal and leases (default: pgstate; PowerSync: its own schema)',
    );
  for (const adapter of ADAPTERS)
    for (const f of adapter.flags ?? [])
      if (f.commands.includes('doctor')) command.option(`--${f.flag} ${f.value}`, f.description);
  command.action(async (flags: DoctorFlags) => {
    const report = await runDoctor(context, flags);
    const o = context.output;
    const failed = report.checks.some((c) => c.status === 'fail');
    if (failed) context.exitCode = EXIT.FAILURE;
    const summary = { pass: 0, warn: 0, fail: 0, skip: 0 };
    for (const c of report.checks) summary[c.status]++;
    if (o.json) {
      const data = { ok: !failed, target: report.target, embedded: report.embedded, checks: report.checks, summary };
      if (!failed) return o.emitJson(data);
      const names = report.checks.filter((c) => c.status === 'fail').map((c) => c.id);
      return o.emitJsonFailure(
        { code: 'CHECKS_FAILED', message: `${names.length} check(s) failed: ${names.join(', ')}.` },
        data,
      );
    }
    o.line(
      `${o.style('pgstate doctor', 'bold')}  ${report.target ? describeConnection(report.target) : '(no connection)'}${report.embedded ? ' (pgstate’s own server)' : ''}`,
    );
    const width = Math.max(...report.checks.map((c) => c.id.length));
    for (const c of report.checks) {
      o.line(`  ${o.status(c.status)}  ${c.id.padEnd(width)}  ${c.detail}`);
      if (c.fix && c.status !== 'pass') o.line(`        ${' '.repeat(width)}  ${o.style('fix:', 'cyan')} ${c.fix}`);
    }
    o.line(
      `${summary.pass} passed, ${summary.warn} warning(s), ${summary.fail} failed${summary.skip ? `, ${summary.skip} skipped` : ''}`,
    );
  });
  withExamples(command, [
    ['pgstate doctor', 'check pgstate’s own server (started on first use)'],
    ['pgstate doctor --url "$DATABASE_URL" --adapter pulumi', 'check one adapter strictly'],
    ['pgstate doctor --adapter pulumi --layout native', 'the table of `pulumi login postgres://`'],
    ['PGSSLMODE=verify-full PGHOST=db.example.com pgstate doctor', 'libpq environment works too'],
    ['pgstate doctor --json | jq .checks', 'machine-readable'],
  ]);
}

interface Report {
  target:
    | (Pick<ConnectionSettings, 'host' | 'port' | 'user' | 'database' | 'sslmode'> & {
        hosts: Array<{ host: string; port: number }>;
      })
    | undefined;
  embedded: boolean;
  checks: DoctorCheck[];
}

const LATER = ['server', 'host', 'tls', 'role', 'rights', 'migrations', 'pooler', 'clock'];

async function runDoctor(context: CommandContext, flags: DoctorFlags): Promise<Report> {
  const checks: DoctorCheck[] = [];
  const embedded = context.usesEmbeddedServer();
  const skipRest = (why: string) => {
    for (const id of LATER) checks.push({ id, status: 'skip', detail: why });
  };
  let settings: ConnectionSettings;
  try {
    settings = await context.settings();
  } catch (error) {
    // A malformed setting is a usage error (exit 2), not a finding.
    if (isPgStateError(error, 'BAD_SETTING') || isPgStateError(error, 'INVALID_IDENTIFIER')) throw error;
    const e = toPgStateError(error);
    checks.push({ id: 'connect', status: 'fail', code: e.code, detail: e.message, fix: e.fix });
    skipRest('not connected');
    return { target: undefined, embedded, checks };
  }
  const target = {
    host: settings.host,
    port: settings.port,
    // Every host of a multi-host URL, in order (names and ports only).
    hosts: hostsOf(settings).map(({ host, port }) => ({ host, port })),
    user: settings.user,
    database: settings.database,
    sslmode: settings.sslmode,
  };
  // Explicit names (flags, or `?schema=`/`?table=`/`?layout=` in the URL) select one configuration.
  const selected = selectAdapters(flags, settings, context.env);
  const strict = flags.adapter !== undefined && flags.adapter !== 'all';

  const pool = await context.pool();
  let client: Client;
  const started = Date.now();
  try {
    client = await pool.connect();
  } catch (error) {
    const e = toPgStateError(error, settings);
    checks.push({ id: 'connect', status: 'fail', code: e.code, detail: e.message, fix: e.fix });
    skipRest('not connected');
    return { target, embedded, checks };
  }
  try {
    checks.push({
      id: 'connect',
      status: 'pass',
      detail: `connected as ${settings.user} in ${Date.now() - started} ms`,
    });
    checks.push(await checkServer(client));
    // Which host of the list was reached, primary or standby, and whether writes could land on a standby.
    checks.push({ id: 'host', ...(await checkServerRole(client, settings)) });
    checks.push(checkTls(client, settings));
    const role = await checkRole(client);
    checks.push(role.check);
    const installed = new Map<Selected, boolean>();
    for (const s of selected) {
      const rights = await checkRights(client, s.definition.name, s.resolved, role.user, role.canCreateSchema);
      installed.set(s, rights.installed);
      checks.push(rights.check);
    }
    for (const s of selected)
      checks.push(await checkMigrations(pool, s, flags.internalSchema, strict, installed.get(s) ?? false));
    const pooler = await checkPooler(client, pool, settings);
    checks.push(pooler);
    // Checks only one adapter needs (e.g. how PowerSync's watchers get checkpoint notifications).
    for (const s of selected) {
      if (!s.definition.doctorChecks) continue;
      const adapterFlags = Object.fromEntries(
        (s.definition.flags ?? []).map((f) => [f.flag, flags[camel(f.flag)]] as const),
      );
      checks.push(
        ...(await s.definition.doctorChecks({
          settings: s.settings,
          connection: settings,
          pool,
          env: context.env,
          flags: adapterFlags,
          strict,
          installed: installed.get(s) ?? false,
          transactionPooling: pooler.data?.transactionPooling === true,
          probePooling: (url) => probePooling(context, url),
        })),
      );
    }
    checks.push(await checkClock(client));
  } finally {
    client.release();
  }
  return { target, embedded, checks };
}

async function checkServer(client: Client): Promise<DoctorCheck> {
  const { rows } = await client.query<{ version: string; num: number }>(
    "SELECT current_setting('server_version') AS version, current_setting('server_version_num')::int AS num",
  );
  const { version, num } = rows[0]!;
  if (num < 130000)
    return {
      id: 'server',
      status: 'warn',
      detail: `PostgreSQL ${version}: out of community support`,
      fix: 'Upgrade to PostgreSQL 14 or newer.',
      data: { version, versionNum: num },
    };
  return { id: 'server', status: 'pass', detail: `PostgreSQL ${version}`, data: { version, versionNum: num } };
}

function isLocal(host: string): boolean {
  return host.startsWith('/') || host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function checkTls(client: Client, settings: ConnectionSettings): DoctorCheck {
  // The socket of *our* connection tells the truth (pg_stat_ssl would describe a pooler's own connection).
  const stream = (client as unknown as { connection?: { stream?: Partial<TLSSocket> } }).connection?.stream;
  const encrypted = stream?.encrypted === true;
  const mode = settings.sslmode;
  if (!encrypted) {
    if (isLocal(settings.host))
      return {
        id: 'tls',
        status: 'pass',
        detail: `not encrypted (local connection, sslmode=${mode})`,
        data: { ssl: false, sslmode: mode },
      };
    return {
      id: 'tls',
      status: 'warn',
      detail: `not encrypted (sslmode=${mode}): passwords and state cross the network in clear text`,
      fix: 'Use sslmode=verify-full with sslrootcert=<CA file> (the server needs ssl=on).',
      data: { ssl: false, sslmode: mode },
    };
  }
  const protocol = stream.getProtocol?.() ?? 'TLS';
  const cipher = stream.getCipher?.()?.name;
  const rootCert = settings.sslRootCert !== undefined || settings.sslRootCertSystem === true;
  const ca = settings.sslRootCert !== undefined ? 'the given root certificate' : 'the system CAs';
  const data = { ssl: true, sslmode: mode, protocol, cipher, rootCert };
  const what = `${protocol}${cipher ? ` (${cipher})` : ''}`;
  switch (mode) {
    case 'verify-full':
      return {
        id: 'tls',
        status: 'pass',
        detail: `${what}; certificate verified against ${ca}, host name checked`,
        data,
      };
    case 'verify-ca':
      return {
        id: 'tls',
        status: 'pass',
        detail: `${what}; certificate verified against ${ca}, host name NOT checked (verify-ca)`,
        data,
      };
    default:
      if (mode === 'require' && settings.sslRootCert)
        return {
          id: 'tls',
          status: 'pass',
          detail: `${what}; certificate verified against the root certificate (require + sslrootcert, as libpq)`,
          data,
        };
      if (isLocal(settings.host))
        return {
          id: 'tls',
          status: 'pass',
          detail: `${what}; server not authenticated (sslmode=${mode}, local connection)`,
          data,
        };
      return {
        id: 'tls',
        status: 'warn',
        detail: `${what}; the server is NOT authenticated (sslmode=${mode}): a man in the middle could read everything`,
        fix: 'Use sslmode=verify-full with sslrootcert=<CA file that signed the server certificate>.',
        data,
      };
  }
}

async function checkRole(client: Client): Promise<{ check: DoctorCheck; user: string; canCreateSchema: boolean }> {
  const { rows } = await client.query<{
    user: string;
    superuser: boolean;
    createdb: boolean;
    db_create: boolean;
    db: string;
  }>(
    `SELECT current_user AS user, r.rolsuper AS superuser, r.rolcreatedb AS createdb,
            has_database_privilege(current_database(), 'CREATE') AS db_create, current_database() AS db
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const r = rows[0]!;
  const traits = [
    r.superuser ? 'superuser' : undefined,
    r.db_create ? `may create schemas in ${r.db}` : `may not create schemas in ${r.db}`,
  ].filter(Boolean);
  return {
    check: {
      id: 'role',
      status: 'pass',
      detail: `role ${r.user} (${traits.join(', ')})`,
      data: { user: r.user, superuser: r.superuser, createSchema: r.db_create },
    },
    user: r.user,
    canCreateSchema: r.db_create,
  };
}

/** A name as it must be typed in SQL (printed in fixes, never executed here): quoted only when needed. */
function sqlName(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

const DML = ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] as const;

async function checkRights(
  client: Client,
  adapter: string,
  target: ResolvedTarget,
  user: string,
  canCreateSchema: boolean,
): Promise<{ check: DoctorCheck; installed: boolean }> {
  const id = `rights:${adapter}`;
  const schema = target.schema;
  const qs = sqlName(schema);
  const role = sqlName(user);
  const tables = targetTables(target);
  const ns = await client.query<{ usage: boolean; create: boolean }>(
    `SELECT has_schema_privilege(oid, 'USAGE') AS usage, has_schema_privilege(oid, 'CREATE') AS create
       FROM pg_namespace WHERE nspname = $1`,
    [schema],
  );
  const s = ns.rows[0];
  if (!s) {
    if (canCreateSchema)
      return {
        check: {
          id,
          status: 'pass',
          detail: `schema ${schema} does not exist yet; this role can create it (pgstate migrate)`,
        },
        installed: false,
      };
    return {
      check: {
        id,
        status: 'fail',
        code: 'PERMISSION_DENIED',
        detail: `schema ${schema} does not exist and ${user} may not create schemas`,
        fix: `As an admin: CREATE SCHEMA ${qs}; GRANT USAGE, CREATE ON SCHEMA ${qs} TO ${role}; (or run pgstate migrate as an admin)`,
      },
      installed: false,
    };
  }
  if (!s.usage)
    return {
      check: {
        id,
        status: 'fail',
        code: 'PERMISSION_DENIED',
        detail: `${user} has no USAGE on schema ${schema}`,
        fix: `GRANT USAGE ON SCHEMA ${qs} TO ${role};`,
      },
      installed: false,
    };
  const { rows } = await client.query<{ name: string; sel: boolean; ins: boolean; upd: boolean; del: boolean }>(
    `SELECT c.relname AS name, has_table_privilege(c.oid, 'SELECT') AS sel, has_table_privilege(c.oid, 'INSERT') AS ins,
            has_table_privilege(c.oid, 'UPDATE') AS upd, has_table_privilege(c.oid, 'DELETE') AS del
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p')`,
    [schema, tables],
  );
  const missingTables = tables.filter((t) => !rows.some((r) => r.name === t));
  const lacking = rows.filter((r) => !(r.sel && r.ins && r.upd && r.del));
  const installed = rows.length > 0;
  if (lacking.length) {
    const names = lacking.map((r) => `${qs}.${sqlName(r.name)}`).join(', ');
    const missing = lacking.flatMap((r) =>
      DML.filter((_, i) => ![r.sel, r.ins, r.upd, r.del][i]).map((p) => `${p} on ${r.name}`),
    );
    return {
      check: {
        id,
        status: 'fail',
        code: 'PERMISSION_DENIED',
        detail: `${user} lacks ${missing.join(', ')} in schema ${schema}`,
        fix: `GRANT SELECT, INSERT, UPDATE, DELETE ON ${names} TO ${role};`,
      },
      installed,
    };
  }
  if (missingTables.length && !s.create)
    return {
      check: {
        id,
        status: 'fail',
        code: 'PERMISSION_DENIED',
        detail: `tables ${missingTables.join(', ')} are missing in schema ${schema} and ${user} may not create them`,
        fix: `GRANT CREATE ON SCHEMA ${qs} TO ${role}; (or run pgstate migrate as an admin)`,
      },
      installed,
    };
  const detail = installed
    ? `${user} can read and write ${rows.map((r) => `${schema}.${r.name}`).join(', ')}${s.create ? '' : ' (no CREATE: an admin runs migrations)'}`
    : `${user} can create tables in schema ${schema}`;
  return { check: { id, status: 'pass', detail }, installed };
}

async function checkMigrations(
  pool: Pool,
  selected: Selected,
  internalSchema: string | undefined,
  strict: boolean,
  installed: boolean,
): Promise<DoctorCheck> {
  const { definition, resolved, target } = selected;
  const id = `migrations:${definition.name}`;
  const command = migrateCommand(selected);
  try {
    // A table of another layout's shape: following the usual advice would migrate the wrong layout onto it.
    await assertLayout(pool, target);
  } catch (error) {
    if (!(error instanceof LayoutMismatchError)) {
      const e = toPgStateError(error);
      return { id, status: 'fail', code: e.code, detail: e.message, fix: e.fix };
    }
    return {
      id,
      status: strict ? 'fail' : 'warn',
      code: 'BAD_SETTING',
      detail: error.message,
      fix: `Use --layout ${error.found}: pgstate doctor ${targetFlags(selected, error.found)}; ${migrateCommand(selected, error.found)} adopts it.`,
      data: { config: resolved.config, layout: resolved.layout, found: error.found, table: error.table },
    };
  }
  try {
    const status = await migrationStatus(pool, target, { internalSchema });
    const pending = status.configs.flatMap((c) => c.pending.map((m) => `${c.config} ${m}`));
    const applied = status.configs.reduce((n, c) => n + c.applied.length, 0);
    const modified = status.configs.flatMap((c) =>
      c.applied.filter((a) => a.modified).map((a) => `${c.config} ${a.migration}`),
    );
    const shape = status.configs.flatMap((c) => c.shape);
    const data = { config: resolved.config, applied, pending, ...(shape.length ? { shape } : {}) };
    if (pending.length === 0 && shape.length)
      return {
        id,
        status: 'fail',
        code: 'MIGRATIONS_PENDING',
        detail: `journal up to date, but the tables are not as pgstate needs them: ${shape.join('; ')}`,
        fix: 'Restore what is missing (a column dropped or a table changed by hand), then run pgstate doctor again.',
        data,
      };
    if (pending.length === 0 && modified.length)
      return {
        id,
        status: 'warn',
        detail: `applied migrations differ from this pgstate version’s files: ${modified.join(', ')}`,
        fix: 'Upgrade or downgrade pgstate to the version that migrated this database.',
        data,
      };
    if (pending.length === 0) return { id, status: 'pass', detail: `${resolved.config} up to date`, data };
    const adapterApplied = status.configs.find((c) => c.config === resolved.config)?.applied.length ?? 0;
    if (!strict && adapterApplied === 0 && !installed)
      return {
        id,
        status: 'warn',
        detail: `${resolved.config} not set up yet (fine if you do not use ${definition.name})`,
        fix: `${command} (or let the adapter create its tables on first use)`,
        data,
      };
    return {
      id,
      status: 'fail',
      code: 'MIGRATIONS_PENDING',
      detail: `${pending.length} migration(s) pending: ${pending.join(', ')}`,
      fix: `${command} (with a role that may create tables)`,
      data,
    };
  } catch (error) {
    const e = error instanceof PgStateError ? error : toPgStateError(error);
    return { id, status: 'fail', code: e.code, detail: e.message, fix: e.fix };
  }
}

async function checkPooler(client: Client, pool: Pool, settings: ConnectionSettings): Promise<DoctorCheck> {
  // Two client connections open at once always have two backends, unless a transaction-mode pooler hands both the
  // same server connection between transactions; one client may also see its backend change between statements.
  const other = await pool.connect();
  const mine: number[] = [];
  const theirs: number[] = [];
  const pidOf = async (c: Client) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  try {
    for (let i = 0; i < 3; i++) {
      mine.push(await pidOf(client));
      theirs.push(await pidOf(other));
    }
  } finally {
    other.release();
  }
  const transactionPooling = new Set(mine).size > 1 || new Set(theirs).size > 1 || mine.some((p) => theirs.includes(p));
  const { rows } = await client.query<{ port: number | null; app: string }>(
    "SELECT inet_server_port() AS port, current_setting('application_name') AS app",
  );
  const serverPort = rows[0]?.port ?? null;
  const appKept = rows[0]?.app === settings.applicationName;
  // With several hosts, compare with the one this connection reached.
  const reached = connectedHost(client) ?? settings;
  const viaProxy = serverPort !== null && !reached.host.startsWith('/') && serverPort !== reached.port;
  const data = { transactionPooling, serverPort, clientPort: reached.port, applicationNameKept: appKept };
  if (transactionPooling)
    return {
      id: 'pooler',
      status: 'warn',
      detail:
        'transaction pooling detected (PgBouncer or similar: the backend changed between transactions): session advisory locks, LISTEN/NOTIFY and SET do not persist',
      fix: 'pgstate’s leases and transaction locks work here; for tools that hold session locks or LISTEN (Meltano plugin/systemdb locks, PowerSync live updates) use a session-mode pool or a direct URL.',
      data,
    };
  if (viaProxy)
    return {
      id: 'pooler',
      status: 'pass',
      detail: `a proxy or session-mode pooler is in between (port ${reached.port} -> server port ${serverPort}); advisory locks and LISTEN work${appKept ? '' : '; application_name was not passed through'}`,
      data,
    };
  return { id: 'pooler', status: 'pass', detail: 'direct connection (no pooler detected)', data };
}

/** For adapters' checks: whether another URL's connections go through transaction pooling. */
async function probePooling(
  context: CommandContext,
  url: string,
): Promise<{ where: string; pooled: boolean } | { where: string; error: PgStateError }> {
  const settings = parseConnectionSettings(
    { url, applicationName: 'pgstate-doctor', maxConnections: 2 },
    { env: context.env },
  );
  const where = describeConnection(settings);
  const pool = createPool(settings);
  try {
    let client: Client;
    try {
      client = await pool.connect();
    } catch (error) {
      return { where, error: toPgStateError(error, settings) };
    }
    try {
      return { where, pooled: (await checkPooler(client, pool, settings)).data?.transactionPooling === true };
    } finally {
      client.release();
    }
  } finally {
    await pool.end();
  }
}

async function checkClock(client: Client): Promise<DoctorCheck> {
  const before = Date.now();
  const { rows } = await client.query<{ ms: string }>(
    'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::text AS ms',
  );
  const after = Date.now();
  const skew = Math.round(Number(rows[0]!.ms) - (before + after) / 2);
  const rtt = after - before;
  const data = { skewMs: skew, roundTripMs: rtt };
  if (Math.abs(skew) > 5000 + rtt)
    return {
      id: 'clock',
      status: 'warn',
      detail: `this machine’s clock is ${Math.abs(skew / 1000).toFixed(1)} s ${skew > 0 ? 'behind' : 'ahead of'} the server’s`,
      fix: 'Synchronize both clocks (NTP): lease expiry and timestamps assume they agree.',
      data,
    };
  return { id: 'clock', status: 'pass', detail: `clock skew ${skew} ms (round trip ${rtt} ms)`, data };
}
