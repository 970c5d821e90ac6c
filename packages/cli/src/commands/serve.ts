import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { AdapterDefinition, BucketHandler } from '@pgstate/core';
import { isPgStateError, PgStateError } from '@pgstate/core';
import {
  type BucketAccess,
  type Credential,
  createGatewayMetrics,
  createS3Gateway,
  isLoopbackHost,
  jsonStderrLogger,
  type Logger,
  startMetricsListener,
  startPulumiBackend,
} from '@pgstate/s3-gateway';
import { migrate, migrationStatus } from '@pgstate/schema';
import { type Command, Option } from 'commander';
import { ADAPTERS, adapterNamed, configure, migrateCommand, type Selected } from '../adapters.js';
import type { CommandContext } from '../context.js';
import { UsageError } from '../errors.js';

/**
 * Access keys from `--keys-file` (or `PGSTATE_S3_KEYS`, the same JSON): `{"keys": [{"accessKeyId", "secretAccessKey",
 * "buckets": {"<bucket>|*": "read"|"read-write"}}]}`. A file readable by group or others is refused, as ssh refuses a
 * private key: the secrets in it are no longer secret. Errors never quote a secret.
 */
function loadKeys(file: string | undefined, fromEnv: string | undefined): Credential[] {
  if (file === undefined && fromEnv === undefined) return [];
  let text: string;
  const where = file !== undefined ? `The keys file ${file}` : 'PGSTATE_S3_KEYS';
  if (file !== undefined) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      throw new PgStateError('BAD_SETTING', `${where} does not exist or cannot be read.`, {
        fix: 'Give the path of a JSON keys file (see `pgstate serve --help`).',
      });
    }
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      throw new PgStateError('BAD_SETTING', `${where} is readable by group or others.`, {
        fix: `Run: chmod 0600 ${file}`,
      });
    }
    text = fs.readFileSync(file, 'utf8');
  } else {
    text = fromEnv ?? '';
  }
  const invalid = (detail: string) =>
    new PgStateError('BAD_SETTING', `${where} is not a valid keys document: ${detail}.`, {
      fix: 'Write {"keys": [{"accessKeyId": "...", "secretAccessKey": "...", "buckets": {"pulumi-state": "read"}}]}.',
    });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw invalid('not JSON');
  }
  const list = Array.isArray(doc) ? doc : (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list) || list.length === 0) throw invalid('no "keys" list');
  return list.map((entry, i) => {
    const e = (entry ?? {}) as Record<string, unknown>;
    if (typeof e.accessKeyId !== 'string' || !/^[A-Za-z0-9_.+=@-]{3,128}$/.test(e.accessKeyId)) {
      throw invalid(`keys[${i}].accessKeyId must be 3-128 letters, digits or _.+=@-`);
    }
    if (typeof e.secretAccessKey !== 'string' || e.secretAccessKey.length < 8) {
      throw invalid(`keys[${i}] (${e.accessKeyId}) needs a secretAccessKey of at least 8 characters`);
    }
    if (e.buckets !== undefined && (typeof e.buckets !== 'object' || e.buckets === null || Array.isArray(e.buckets))) {
      throw invalid(`keys[${i}] (${e.accessKeyId}).buckets must map bucket names to "read" or "read-write"`);
    }
    return {
      accessKeyId: e.accessKeyId,
      secretAccessKey: e.secretAccessKey,
      ...(e.buckets ? { buckets: e.buckets as Record<string, BucketAccess> } : {}),
    };
  });
}

import { withExamples } from '../help.js';

/** Adapters that can serve a bucket: `--bucket NAME=ADAPTER[:PREFIX][?setting=value&...]`. */
const HANDLERS = ADAPTERS.filter((a) => a.bucketHandler).map((a) => a.name);

interface ServeFlags {
  listen?: string;
  listenHost: string;
  listenPort: string;
  metricsListen?: string;
  shutdownGrace: string;
  accessKey?: string;
  secretKey?: string;
  keysFile?: string;
  bucket?: string[];
  tlsCert?: string;
  tlsKey?: string;
  maxObjectMb: string;
  logRequests: boolean;
}

interface BucketSpec {
  name: string;
  definition: AdapterDefinition;
  prefix: string;
  /** Per-bucket settings (`?schema=analytics&layout=native`), over the URL's. */
  settings: Record<string, string>;
}

