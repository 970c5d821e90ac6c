// Failover on a real primary + synchronous standby (lane `ha-failover`): for each adapter, and through `pgstate serve`,
// writers run against a multi-host URL (`...@127.0.0.1:P1,127.0.0.1:P2/db?target_session_attrs=read-write`), the
// primary is stopped with `pg_ctl stop -m immediate` mid-workload and the standby promoted. Checked: no acknowledged
// write is lost (synchronous_commit=on with a synchronous standby), writes resume with no restart of anything, every
// failure in the window is a retryable one (S3 503, a typed PgStateError) without a stack trace or the password, and
// no lock has two holders across the failover. The seconds until writes resume are reported as a figure, never
// asserted (beyond a generous give-up deadline). NOT RUN where PostgreSQL binaries with pg_basebackup are missing.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { isFailoverError, isPgStateError, parseConnectionSettings } from '@pgstate/core';
import { MeltanoStateStore } from '@pgstate/meltano';
import {
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  SaveOperationTag,
  SourceTable,
  syncRulesFromYaml,
  uuidForRow,
} from '@pgstate/powersync';
import { PulumiStateStore } from '@pgstate/pulumi';
import { migrate } from '@pgstate/schema';
import pg from 'pg';
import { expect, inject } from 'vitest';
import { type HaPair, haInstallation, startHaPair } from '../../src/ha.js';
import { defineConformance, type SuiteContext } from '../../src/kit.js';
import { needPgstateBin, spawnServe } from '../../src/serve.js';

const { runDir, server, ciMajors } = inject('conformanceTarget');
const installation = haInstallation(server);
/** How long writes may stay down after the failover before the test gives up (not a timing goal: that is 30 s). */
const GIVE_UP_MS = 90_000;
/** A stack frame as Node prints it. */
const STACK_FRAME = /\n\s+at \S.*(:\d+:\d+\)?|\(native\)|<anonymous>)/;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Why the lane cannot run here: no binaries for a pair, another major is CI's, or core refuses multi-host URLs. */
function laneUnavailable(): string | undefined {
  if (typeof installation === 'string') return installation;
  // Each test builds a pair and fails over: CI (npm test) pays for that on one major; `pnpm conformance` runs them all.
  if (ciMajors && ciMajors[0] !== server.major)
    return `CI runs the HA failover lane on one major (PostgreSQL ${ciMajors[0]}); \`pnpm conformance\` runs it on every version`;
  try {
    parseConnectionSettings('postgres://u:p@127.0.0.1:1,127.0.0.1:2/db?target_session_attrs=read-write', { env: {} });
    return undefined;
  } catch (error) {
    return `@pgstate/core does not accept a multi-host URL with target_session_attrs=read-write: ${(error as Error).message}`;
  }
}
const LANES = [{ name: 'ha-failover', via: 'direct' as const, requires: laneUnavailable }];

/** One HA pair per test, with the adapter's tables migrated on a database of its own. */
async function haDatabase(
  onCleanup: (fn: () => unknown) => void,
  migrateAs: (admin: pg.Pool, url: string) => Promise<unknown>,
): Promise<{ pair: HaPair; url: string; admin: () => pg.Pool }> {
  if (typeof installation === 'string') throw new Error(installation);
  const pair = await startHaPair(installation, path.join(runDir, `ha-${randomBytes(4).toString('hex')}`));
  onCleanup(() => pair.stop());
  const database = 'ha_failover';
  const root = new pg.Client({ connectionString: pair.adminUrl('postgres') });
  await root.connect();
  await root.query(`CREATE DATABASE ${database}`).finally(() => root.end());
  const admin = new pg.Pool({ connectionString: pair.adminUrl(database), max: 2 });
  await migrateAs(admin, pair.adminUrl(database)).finally(() => admin.end());
  // Probes read the current primary directly (after the failover: the promoted standby).
  const admin2 = () => {
    const pool = new pg.Pool({ connectionString: pair.adminUrl(database), max: 2 });
    pool.on('error', () => {});
    onCleanup(() => pool.end());
    return pool;
  };
  return { pair, url: pair.url(database), admin: admin2 };
}

