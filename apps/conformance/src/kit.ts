/**
 * The conformance kit: `defineConformance({ adapter, lanes, setup, create, probes, tests })` turns one adapter suite
 * into a vitest `describe` per lane. Each lane gets a fresh database, a lane-specific connection (direct, TLS, mTLS,
 * PgBouncer, least privilege, or a peer lane) and probes that read the database directly as superuser.
 * A lane that cannot run here is registered as a skipped test named `not run: <reason>`, which the report shows red.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ConnectionFields } from '@pgstate/core';
import pg from 'pg';
import { afterAll, describe, inject, test } from 'vitest';
import { startContainerServer } from './containers.js';
import { type ChildHandle, type ChildResult, runProcesses, type SpawnOptions, spawnChild } from './processes.js';
import { installationOf, type RestartMode, type ServerTarget, type StartedServer, startServer } from './server.js';

export const BUILTIN_LANES = ['direct', 'tls-verify-full', 'mtls', 'pgbouncer', 'least-privilege'] as const;
export type BuiltinLane = (typeof BUILTIN_LANES)[number];

/** A lane driven by a real peer (a stock CLI, a real client): it connects like `via` and needs `requires()`. */
export interface PeerLane {
  name: string;
  via?: BuiltinLane;
  /** Returns why the lane cannot run on this machine (e.g. "pulumi not on PATH"), or undefined when it can. */
  requires?: () => string | undefined;
}
export type LaneSpec = BuiltinLane | PeerLane;

/** The run-wide context the runner hands to every suite (vitest `provide`). */
export interface ConformanceTarget {
  runDir: string;
  server: ServerTarget;
  /** CI mode only: the majors this run covers, the first one first (costly lanes run on that one alone). */
  ciMajors?: number[];
}

declare module 'vitest' {
  export interface ProvidedContext {
    conformanceTarget: ConformanceTarget;
  }
  interface TaskMeta {
    conformance?: { adapter: string; lane: string; notRun?: string; figures?: Record<string, number | string> };
  }
}

/** Where and how the adapter under test connects in one lane. */
export interface LaneTarget {
  lane: string;
  via: BuiltinLane;
  /** What a user would type: a libpq-style URL (sslmode, sslrootcert/sslcert/sslkey file paths). */
  url: string;
  /** The same as individual fields, with certificates as PEM text. */
  fields: ConnectionFields;
  database: string;
  user: string;
  /** Superuser URL to the same database, direct (no PgBouncer, no TLS). */
  adminUrl: string;
  server: ServerTarget;
}

export interface Faults {
  /** pg_terminate_backend on every session in the lane's database except the probes' own; returns how many. */
  terminateBackends(filter?: { user?: string; applicationName?: string }): Promise<number>;
  /**
   * Restarts the server (only in tests declared with `{ privateServer: true }`): PostgreSQL's fast or immediate
   * shutdown, or `kill` (SIGKILL, a crash; for a container `docker kill`, its data volume kept), then start again.
   */
  restartServer(mode?: RestartMode): Promise<void>;
  /** `docker pause` / `docker unpause` of the server (tests declared with `{ privateServer: 'container' }`). */
  pauseServer(): Promise<void>;
  unpauseServer(): Promise<void>;
}

export interface SuiteContext<A, P> {
  /** A fresh adapter instance for this test (closed after it). */
  adapter: A;
  /** Another adapter instance on the same lane (e.g. a second writer), closed after the test. */
  create(): Promise<A>;
  probes: P;
  /** Superuser pool on the lane's database, direct. Probes use it; tests may too. */
  admin: pg.Pool;
  lane: LaneTarget;
  faults: Faults;
  /** `node <script>` children that get PGSTATE_LANE (JSON of the lane target) in their environment. */
  spawn(script: string, options?: SpawnOptions): ChildHandle;
  runProcesses(count: number, script: string, options?: { args?: (i: number) => string[] }): Promise<ChildResult[]>;
  onCleanup(fn: () => unknown): void;
  /** Reports a measured figure (e.g. seconds until writes resumed) in the report's cell and summary; never asserted. */
  figure(name: string, value: number | string): void;
}