function parseBuckets(specs: string[] = []): BucketSpec[] {
  const list = specs.length ? specs : ['pulumi-state=pulumi'];
  const seen = new Set<string>();
  return list.map((spec) => {
    const usage = () =>
      new UsageError(
        `--bucket "${spec}" is not NAME=ADAPTER[:PREFIX][?setting=value&...].`,
        `Use e.g. --bucket pulumi-state=pulumi, --bucket meltano-state=meltano:state or --bucket native=pulumi?layout=native (adapters: ${HANDLERS.join(', ')}).`,
      );
    const at = spec.indexOf('=');
    const name = at > 0 ? spec.slice(0, at) : '';
    const [target = '', query, ...more] = spec.slice(at + 1).split('?');
    const [handler = '', ...prefixParts] = target.split(':');
    const prefix = prefixParts.join(':').replace(/^\/+|\/+$/g, '');
    if (!name || !handler || more.length || !HANDLERS.includes(handler)) throw usage();
    const definition = adapterNamed(handler);
    if (prefix && !definition.bucketHandler?.prefix) throw usage();
    const settings: Record<string, string> = {};
    for (const [key, value] of new URLSearchParams(query ?? '')) {
      if (!definition.urlParams.includes(key)) {
        throw new UsageError(
          `--bucket "${spec}": ${handler} has no setting "${key}".`,
          `Settings of a ${handler} bucket: ${definition.urlParams.join(', ')}.`,
        );
      }
      settings[key] = value;
    }
    if (seen.has(name)) throw new UsageError(`Bucket "${name}" is given twice.`, 'Give each bucket once.');
    seen.add(name);
    return { name, definition, prefix, settings };
  });
}

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (host 127.0.0.1). */
function parseListen(value: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value.trim());
  if (!m) {
    throw new UsageError(
      `${flag} "${value}" is not HOST:PORT.`,
      `Use e.g. ${flag} 127.0.0.1:9000, ${flag} 0.0.0.0:9000 or ${flag} [::1]:9000 (port 0: any free port).`,
    );
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port: port(m[3]!, flag) };
}

/**
 * `--host`/`--port` are the PostgreSQL connection flags of every command; after `serve` they read like the address to
 * listen on, and silently changing the database port instead would be the worst outcome. Refuse them there.
 */
function refuseConnectionFlagsAfterServe(rawArgs: readonly string[]): void {
  const at = rawArgs.indexOf('serve');
  if (at === -1) return;
  const given = rawArgs.slice(at + 1).find((a) => /^--(host|port)(=|$)/.test(a));
  if (given) {
    const flag = given.split('=')[0]!;
    throw new UsageError(
      `${flag} after \`serve\` is ambiguous: it is the PostgreSQL connection's ${flag.slice(2)}, not where serve listens.`,
      `Use --listen HOST:PORT for the S3 endpoint; give PostgreSQL's ${flag} before \`serve\` (pgstate ${flag} ... serve) or in --url.`,
    );
  }
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new UsageError(`${flag} "${value}" is not a port number.`, `Use 0-65535 (0: any free port).`);
  return n;
}

/**
 * A bucket's configuration: its own settings (`--bucket NAME=ADAPTER?schema=...`, or the adapter group's flags for
 * `pulumi run`) over the URL's parameters, read by the adapter's settings parser as every other command reads them.
 */
async function bucketTarget(
  context: CommandContext,
  definition: AdapterDefinition,
  settings: Readonly<Record<string, string | undefined>>,
): Promise<Selected> {
  return configure(definition, settings, await context.settings(), context.env);
}

/** The adapter's bucket handler over the command's shared pool (it brings its tables up to date on first use). */
async function bucketHandler(context: CommandContext, selected: Selected, prefix: string): Promise<BucketHandler> {
  const factory = selected.definition.bucketHandler;
  if (!factory) throw new UsageError(`${selected.definition.name} cannot serve a bucket.`);
  return factory.create({ pool: await context.pool(), settings: selected.settings, prefix });
}

/**
 * `/ready`: PostgreSQL answers and every bucket's migrations are applied. Cached for a second, so probes cannot
 * load the database; a change of state is logged once, with the reason (the endpoint itself says nothing).
 */