interface Attempt {
  i: number;
  start: number;
  end: number;
  ok: boolean;
  /** What the failure looked like (status/code and message), for the report. */
  error?: string;
  retryable?: boolean;
}

/** Runs `write(i)` back to back until stopped, recording every attempt. */
function workload(
  write: (i: number) => Promise<void>,
  classify: (error: unknown) => { text: string; retryable: boolean },
) {
  const attempts: Attempt[] = [];
  let stopped = false;
  const done = (async () => {
    for (let i = 0; !stopped; i++) {
      const start = Date.now();
      try {
        await write(i);
        attempts.push({ i, start, end: Date.now(), ok: true });
      } catch (error) {
        const { text, retryable } = classify(error);
        attempts.push({ i, start, end: Date.now(), ok: false, error: text, retryable });
        await sleep(100); // a client's back-off: the window must not become a busy loop
      }
    }
  })();
  return {
    attempts,
    acked: () => attempts.filter((a) => a.ok).map((a) => a.i),
    async stop() {
      stopped = true;
      await done;
    },
  };
}

type Workload = ReturnType<typeof workload>;

interface FailoverFigures {
  /** Seconds from the primary's stop until a write that started after it succeeded (the "serves again" figure). */
  resumedAfterSeconds: number;
  /** Seconds from the primary's stop until `pg_ctl promote -w` returned. */
  promoteSeconds: number;
  acknowledged: number;
  failedInWindow: number;
  /** Failures that were not typed errors (pg's own, e.g. "Connection terminated unexpectedly"): never retryable. */
  untypedErrors: number;
  errorKinds: string;
}

/** The workload runs at least this long on each side of the failover (a few seconds per adapter, for CI's sake). */
const PHASE_MS = 1500;

/**
 * The failover itself: writers run a little, the primary stops, the standby is promoted, and writers run until each
 * has had a success that started after the stop and `settled(stoppedAt)` holds (bounded by GIVE_UP_MS), then a
 * little more.
 */
async function failOverUnder(
  pair: HaPair,
  writers: Workload[],
  settled: (primaryStoppedAt: number) => boolean = () => true,
): Promise<FailoverFigures> {
  const warm = Date.now() + PHASE_MS;
  while ((writers.some((w) => w.acked().length < 5) || Date.now() < warm) && Date.now() < warm + 20_000)
    await sleep(50);
  for (const w of writers) expect(w.acked().length, 'writes succeed before the failover').toBeGreaterThan(0);
  const { primaryStoppedAt, promotedAt } = await pair.failover();
  const resumedAt = (w: Workload) => w.attempts.find((a) => a.ok && a.start > primaryStoppedAt)?.end;
  const giveUp = primaryStoppedAt + GIVE_UP_MS;
  while ((writers.some((w) => resumedAt(w) === undefined) || !settled(primaryStoppedAt)) && Date.now() < giveUp)
    await sleep(50);
  const resumed = writers.map(resumedAt);
  expect(
    resumed.every((t) => t !== undefined),
    `writes resume within ${GIVE_UP_MS / 1000} s after the failover`,
  ).toBe(true);
  expect(settled(primaryStoppedAt), `the workload settles within ${GIVE_UP_MS / 1000} s after the failover`).toBe(true);
  await sleep(PHASE_MS);
  for (const w of writers) await w.stop();
  const failures = writers.flatMap((w) => w.attempts.filter((a) => !a.ok));
  return {
    resumedAfterSeconds: Math.max(...resumed.map((t) => ((t ?? 0) - primaryStoppedAt) / 1000)),
    promoteSeconds: (promotedAt - primaryStoppedAt) / 1000,
    acknowledged: writers.reduce((n, w) => n + w.acked().length, 0),
    failedInWindow: failures.length,
    untypedErrors: failures.filter((a) => a.error?.startsWith('untyped')).length,
    errorKinds: [...new Set(failures.map((a) => a.error?.split(':')[0] ?? '?'))].join(' | ') || 'none',
  };
}

/** Puts the figures in the report (the cell of this lane) and in the log. */
function report(
  ctx: { figure(name: string, value: number | string): void },
  label: string,
  figures: Record<string, number | string>,
): void {
  for (const [name, value] of Object.entries(figures)) ctx.figure(name, value);
  console.info(`[ha-failover] ${label}: ${JSON.stringify(figures)}`);
}