export interface TestOptions {
  /** Only these lanes (others do not list the test). */
  lanes?: string[];
  /**
   * Run on a private server of the same version, so the test may restart it; `'container'`: it must be a container
   * (for `pauseServer`), and the test is NOT RUN where this version does not come from a container.
   */
  privateServer?: boolean | 'container';
  timeout?: number;
}

export interface ConformanceSpec<A, P> {
  adapter: string;
  lanes: readonly LaneSpec[];
  /** Runs as superuser on the lane's fresh database before the lane connects (migrations, as an admin would). */
  setup?(admin: pg.Pool, lane: LaneTarget): unknown;
  create(lane: LaneTarget): A | Promise<A>;
  close?(adapter: A): unknown;
  probes(admin: pg.Pool): P;
  tests(t: { test(name: string, fn: (ctx: SuiteContext<A, P>) => unknown, options?: TestOptions): void }): void;
}

const laneName = (l: LaneSpec) => (typeof l === 'string' ? l : l.name);
const laneVia = (l: LaneSpec): BuiltinLane => (typeof l === 'string' ? l : (l.via ?? 'direct'));
const ADMIN_APP = 'pgstate-conformance-probe';

function withDatabase(url: string, database: string, app = ADMIN_APP): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  u.searchParams.set('application_name', app);
  return u.toString();
}

/** Why a built-in lane cannot run against this server, or undefined. */
export function laneUnavailable(via: BuiltinLane, server: ServerTarget): string | undefined {
  if ((via === 'tls-verify-full' || via === 'mtls') && !server.tls) return server.tlsReason ?? 'no TLS fixture';
  if (via === 'pgbouncer' && !server.pgbouncer) return `PgBouncer: ${server.pgbouncerReason ?? 'not started'}`;
  return undefined;
}

/** A peer on PATH, for `requires`: `requires: () => needCommand('pulumi')`. */
export function needCommand(command: string): string | undefined {
  const found = (process.env.PATH ?? '')
    .split(path.delimiter)
    .some((dir) => dir && fs.existsSync(path.join(dir, command)));
  return found ? undefined : `${command} is not installed (not on PATH)`;
}

interface LaneDb {
  name: string;
  admin: pg.Pool;
  target: LaneTarget;
  drop(): Promise<void>;
}