async function readinessCheck(
  pool: Awaited<ReturnType<CommandContext['pool']>>,
  targets: Selected[],
  log: Logger,
): Promise<() => Promise<boolean>> {
  let cached: { at: number; ready: Promise<boolean> } | undefined;
  let last: string | undefined;
  const check = async (): Promise<boolean> => {
    let reason = 'ready';
    try {
      await pool.query('SELECT 1');
      for (const selected of targets) {
        if (!(await migrationStatus(pool, selected.target)).upToDate) {
          reason = `migrations pending for ${selected.definition.name}: run ${migrateCommand(selected)}`;
        }
      }
    } catch (error) {
      reason = `PostgreSQL unavailable (${(error as { code?: string }).code ?? 'error'})`;
    }
    if (reason !== last) {
      log({ level: reason === 'ready' ? 'info' : 'warn', msg: 'readiness', ready: reason === 'ready', reason });
      last = reason;
    }
    return reason === 'ready';
  };
  return () => {
    const now = Date.now();
    if (!cached || now - cached.at > 1000) cached = { at: now, ready: check() };
    return cached.ready;
  };
}

function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export function register(program: Command, context: CommandContext): void {
  const serve = program
    .command('serve')
    .description('serve an S3-compatible endpoint whose buckets keep their objects in PostgreSQL (Ctrl-C stops)')
    .addOption(
      new Option(
        '--listen <host:port>',
        'address of the S3 endpoint (default 127.0.0.1:9000; port 0: any free port)',
      ).env('PGSTATE_S3_LISTEN'),
    )
    .addOption(new Option('--listen-host <host>', 'address to listen on').default('127.0.0.1').env('PGSTATE_S3_HOST'))
    .addOption(
      new Option('--listen-port <port>', 'port to listen on (0: any free port)').default('9000').env('PGSTATE_S3_PORT'),
    )
    .addOption(
      new Option(
        '--metrics-listen <host:port>',
        'serve Prometheus metrics on this address (GET /metrics; off unless given)',
      ).env('PGSTATE_S3_METRICS_LISTEN'),
    )
    .option('--shutdown-grace <seconds>', 'on SIGTERM/SIGINT, how long in-flight requests may still run', '30')
    .addOption(new Option('--access-key <id>', 'access key id clients sign with').env('PGSTATE_S3_ACCESS_KEY_ID'))
    .addOption(
      new Option('--secret-key <secret>', 'secret access key (prefer the environment variable)').env(
        'PGSTATE_S3_SECRET_ACCESS_KEY',
      ),
    )
    .option(
      '--bucket <name=handler>',
      `serve a bucket: NAME=ADAPTER[:PREFIX][?schema=..&layout=..] (repeatable; adapters: ${HANDLERS.join(', ')}; default pulumi-state=pulumi)`,
      // No commander default: the description states the real one, which applies when no --bucket is given.
      (v: string, all: string[] | undefined) => [...(all ?? []), v],
    )
    .addOption(
      new Option('--keys-file <file>', 'JSON file of access keys with per-bucket rights (mode 0600)').env(
        'PGSTATE_S3_KEYS_FILE',
      ),
    )
    .option('--tls-cert <file>', 'PEM certificate: serve HTTPS')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--max-object-mb <n>', 'largest object accepted, in MiB', '256')
    .option('--no-log-requests', 'do not log one JSON line per request on stderr')
    .action(async (flags: ServeFlags) => {
      refuseConnectionFlagsAfterServe((program as unknown as { rawArgs?: string[] }).rawArgs ?? process.argv);
      const listen = flags.listen
        ? parseListen(flags.listen, '--listen')
        : { host: flags.listenHost, port: port(flags.listenPort, '--listen-port') };
      const metricsListen = flags.metricsListen ? parseListen(flags.metricsListen, '--metrics-listen') : undefined;
      const graceSeconds = Number(flags.shutdownGrace);
      if (!(graceSeconds >= 0 && graceSeconds <= 3600)) {
        throw new UsageError('--shutdown-grace must be between 0 and 3600 seconds.', 'E.g. --shutdown-grace 30.');
      }
      const buckets = parseBuckets(flags.bucket);
      if (!!flags.accessKey !== !!flags.secretKey) {
        throw new UsageError(
          '--access-key and --secret-key go together.',
          'Give both (or PGSTATE_S3_ACCESS_KEY_ID and PGSTATE_S3_SECRET_ACCESS_KEY).',
        );
      }
      if (!!flags.tlsCert !== !!flags.tlsKey)
        throw new UsageError('--tls-cert and --tls-key go together.', 'Give both.');
      const maxObjectMb = Number(flags.maxObjectMb);
      if (!(maxObjectMb > 0 && maxObjectMb <= 1000))
        throw new UsageError('--max-object-mb must be between 1 and 1000.', 'A PostgreSQL bytea holds at most 1 GiB.');
      if (flags.secretKey) (context as { secrets?: string[] }).secrets?.push(flags.secretKey);
      if (flags.secretKey && serve.getOptionValueSource('secretKey') === 'cli') {
        context.output.warn(
          '--secret-key on the command line is visible to other users (ps); prefer PGSTATE_S3_SECRET_ACCESS_KEY or --keys-file.',
        );
      }
      const credentials: Credential[] = loadKeys(flags.keysFile, context.env.PGSTATE_S3_KEYS);
      for (const c of credentials) (context as { secrets?: string[] }).secrets?.push(c.secretAccessKey);
      if (flags.accessKey && flags.secretKey) {
        credentials.unshift({ accessKeyId: flags.accessKey, secretAccessKey: flags.secretKey });
      }
      if (credentials.length === 0 && !isLoopbackHost(listen.host)) {
        throw new UsageError(
          `Refusing to listen on ${listen.host} without access keys.`,
          'Set --access-key/--secret-key (or PGSTATE_S3_ACCESS_KEY_ID / PGSTATE_S3_SECRET_ACCESS_KEY, or --keys-file), or listen on 127.0.0.1.',
        );
      }
      const handlers: Record<string, BucketHandler> = {};
      const targets = new Map<string, Selected>();
      for (const b of buckets) {
        const selected = await bucketTarget(context, b.definition, b.settings);
        targets.set(b.name, selected);
        handlers[b.name] = await bucketHandler(context, selected, b.prefix);
      }
      context.onClose(async () => {
        for (const h of Object.values(handlers)) await h.close?.();
      });
      const pool = await context.pool();
      const baseLogger: Logger = flags.logRequests
        ? jsonStderrLogger
        : (record) => record.msg !== 'request' && jsonStderrLogger(record);
      const metrics = metricsListen ? createGatewayMetrics({ pool }) : undefined;
      const readiness = await readinessCheck(pool, [...targets.values()], baseLogger);
      // Multipart parts wait in the gateway's tables: apply that migration set now (the Pulumi handler applies its own
      // on first use). A role that may not keeps serving: this warns once, and multipart requests answer 403 naming the
      // same fix.
      // The gateway's tables read the same settings as `pgstate migrate --adapter gateway` (e.g. `?schema=`), so both
      // commands agree on where they are.
      const gatewayTables = await bucketTarget(context, adapterNamed('gateway'), {});
      await migrate(pool, gatewayTables.target).catch((error: unknown) => {
        baseLogger({
          level: 'warn',
          msg: 'multipart uploads unavailable until the gateway tables are migrated',
          code: isPgStateError(error) ? error.code : undefined,
          fix: 'pgstate migrate --adapter gateway (as a role that may create tables)',
        });
      });
      const gateway = await createS3Gateway({
        buckets: handlers,
        credentials,
        host: listen.host,
        port: listen.port,
        tls:
          flags.tlsCert && flags.tlsKey
            ? { cert: fs.readFileSync(flags.tlsCert), key: fs.readFileSync(flags.tlsKey) }
            : undefined,
        uploads: { pool, ...(gatewayTables.settings.schema ? { schema: gatewayTables.settings.schema } : {}) },
        limits: { maxObjectBytes: Math.floor(maxObjectMb * 1024 * 1024), shutdownGraceMs: graceSeconds * 1000 },
        logger: metrics ? metrics.logger(baseLogger) : baseLogger,
        readiness,
      });
      // Closed by the signal handler below; this covers failures between here and there.
      context.onClose(() => gateway.close());
      let metricsUrl: string | undefined;
      if (metrics) {
        metrics.observe(gateway);
        const listener = await startMetricsListener(metrics, metricsListen);
        context.onClose(() => listener.close());
        metricsUrl = listener.url;
      }
      const o = context.output;
      const pulumiBucket = buckets.find((b) => b.definition.name === 'pulumi');
      const login = pulumiBucket
        ? `s3://${pulumiBucket.name}?endpoint=${gateway.url}&s3ForcePathStyle=true`
        : undefined;
      const meltanoBuckets = buckets
        .filter((b) => b.definition.name === 'meltano')
        .map((b) => ({ uri: `s3://${b.name}${b.prefix ? `/${b.prefix}` : ''}`, endpoint_url: gateway.url }));
      // What an S3 client needs besides the endpoint. The secret is never printed: the operator has it already.
      const firstKey = credentials[0]?.accessKeyId;
      const awsEnv: Record<string, string> = {
        AWS_ACCESS_KEY_ID: firstKey ?? 'pgstate',
        AWS_SECRET_ACCESS_KEY: firstKey ? '<the secret access key of that key>' : 'pgstate',
        AWS_REGION: 'us-east-1',
      };
      if (o.json) {
        o.emitJson({
          url: gateway.url,
          health: `${gateway.url}/health`,
          ready: `${gateway.url}/ready`,
          ...(metricsUrl ? { metrics: metricsUrl } : {}),
          awsEnv,
          buckets: buckets.map((b) => ({
            name: b.name,
            handler: b.definition.name,
            ...(b.prefix ? { prefix: b.prefix } : {}),
            layout: targets.get(b.name)!.settings.layout,
            ...(targets.get(b.name)!.settings.schema ? { schema: targets.get(b.name)!.settings.schema } : {}),
          })),
          pulumiLogin: login,
          meltanoStateBackends: meltanoBuckets,
          authentication: credentials.length ? 'sigv4' : 'open',
          accessKeys: credentials.map((c) => ({
            accessKeyId: c.accessKeyId,
            buckets: c.buckets ?? { '*': 'read-write' },
          })),
        });
      } else {
        o.line(`pgstate serve: listening on ${gateway.url}`);
        for (const b of buckets)
          o.line(
            `  bucket ${b.name} -> ${b.definition.name} ${targets.get(b.name)!.settings.layout} (${targets.get(b.name)!.resolved.schema})${b.prefix ? `, prefix ${b.prefix}` : ''}`,
          );
        if (login) {
          o.line(
            `  export AWS_ACCESS_KEY_ID=${awsEnv.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY='${awsEnv.AWS_SECRET_ACCESS_KEY}' AWS_REGION=${awsEnv.AWS_REGION}`,
          );
          o.line(`  pulumi login '${login}'`);
        } else {
          o.line(
            `  AWS_ACCESS_KEY_ID=${awsEnv.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY='${awsEnv.AWS_SECRET_ACCESS_KEY}' AWS_REGION=${awsEnv.AWS_REGION}`,
          );
        }
        o.line(
          `  health ${gateway.url}/health, readiness ${gateway.url}/ready${metricsUrl ? `, metrics ${metricsUrl}` : ''}`,
        );
        for (const m of meltanoBuckets)
          o.line(`  meltano state_backend: uri ${m.uri}, s3.endpoint_url ${m.endpoint_url}`);
        for (const c of credentials) {
          const rights = Object.entries(c.buckets ?? { '*': 'read-write' })
            .map(([b, a]) => `${b}=${a}`)
            .join(', ');
          o.line(`  access key ${c.accessKeyId}: ${rights}`);
        }
        if (credentials.length === 0)
          o.line(
            '  no access keys: any signature is accepted (loopback only); set --access-key/--secret-key to require one',
          );
      }
      const signal = await waitForSignal();
      o.note(`pgstate serve: ${signal}, refusing new requests, finishing in-flight ones (at most ${graceSeconds} s)`);
      // A second signal means: stop now.
      const again = () => {
        o.note('pgstate serve: second signal, exiting now');
        process.exit(signal === 'SIGINT' ? 130 : 143);
      };
      process.once('SIGINT', again);
      process.once('SIGTERM', again);
      await gateway.close();
    });
  withExamples(serve, [
    ['pgstate serve', 'bucket pulumi-state on http://127.0.0.1:9000, pgstate’s own PostgreSQL'],
    [
      'pgstate serve --url "$DATABASE_URL" --listen 127.0.0.1:9100 --bucket state=pulumi',
      'a named bucket on another port',
    ],
    ['pgstate serve --listen 0.0.0.0:9000 --metrics-listen 127.0.0.1:9464', 'Prometheus metrics on an internal port'],
    [
      'pgstate serve --bucket pulumi-state=pulumi --bucket meltano=meltano:state',
      'Pulumi and Meltano (s3://meltano/state)',
    ],
    [
      "pgstate serve --bucket native='pulumi?layout=native' --bucket elt='meltano:state?schema=analytics'",
      'Pulumi’s native table; Meltano state in schema analytics',
    ],
    [
      'PGSTATE_S3_ACCESS_KEY_ID=k PGSTATE_S3_SECRET_ACCESS_KEY=s pgstate serve --listen 0.0.0.0:9000',
      'listen beyond loopback (keys required)',
    ],
  ]);

  // `pgstate pulumi run`: joins the `pulumi` command group (created here if the Pulumi commands did not create it).
  const pulumi =
    program.commands.find((c) => c.name() === 'pulumi') ??
    program.command('pulumi').description('Pulumi state in PostgreSQL');
  const run = pulumi
    .command('run')
    .description(
      'run the stock pulumi CLI with its state in PostgreSQL (an S3 endpoint on a free loopback port for the run)',
    )
    .argument('[pulumi-args...]', 'arguments for pulumi, after --')
    .addOption(new Option('--pulumi <path>', 'the pulumi executable').env('PGSTATE_PULUMI_BIN'))
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (args: string[], flags: { pulumi?: string }) => {
      const executable = findPulumi(flags.pulumi, context.env);
      // The same settings as every `pgstate pulumi` command: the group's flags over the URL's parameters.
      const group = pulumi.opts<{ layout?: string; schema?: string; table?: string; keyPrefix?: string }>();
      const definition = adapterNamed('pulumi');
      const selected = await bucketTarget(context, definition, {
        layout: group.layout,
        schema: group.schema,
        table: group.table,
        key_prefix: group.keyPrefix,
      });
      const handler = await bucketHandler(context, selected, '');
      const pool = await context.pool();
      const backend = await startPulumiBackend({ handler, uploads: { pool } });
      context.onClose(async () => {
        await backend.close();
        await handler.close?.();
      });
      context.output.debug(`pulumi backend ${backend.backendUrl}`);
      const child = spawn(executable, args, {
        stdio: 'inherit',
        env: { ...context.env, ...backend.envVars } as NodeJS.ProcessEnv,
      });
      // Ctrl-C reaches pulumi through the terminal's process group; pulumi decides how to stop. SIGTERM sent to us
      // alone is passed on. Either way we wait for pulumi, then close the endpoint.
      const forward = (signal: NodeJS.Signals) => {
        if (signal === 'SIGTERM') child.kill('SIGTERM');
      };
      process.on('SIGINT', forward);
      process.on('SIGTERM', forward);
      try {
        const code = await new Promise<number>((resolve, reject) => {
          child.once('error', reject);
          child.once('exit', (exitCode, signal) => resolve(exitCode ?? (signal === 'SIGINT' ? 130 : 1)));
        });
        context.exitCode = code;
      } finally {
        process.off('SIGINT', forward);
        process.off('SIGTERM', forward);
      }
    });
  withExamples(run, [
    ['pgstate pulumi run -- stack init dev', 'create a stack; its state lands in PostgreSQL'],
    ['pgstate pulumi run --url "$DATABASE_URL" -- up --yes', 'update against a given server'],
    ['pgstate pulumi run -- stack ls', 'list stacks'],
  ]);
}

function findPulumi(explicit: string | undefined, env: Record<string, string | undefined>): string {
  if (explicit) {
    if (!fs.existsSync(explicit)) {
      throw new PgStateError('NOT_FOUND', `The pulumi executable ${explicit} does not exist.`, {
        fix: 'Pass the path of the pulumi CLI.',
      });
    }
    return explicit;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'pulumi');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {}
  }
  throw new PgStateError('NOT_FOUND', 'The pulumi CLI is not on PATH.', {
    fix: 'Install the Pulumi CLI, or pass --pulumi <path> (or PGSTATE_PULUMI_BIN).',
  });
}