/** Every failure was retryable, and no failure text carries a stack frame or the database password. */
function expectCleanFailures(writers: Workload[], password: string): void {
  const failures = writers.flatMap((w) => w.attempts.filter((a) => !a.ok));
  expect
    .soft(
      failures.filter((a) => !a.retryable).map((a) => a.error),
      'non-retryable failures',
    )
    .toEqual([]);
  for (const a of failures) {
    expect.soft(a.error, 'a failure carries a stack trace').not.toMatch(STACK_FRAME);
    expect.soft(a.error, 'a failure carries the database password').not.toContain(password);
  }
}

/**
 * A typed pgstate error a caller may retry: the database unreachable or read-only for a moment (a QUERY_FAILED whose
 * cause is a failover: a cut connection or a read-only server), a lock lost or not obtained in the window.
 */
function classifyPgState(error: unknown): { text: string; retryable: boolean } {
  if (!isPgStateError(error)) return { text: `untyped ${String(error)}`.slice(0, 500), retryable: false };
  const text = `${error.code}: ${error.message}`.slice(0, 500);
  const retryable =
    ['UNREACHABLE', 'LOCK_LOST', 'LOCK_TIMEOUT'].includes(error.code) ||
    (error.code === 'QUERY_FAILED' && isFailoverError(error));
  return { text, retryable };
}

interface Tenure {
  owner: string;
  acquireStart: number;
  acquired: number;
  releaseStart: number;
  writes: { start: number; end: number }[];
}

/**
 * Two holders of a lock that lives in a committed row (a Pulumi lock file): a rival's acquisition that started and
 * finished while the holder's tenure was live (acquired, release not yet begun).
 */
function overlappingTenures(tenures: Tenure[]): string[] {
  return tenures.flatMap((held) =>
    tenures
      .filter((r) => r.owner !== held.owner && r.acquireStart >= held.acquired && r.acquired <= held.releaseStart)
      .map(
        (r) =>
          `${r.owner} acquired at ${r.acquired} while ${held.owner} held it (${held.acquired}..${held.releaseStart})`,
      ),
  );
}

/**
 * Two holders of a lock that may be lost without its holder knowing (a session advisory lock whose server went away,
 * a lease that expired): a write acknowledged under one owner's lock that started after a rival had acquired the lock
 * and ended before the rival let it go.
 */
function writesUnderRivalLock(tenures: Tenure[]): string[] {
  return tenures.flatMap((held) =>
    tenures
      .filter((r) => r.owner !== held.owner)
      .flatMap((r) =>
        held.writes
          .filter((w) => w.start >= r.acquired && w.end <= r.releaseStart)
          .map(
            (w) =>
              `${held.owner} wrote at ${w.start}..${w.end} while ${r.owner} held the lock (${r.acquired}..${r.releaseStart})`,
          ),
      ),
  );
}

/** Tenures whose acquisition started after the primary stopped: the lock works on the promoted standby. */
const tenuresAfter = (tenures: Tenure[], stoppedAt: number) => tenures.filter((t) => t.acquireStart > stoppedAt).length;