/** Creates the lane's database (and role for least privilege) on `server` and builds the connection target. */
export async function openLane(
  server: ServerTarget,
  lane: string,
  via: BuiltinLane,
  prefix: string,
  setup?: (admin: pg.Pool, lane: LaneTarget) => unknown,
): Promise<LaneDb> {
  const rand = randomBytes(4).toString('hex');
  const name = `${prefix
    .replace(/[^a-z0-9]+/gi, '_')
    .toLowerCase()
    .slice(0, 40)}_${rand}`;
  const root = new pg.Client({ connectionString: withDatabase(server.adminUrl, 'postgres') });
  await root.connect();
  try {
    await root.query(`CREATE DATABASE "${name}"`);
  } finally {
    await root.end();
  }
  const adminUrl = withDatabase(server.adminUrl, name);
  const admin = new pg.Pool({ connectionString: adminUrl, max: 4 });
  admin.on('error', () => {});
  const su = new URL(server.adminUrl);
  const superuser = decodeURIComponent(su.username);
  const superPassword = decodeURIComponent(su.password);
  let user = superuser;
  let password: string | undefined = superPassword;
  const target: LaneTarget = {
    lane,
    via,
    url: '',
    fields: {},
    database: name,
    user,
    adminUrl,
    server,
  };
  let role: string | undefined;
  const drop = async () => {
    await admin.end().catch(() => {});
    const c = new pg.Client({ connectionString: withDatabase(server.adminUrl, 'postgres') });
    await c.connect();
    try {
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      if (role) await c.query(`DROP ROLE IF EXISTS "${role}"`);
    } finally {
      await c.end();
    }
  };
  try {
    await setup?.(admin, target);
    if (via === 'least-privilege') {
      role = `lp_${rand}`;
      password = randomBytes(12).toString('hex');
      user = role;
      // DML only: CONNECT, USAGE on the schemas the admin created, row rights on their tables and sequences.
      await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`);
      await admin.query(`GRANT CONNECT ON DATABASE "${name}" TO "${role}"`);
      await admin.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
      await admin.query(`REVOKE CREATE, TEMPORARY ON DATABASE "${name}" FROM PUBLIC`);
      const { rows } = await admin.query<{ s: string }>(
        `SELECT nspname AS s FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'`,
      );
      for (const { s } of rows) {
        const q = `"${s.replaceAll('"', '""')}"`;
        await admin.query(`GRANT USAGE ON SCHEMA ${q} TO "${role}"`);
        await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${q} TO "${role}"`);
        await admin.query(`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA ${q} TO "${role}"`);
      }
    }
    let host = server.host;
    let port = server.port;
    const query = new URLSearchParams();
    const fields: ConnectionFields = {};
    if (via === 'pgbouncer' && server.pgbouncer) {
      host = '127.0.0.1';
      port = server.pgbouncer.port;
      query.set('sslmode', 'disable');
    } else if ((via === 'tls-verify-full' || via === 'mtls') && server.tls) {
      host = server.tls.host;
      query.set('sslmode', 'verify-full');
      query.set('sslrootcert', server.tls.caFile);
      fields.sslRootCert = fs.readFileSync(server.tls.caFile, 'utf8');
      if (via === 'mtls') {
        user = server.tls.user;
        password = undefined;
        query.set('sslcert', server.tls.certFile);
        query.set('sslkey', server.tls.keyFile);
        fields.sslCert = fs.readFileSync(server.tls.certFile, 'utf8');
        fields.sslKey = fs.readFileSync(server.tls.keyFile, 'utf8');
      }
    } else {
      query.set('sslmode', 'disable');
    }
    const auth =
      password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
    target.url = `postgres://${auth}@${host}:${port}/${encodeURIComponent(name)}?${query}`;
    target.user = user;
    target.fields = {
      host,
      port,
      user,
      password,
      database: name,
      sslmode: query.get('sslmode') ?? 'disable',
      ...fields,
    };
    return { name, admin, target, drop };
  } catch (error) {
    await drop().catch(() => {});
    throw error;
  }
}

/** How to start another server like `server` (same version and source), or undefined when the harness cannot. */
function privateServerStarter(server: ServerTarget): ((dir: string) => Promise<StartedServer>) | undefined {
  const { container } = server;
  if (container) return (dir) => startContainerServer({ ...container, major: server.major, dir });
  const installation = installationOf(server);
  if (installation) return (dir) => startServer(installation, dir, server.source);
  return undefined;
}

function currentTarget(): ConformanceTarget {
  const target = inject('conformanceTarget');
  if (!target)
    throw new Error('no conformance target: run suites through `pnpm conformance` or vitest.suites.config.ts');
  return target;
}

/** Registers the suite: one `describe` per lane, named `<adapter> › <lane>`, with meta the runner reads. */
export function defineConformance<A, P>(spec: ConformanceSpec<A, P>): void {
  const { server, runDir } = currentTarget();
  for (const laneSpec of spec.lanes) {
    const lane = laneName(laneSpec);
    const via = laneVia(laneSpec);
    const meta = { conformance: { adapter: spec.adapter, lane } };
    const reason = laneUnavailable(via, server) ?? (typeof laneSpec === 'string' ? undefined : laneSpec.requires?.());
    describe(`${spec.adapter} › ${lane}`, { meta }, () => {
      if (reason) {
        test.skip(`not run: ${reason}`, { meta: { conformance: { ...meta.conformance, notRun: reason } } }, () => {});
        return;
      }
      let shared: Promise<LaneDb> | undefined;
      const registered: { name: string; fn: (ctx: SuiteContext<A, P>) => unknown; options: TestOptions }[] = [];
      spec.tests({ test: (name, fn, options = {}) => registered.push({ name, fn, options }) });
      for (const { name, fn, options } of registered) {
        if (options.lanes && !options.lanes.includes(lane)) continue;
        const startPrivate = options.privateServer ? privateServerStarter(server) : undefined;
        const why = !options.privateServer
          ? undefined
          : options.privateServer === 'container' && server.source !== 'container'
            ? `needs a container server (docker pause/kill); PostgreSQL ${server.major} comes from ${server.source} here (see provisioning)`
            : !startPrivate
              ? `needs a private server; the ${server.source} server cannot be restarted by the harness`
              : undefined;
        if (why) {
          test.skip(`${name} (not run: ${why})`, {
            meta: { conformance: { ...meta.conformance, notRun: why } },
          }, () => {});
          continue;
        }
        test(name, { meta, timeout: options.timeout ?? 120_000 }, async ({ task }) => {
          const cleanups: (() => unknown)[] = [];
          let privateServer: StartedServer | undefined;
          let db: LaneDb;
          if (startPrivate) {
            privateServer = await startPrivate(path.join(runDir, 'private', randomBytes(4).toString('hex')));
            cleanups.push(() => privateServer?.stop());
            db = await openLane(privateServer.target, lane, via, `${spec.adapter}_${lane}`, spec.setup);
          } else {
            shared ??= openLane(server, lane, via, `${spec.adapter}_${lane}`, spec.setup);
            db = await shared;
          }
          if (privateServer) cleanups.push(() => db.drop().catch(() => {}));
          const instances: A[] = [];
          const create = async () => {
            const a = await spec.create(db.target);
            instances.push(a);
            return a;
          };
          const ctx: SuiteContext<A, P> = {
            adapter: await create(),
            create,
            probes: spec.probes(db.admin),
            admin: db.admin,
            lane: db.target,
            faults: {
              async terminateBackends(filter = {}) {
                const { rows } = await db.admin.query<{ n: string }>(
                  `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
                    WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2
                      AND ($3::text IS NULL OR usename = $3) AND ($4::text IS NULL OR application_name = $4)`,
                  [db.name, ADMIN_APP, filter.user ?? null, filter.applicationName ?? null],
                );
                return Number(rows[0]?.n ?? 0);
              },
              async restartServer(mode = 'fast') {
                if (!privateServer?.restart)
                  throw new Error('restartServer needs a test declared with { privateServer: true }');
                await privateServer.restart(mode);
              },
              async pauseServer() {
                if (!privateServer?.pause)
                  throw new Error("pauseServer needs a test declared with { privateServer: 'container' }");
                await privateServer.pause();
              },
              async unpauseServer() {
                if (!privateServer?.unpause)
                  throw new Error("unpauseServer needs a test declared with { privateServer: 'container' }");
                await privateServer.unpause();
              },
            },
            spawn: (script, options = {}) => {
              const child = spawnChild(script, {
                ...options,
                pidDir: path.join(runDir, 'children'),
                env: { PGSTATE_LANE: JSON.stringify(db.target), ...options.env },
              });
              cleanups.push(() => child.kill('SIGKILL'));
              return child;
            },
            runProcesses: (count, script, options = {}) =>
              runProcesses(count, script, {
                ...options,
                pidDir: path.join(runDir, 'children'),
                env: { PGSTATE_LANE: JSON.stringify(db.target) },
              }),
            onCleanup: (fn) => cleanups.push(fn),
            figure: (figureName, value) => {
              const own = { ...meta.conformance, ...task.meta.conformance };
              task.meta.conformance = { ...own, figures: { ...own.figures, [figureName]: value } };
            },
          };
          try {
            await fn(ctx);
          } finally {
            for (const a of instances) await spec.close?.(a);
            for (const c of cleanups.reverse()) await c();
          }
        });
      }
      // The shared lane database goes when the lane's tests are done.
      afterAll(async () => {
        if (shared) await (await shared.catch(() => undefined))?.drop();
      });
    });
  }
}