/** Contenders taking a lock in turns, each writing under it; a failure (the failover) just ends that tenure. */
function lockContenders(
  owners: string[],
  tenure: (owner: string, record: Tenure) => Promise<void>,
): { tenures: Tenure[]; stop(): Promise<void> } {
  const tenures: Tenure[] = [];
  let stopped = false;
  const loops = owners.map(async (owner) => {
    while (!stopped) {
      const record: Tenure = {
        owner,
        acquireStart: Date.now(),
        acquired: 0,
        releaseStart: Number.POSITIVE_INFINITY,
        writes: [],
      };
      try {
        await tenure(owner, record);
      } catch {
        await sleep(100);
      }
      if (record.acquired) tenures.push(record);
    }
  });
  return {
    tenures,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

// ------------------------------------------------------------------------------------------------ pgstate serve (Pulumi)

const WRITER = { accessKeyId: 'AKHAWRITER', secretAccessKey: 'ha-writer-secret-5d1e8c' };

/** `pgstate serve` on the multi-host URL (given in PGSTATE_URL, so no password on a command line). */
async function startServe(
  url: string,
  dir: string,
): Promise<{ endpoint: string; log: () => string; stop(): Promise<unknown> }> {
  const keysFile = path.join(dir, 'keys.json');
  fs.writeFileSync(keysFile, JSON.stringify({ keys: [{ ...WRITER, buckets: { 'pulumi-state': 'read-write' } }] }), {
    mode: 0o600,
  });
  const serve = await spawnServe(
    [
      '--json',
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--keys-file',
      keysFile,
      '--bucket',
      'pulumi-state=pulumi',
      '--shutdown-grace',
      '2',
    ],
    { PATH: process.env.PATH ?? '', HOME: dir, PGSTATE_URL: url },
  );
  return { endpoint: serve.url.origin, log: serve.log, stop: serve.stop };
}

/**
 * The S3 client's HTTP layer, recording the raw body of every error response (the SDK parses bodies away; a stack
 * trace in one must still be seen).
 */
function recordingHandler(errorBodies: string[]) {
  return {
    metadata: { handlerProtocol: 'http/1.1' },
    updateHttpClientConfig() {},
    httpHandlerConfigs: () => ({}),
    destroy() {},
    handle(request: {
      method: string;
      hostname: string;
      port?: number;
      path: string;
      query?: Record<string, string | string[] | null>;
      headers: Record<string, string>;
      body?: unknown;
    }) {
      const query = Object.entries(request.query ?? {})
        .flatMap(([k, v]) =>
          v === null
            ? [encodeURIComponent(k)]
            : [v].flat().map((x) => `${encodeURIComponent(k)}=${encodeURIComponent(x)}`),
        )
        .join('&');
      return new Promise((resolve, reject) => {
        const req = http.request(
          {
            method: request.method,
            host: request.hostname,
            port: request.port,
            path: query ? `${request.path}?${query}` : request.path,
            headers: request.headers,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
              const body = Buffer.concat(chunks);
              if ((res.statusCode ?? 0) >= 300) errorBodies.push(body.toString('utf8'));
              const headers: Record<string, string> = {};
              for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = [v].flat().join(', ');
              resolve({
                response: {
                  statusCode: res.statusCode ?? 0,
                  reason: res.statusMessage,
                  headers,
                  body: Readable.from([body]),
                },
              });
            });
          },
        );
        req.on('error', reject);
        const body = request.body;
        if (body instanceof Readable) body.pipe(req);
        else req.end(body as Buffer | string | undefined);
      });
    },
  };
}

defineConformance({
  adapter: 'pgstate serve',
  lanes: [
    {
      ...LANES[0]!,
      requires: () => laneUnavailable() ?? needPgstateBin(),
    },
  ],
  create: () => ({}),
  probes: () => ({}),
  tests({ test }) {
    test(
      'Pulumi checkpoints saved through the S3 gateway with a real S3 client: none acknowledged lost, only 503s in the window, serving again without a restart',
      async (ctx: SuiteContext<object, object>) => {
        const { onCleanup } = ctx;
        const { pair, url, admin } = await haDatabase(onCleanup, (pool) => migrate(pool, { adapter: 'pulumi' }));
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-ha-serve-'));
        onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
        const serve = await startServe(url, dir);
        onCleanup(() => serve.stop());
        const errorBodies: string[] = [];
        const s3 = new S3Client({
          endpoint: serve.endpoint,
          region: 'us-east-1',
          forcePathStyle: true,
          maxAttempts: 1, // every 503 of the window reaches the test
          credentials: WRITER,
          requestHandler: recordingHandler(errorBodies),
        });
        onCleanup(() => s3.destroy());
        const body = (i: number) =>
          Buffer.from(JSON.stringify({ version: 3, deployment: { i, pad: 'p'.repeat(2000) } }));
        // Three clients at once, each saving its own stacks: some request is in flight when the primary stops.
        const key = (client: number, i: number) => `.pulumi/stacks/app/c${client}-s${i}.json`;
        const clients = [0, 1, 2].map((client) =>
          workload(
            async (i) => {
              await s3.send(new PutObjectCommand({ Bucket: 'pulumi-state', Key: key(client, i), Body: body(i) }), {
                abortSignal: AbortSignal.timeout(30_000),
              });
            },
            (error) => {
              const e = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
              const status = e.$metadata?.httpStatusCode;
              return { text: `${status ?? e.name}: ${e.name} ${e.message}`.slice(0, 500), retryable: status === 503 };
            },
          ),
        );
        const figures = await failOverUnder(pair, clients);
        const probe = admin();
        const { rows } = await probe.query<{ key: string; md5: string }>(
          'SELECT key, md5(data) AS md5 FROM pulumi_state',
        );
        const stored = new Map(rows.map((r) => [r.key, r.md5]));
        const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
        const lost = clients.flatMap((saves, client) =>
          saves
            .acked()
            .filter((i) => stored.get(key(client, i)) !== md5(body(i)))
            .map((i) => key(client, i)),
        );
        report(ctx, 'pgstate serve', { ...figures, acknowledgedLost: lost.length });
        expect.soft(lost, 'acknowledged saves missing after the failover').toEqual([]);
        expectCleanFailures(clients, pair.password);
        for (const text of [...errorBodies, serve.log()]) {
          expect(text, 'a response body or the serve log carries a stack trace').not.toMatch(STACK_FRAME);
          expect(text).not.toContain(pair.password);
          expect(text).not.toContain(WRITER.secretAccessKey);
        }
      },
      { timeout: 240_000 },
    );
  },
});

// ------------------------------------------------------------------------------------------------ Pulumi (stack locks)

defineConformance({
  adapter: '@pgstate/pulumi',
  lanes: LANES,
  create: () => ({}),
  probes: () => ({}),
  tests({ test }) {
    test(
      'stack locks taken in turns across the failover: never two holders; checkpoints saved meanwhile are all there',
      async (ctx: SuiteContext<object, object>) => {
        const { onCleanup } = ctx;
        const { pair, url, admin } = await haDatabase(onCleanup, (pool) => migrate(pool, { adapter: 'pulumi' }));
        const stores = ['a', 'b', 'c'].map(() => new PulumiStateStore(url));
        onCleanup(() => Promise.all(stores.map((s) => s.close())));
        const [writerStore, lockA, lockB] = stores as [PulumiStateStore, PulumiStateStore, PulumiStateStore];
        const body = (i: number) => Buffer.from(`checkpoint ${i} `.repeat(100));
        const saves = workload(
          (i) => writerStore.blobs.put(`.pulumi/stacks/app/s${i}.json`, body(i)).then(() => {}),
          classifyPgState,
        );
        const byOwner = { a: lockA, b: lockB };
        // An acquisition whose reply the failover cut may still have committed: its lock file then holds the stack
        // with no contender knowing (as with the Pulumi CLI, only `pulumi cancel` frees it). Acquire errors other than
        // CONFLICT are counted (an upper bound of such acquisitions), not failures.
        let uncertain = 0;
        const locks = lockContenders(['a', 'b'], async (owner, record) => {
          const lock = await byOwner[owner as 'a' | 'b'].acquireLock('app', 'locked').catch((error: unknown) => {
            if (!isPgStateError(error, 'CONFLICT')) uncertain++;
            throw error;
          });
          record.acquired = Date.now();
          await sleep(150);
          record.releaseStart = Date.now();
          // A release cut by the failover is retried: until it lands, the lock file still holds the stack.
          for (let i = 0; ; i++) {
            try {
              await lock.release();
              break;
            } catch (error) {
              if (i > 600) throw error;
              await sleep(100);
            }
          }
        });
        // Settled: the lock changed hands on the promoted standby (or, after an uncertain acquisition, 5 s passed).
        let stopped = 0;
        const settled = (stoppedAt: number) => {
          stopped = stoppedAt;
          return tenuresAfter(locks.tenures, stoppedAt) >= 2 || (uncertain > 0 && Date.now() > stoppedAt + 5000);
        };
        const figures = await failOverUnder(pair, [saves], settled);
        await locks.stop();
        const probe = admin();
        const { rows } = await probe.query<{ key: string; md5: string }>(
          'SELECT key, md5(data) AS md5 FROM pulumi_state',
        );
        const stored = new Map(rows.map((r) => [r.key, r.md5]));
        const lost = saves
          .acked()
          .filter(
            (i) => stored.get(`.pulumi/stacks/app/s${i}.json`) !== createHash('md5').update(body(i)).digest('hex'),
          );
        report(ctx, '@pgstate/pulumi', {
          ...figures,
          acknowledgedLost: lost.length,
          lockTenures: locks.tenures.length,
          lockAcquireErrors: uncertain,
        });
        expect.soft(lost, 'acknowledged saves missing after the failover').toEqual([]);
        expectCleanFailures([saves], pair.password);
        expect(locks.tenures.length, 'the lock changed hands').toBeGreaterThan(2);
        expect.soft(overlappingTenures(locks.tenures), 'two holders of the stack lock').toEqual([]);
        // No lock file left behind by a tenure that ended. Only when the lock never changed hands after the failover
        // may one be left: the one an acquisition whose reply was cut wrote (it can only be from before the stop).
        const leftover = rows.filter((r) => r.key.startsWith('.pulumi/locks/')).length;
        if (tenuresAfter(locks.tenures, stopped) >= 2) expect(leftover, 'lock files left behind').toBe(0);
        else expect({ leftover, uncertain: uncertain > 0 }).toEqual({ leftover: 1, uncertain: true });
      },
      { timeout: 240_000 },
    );
  },
});

// ------------------------------------------------------------------------------------------------ Meltano

const singer = (bookmarks: Record<string, number>) => ({ singer_state: { bookmarks } });

defineConformance({
  adapter: '@pgstate/meltano',
  lanes: LANES,
  create: () => ({}),
  probes: () => ({}),
  tests({ test }) {
    for (const layout of ['seed', 'plugin'] as const) {
      const kind = layout === 'seed' ? 'lease rows' : 'session advisory locks';
      test(
        `${layout} layout: merges across the failover, none acknowledged lost; ${kind} never have two holders`,
        async (ctx: SuiteContext<object, object>) => {
          const { onCleanup } = ctx;
          const { pair, url, admin } = await haDatabase(onCleanup, (pool) =>
            migrate(pool, { adapter: 'meltano', layout }),
          );
          const open = () => {
            const store = new MeltanoStateStore({ url, layout, lockTimeoutSeconds: 3 });
            onCleanup(() => store.close());
            return store;
          };
          const writer = open();
          const merges = workload((i) => writer.merge('job', singer({ [`k${i}`]: i })), classifyPgState);
          const byOwner = { a: open(), b: open() };
          let n = 0;
          const locks = lockContenders(['a', 'b'], async (owner, record) => {
            const store = byOwner[owner as 'a' | 'b'];
            const lock = await store.acquireLock('locked', { timeoutSeconds: 1, retrySeconds: 0.05 });
            record.acquired = Date.now();
            try {
              for (let w = 0; w < 3; w++) {
                const start = Date.now();
                await store.merge('locked', singer({ [`${owner}${n++}`]: 1 }), { lock });
                record.writes.push({ start, end: Date.now() });
                await sleep(50);
              }
            } finally {
              record.releaseStart = Date.now();
              await lock.release().catch(() => {});
            }
          });
          const figures = await failOverUnder(
            pair,
            [merges],
            (stoppedAt) => tenuresAfter(locks.tenures, stoppedAt) >= 2,
          );
          await locks.stop();
          const probe = new MeltanoStateStore({ pool: admin(), layout });
          const view = await probe.get('job');
          const bookmarks = (view?.merged as ReturnType<typeof singer>)?.singer_state?.bookmarks ?? {};
          const lost = merges.acked().filter((i) => bookmarks[`k${i}`] !== i);
          report(ctx, `@pgstate/meltano ${layout}`, {
            ...figures,
            acknowledgedLost: lost.length,
            lockTenures: locks.tenures.length,
          });
          expect.soft(lost, 'acknowledged merges missing after the failover').toEqual([]);
          expectCleanFailures([merges], pair.password);
          expect(locks.tenures.length, 'the lock changed hands').toBeGreaterThan(2);
          expect.soft(writesUnderRivalLock(locks.tenures), 'writes under a lock another owner held').toEqual([]);
        },
        { timeout: 240_000 },
      );
    }
  },
});

// ------------------------------------------------------------------------------------------------ PowerSync

const YAML = `
bucket_definitions:
  global:
    data:
      - SELECT id, description FROM "%"
`;
const lsn = (i: number) => `1/${i.toString(16).padStart(8, '0').toUpperCase()}`;

defineConformance({
  adapter: '@pgstate/powersync',
  lanes: LANES,
  create: () => ({}),
  probes: () => ({}),
  tests({ test }) {
    test(
      'storage flushes and commits across the failover: no flushed row or committed checkpoint lost',
      async (ctx: SuiteContext<object, object>) => {
        const { onCleanup } = ctx;
        const factoryFor = (uri: string) =>
          new PgStateBucketStorageFactory({
            config: normalizeStorageConfig({ type: 'pgstate', uri, schema: 'powersync' }),
          });
        const { pair, url, admin } = await haDatabase(onCleanup, async (_pool, adminUrl) => {
          const factory = factoryFor(adminUrl);
          await factory.db.ensureMigrated();
          await factory[Symbol.asyncDispose]();
        });
        const factory = factoryFor(url);
        onCleanup(() => factory[Symbol.asyncDispose]());
        const stream = await factory.updateSyncRules(syncRulesFromYaml(YAML));
        const storage = factory.getInstance(stream);
        let writer = await storage.createWriter({ defaultSchema: 'public', zeroLSN: '0/0', storeCurrentData: true });
        const resolve = () =>
          writer.resolveTables({
            connection_id: 1,
            source: {
              connectionTag: SourceTable.DEFAULT_TAG,
              objectId: 1,
              schema: 'public',
              name: 'items',
              replicaIdColumns: [{ name: 'id' }],
            },
            idGenerator: () => '6544e3899293153fa7b38332',
          });
        let table = (await resolve()).tables[0]!;
        await writer.markAllSnapshotDone(lsn(0));
        let broken = false;
        const committed: number[] = [];
        const flushes = workload(async (i) => {
          if (broken) {
            // A writer whose transaction died with the old primary is replaced, as the replication job does.
            writer = await storage.createWriter({ defaultSchema: 'public', zeroLSN: '0/0', storeCurrentData: true });
            table = (await resolve()).tables[0]!;
            broken = false;
          }
          try {
            await writer.save({
              sourceTable: table,
              tag: SaveOperationTag.INSERT,
              after: { id: `r${i}`, description: `row ${i}` },
              afterReplicaId: uuidForRow({ id: `r${i}` }),
            });
            await writer.flush();
            if ((await writer.commit(lsn(i + 1))).checkpointCreated) committed.push(i);
          } catch (error) {
            broken = true;
            throw error;
          }
        }, classifyPgState);
        const figures = await failOverUnder(pair, [flushes]);
        const probe = admin();
        const { rows } = await probe.query<{ row_id: string }>(
          `SELECT DISTINCT row_id FROM powersync.bucket_data WHERE group_id = $1 AND op = 'PUT'`,
          [stream.replicationStreamId],
        );
        const present = new Set(rows.map((r) => r.row_id));
        const lost = flushes.acked().filter((i) => !present.has(`r${i}`));
        const last = committed.at(-1);
        const reader = factoryFor(pair.adminUrl('ha_failover'));
        const checkpointLsn = (await reader.getInstance(stream).getCheckpoint()).lsn;
        await reader[Symbol.asyncDispose]();
        report(ctx, '@pgstate/powersync', {
          ...figures,
          acknowledgedLost: lost.length,
          committed: committed.length,
          checkpointLsn: checkpointLsn ?? 'none',
        });
        expect.soft(lost, 'acknowledged flushes missing after the failover').toEqual([]);
        if (last !== undefined)
          expect((checkpointLsn ?? '') >= lsn(last + 1), 'the last committed checkpoint survives').toBe(true);
        expectCleanFailures([flushes], pair.password);
      },
      { timeout: 240_000 },
    );
  },
});
