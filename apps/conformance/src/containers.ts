/**
 * PostgreSQL in containers: testcontainers' PostgreSQL module on a local Docker (or Podman) engine.
 *
 * - Images: `pgstate-conformance/postgres:<major>`, built on this machine by scripts/peers/postgres-containers.sh, or
 *   any other template in PGSTATE_CONFORMANCE_IMAGE (`postgres:{major}` for the official images). Nothing is pulled
 *   unless PGSTATE_CONFORMANCE_PULL=1: an image that is not on the machine makes that major fall back to the next source.
 * - Traffic stays on this machine: only engines on a unix socket or a loopback TCP address are used, the server port is
 *   published on 127.0.0.1 only, and clients connect to 127.0.0.1.
 * - Ryuk (testcontainers' reaper) would have to be pulled, so it is off; instead every container carries the runner's
 *   pid and host name as labels, and `sweepContainers` removes those whose runner is gone (a killed run's leftovers).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { freeLoopbackPort } from '@pgstate/core';
import pg from 'pg';
import {
  addFixtures,
  MTLS_HBA,
  type RestartMode,
  type ServerTarget,
  type StartedServer,
  tlsFixture,
} from './server.js';

export const DEFAULT_IMAGE = 'pgstate-conformance/postgres:{major}';
const RUNNER_LABEL = 'org.pgstate.conformance.runner';
const HOST_LABEL = 'org.pgstate.conformance.host';
/** Where the harness's pg_hba.conf goes in the container (`-c hba_file=` works for every postgres image). */
const HBA_PATH = '/etc/pgstate_hba.conf';

export type ContainerNetwork = 'host' | 'published';

export interface ContainerSettings {
  /** The image for a major. */
  image(major: number): string;
  /** Whether a missing image may be pulled (PGSTATE_CONFORMANCE_PULL=1). */
  pull: boolean;
  /**
   * `host` on Linux (the container shares this machine's network namespace: no proxy between client and server),
   * `published` elsewhere (Docker Desktop's VM): a port published on 127.0.0.1. PGSTATE_CONFORMANCE_NETWORK overrides.
   */
  network: ContainerNetwork;
}

export function containerSettings(env: NodeJS.ProcessEnv = process.env): ContainerSettings {
  const template = env.PGSTATE_CONFORMANCE_IMAGE || DEFAULT_IMAGE;
  return {
    image: (major) => template.replaceAll('{major}', String(major)),
    pull: env.PGSTATE_CONFORMANCE_PULL === '1',
    network:
      (env.PGSTATE_CONFORMANCE_NETWORK ?? (process.platform === 'linux' ? 'host' : 'published')) === 'host'
        ? 'host'
        : 'published',
  };
}

type Endpoint = { socketPath: string } | { host: string; port: number };

function endpointOptions(endpoint: string): Endpoint {
  if (endpoint.startsWith('unix://')) return { socketPath: endpoint.slice('unix://'.length) };
  const u = new URL(endpoint.replace(/^tcp:/, 'http:'));
  return { host: u.hostname, port: Number(u.port || 2375) };
}

/** One Docker Engine API call (unversioned paths: every engine since 1.x answers them). */
export function engineRequest(
  endpoint: string,
  method: string,
  apiPath: string,
  timeoutMs = 30_000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...endpointOptions(endpoint), path: apiPath, method, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${method} ${apiPath} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Like `engineRequest`, but a status outside 2xx (and 304, "already so") is an error with the engine's message. */
async function engine(endpoint: string, method: string, apiPath: string, timeoutMs?: number): Promise<string> {
  const { status, body } = await engineRequest(endpoint, method, apiPath, timeoutMs);
  if ((status >= 200 && status < 300) || status === 304) return body;
  let why = body.trim();
  try {
    why = (JSON.parse(body) as { message?: string }).message ?? why;
  } catch {}
  throw new Error(`container engine: ${method} ${apiPath.split('?')[0]}: ${status} ${why}`);
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/** Finds a local container runtime without touching testcontainers (which would take seconds to give up). */
export async function detectContainerRuntime(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ endpoint: string } | { reason: string }> {
  const ping = (endpoint: string) =>
    engineRequest(endpoint, 'GET', '/_ping', 500).then(
      (r) => (r.status === 200 ? undefined : `answered ${r.status}`),
      (error: Error) => error.message,
    );
  const host = env.DOCKER_HOST;
  if (host?.startsWith('tcp://') || host?.startsWith('http://')) {
    const u = new URL(host.replace(/^tcp:/, 'http:'));
    // A remote engine would publish the servers' ports on another machine: the suite's traffic must stay here.
    if (!LOOPBACK.has(u.hostname)) return { reason: `DOCKER_HOST=${host} is not on this machine (not used)` };
    const error = await ping(host);
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
    const error = await ping(`unix://${socketPath}`);
    if (!error) return { endpoint: `unix://${socketPath}` };
  }
  return { reason: `no container runtime answers at ${present.join(', ')}` };
}

/** Whether the engine has the image locally (so starting a container needs no pull). */
export async function imagePresent(endpoint: string, image: string): Promise<boolean> {
  const { status, body } = await engineRequest(endpoint, 'GET', `/images/${encodeURIComponent(image)}/json`);
  if (status === 200) return true;
  if (status === 404) return false;
  throw new Error(`container engine: inspecting image ${image}: ${status} ${body.trim()}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface ListedContainer {
  Id: string;
  Names?: string[];
  Labels?: Record<string, string>;
}

async function listOurs(endpoint: string): Promise<ListedContainer[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [RUNNER_LABEL, `${HOST_LABEL}=${os.hostname()}`] }));
  return JSON.parse(await engine(endpoint, 'GET', `/containers/json?all=1&filters=${filters}`)) as ListedContainer[];
}

async function remove(endpoint: string, id: string): Promise<void> {
  // A paused container cannot be killed by every engine version: thaw it first.
  await engineRequest(endpoint, 'POST', `/containers/${id}/unpause`).catch(() => {});
  const { status, body } = await engineRequest(endpoint, 'DELETE', `/containers/${id}?force=1&v=1`);
  if (status !== 204 && status !== 404)
    throw new Error(`container engine: removing ${id.slice(0, 12)}: ${status} ${body}`);
}

/**
 * Removes this host's conformance containers whose runner process is gone (SIGKILLed runs), or, with `runnerPid`,
 * every container of that runner. Returns the short ids removed.
 */
export async function sweepContainers(endpoint: string, runnerPid?: number): Promise<string[]> {
  const removed: string[] = [];
  for (const c of await listOurs(endpoint)) {
    const owner = Number(c.Labels?.[RUNNER_LABEL]);
    const stale =
      runnerPid === undefined ? !(Number.isInteger(owner) && owner > 0 && alive(owner)) : owner === runnerPid;
    if (!stale) continue;
    await remove(endpoint, c.Id);
    removed.push(c.Id.slice(0, 12));
  }
  return removed;
}

/** The runner whose label a container gets: the conformance runner when there is one, else this process. */
function runnerPid(): number {
  return Number(process.env.PGSTATE_CONFORMANCE_RUNNER_PID) || process.pid;
}

async function waitUntilReady(url: string, deadlineMs: number): Promise<void> {
  let last: unknown;
  while (Date.now() < deadlineMs) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch (error) {
      last = error;
      await client.end().catch(() => {});
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`the server did not accept connections again: ${(last as Error)?.message}`);
}

const SIGNALS: Record<RestartMode, string> = { fast: 'SIGINT', immediate: 'SIGQUIT', kill: 'SIGKILL' };

/**
 * Starts PostgreSQL `major` from `image` with the fixtures every harness server has (TLS with run-time certificates,
 * the mTLS role, PgBouncer), listening on 127.0.0.1. The container keeps its data volume across `restart`.
 */
export async function startContainerServer(options: {
  endpoint: string;
  image: string;
  major: number;
  dir: string;
  pull?: boolean;
  network?: ContainerNetwork;
}): Promise<StartedServer> {
  const { endpoint, image, dir } = options;
  if (!options.pull && !(await imagePresent(endpoint, image)))
    throw new Error(`image ${image} is not on this machine and pulls are off (PGSTATE_CONFORMANCE_PULL=1 allows them)`);
  // testcontainers reads these when it first connects: the engine we detected, no Ryuk, ports reached on 127.0.0.1.
  process.env.DOCKER_HOST = endpoint;
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE = '127.0.0.1';
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');

  const network = options.network ?? containerSettings().network;
  /** The module publishes 5432 on every interface: here only on 127.0.0.1, or not at all with host networking. */
  class LoopbackPostgreSqlContainer extends PostgreSqlContainer {
    override async start() {
      if (network === 'host') this.hostConfig.PortBindings = {};
      for (const bindings of Object.values(this.hostConfig.PortBindings ?? {}) as { HostIp?: string }[][])
        for (const binding of bindings) binding.HostIp = '127.0.0.1';
      return super.start();
    }
  }

  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const { tls, tlsReason } = tlsFixture(dir);
  const password = randomBytes(18).toString('base64url');
  // A fixed host port (rather than an ephemeral one) stays the same when the container restarts.
  const port = await freeLoopbackPort();
  const hba = ['local all all trust', ...MTLS_HBA, 'host all all all scram-sha-256'].join('\n');
  // fsync off as for the local clusters: throwaway data, and a killed postgres loses nothing the kernel has.
  const command = ['postgres', '-c', `hba_file=${HBA_PATH}`, '-c', 'fsync=off', '-c', 'max_connections=200'];
  let container = new LoopbackPostgreSqlContainer(image)
    .withUsername('postgres')
    .withPassword(password)
    .withDatabase('postgres')
    .withLabels({ [RUNNER_LABEL]: String(runnerPid()), [HOST_LABEL]: os.hostname() })
    .withCopyContentToContainer([{ content: `${hba}\n`, target: HBA_PATH, mode: 0o644 }]);
  container =
    network === 'host'
      ? // PostgreSQL itself listens on 127.0.0.1:<port> of the host; PGPORT also reaches the module's pg_isready.
        container
          .withNetworkMode('host')
          .withEnvironment({ PGPORT: String(port) })
          .withCommand([...command, '-c', 'listen_addresses=127.0.0.1'])
      : container.withExposedPorts({ container: 5432, host: port }).withCommand(command);
  if (tls) container = container.withSSLCert(tls.caFile, tls.serverCertFile, tls.serverKeyFile);
  const started = await container.start();
  const id = started.getId();
  const adminUrl = `postgres://postgres:${password}@127.0.0.1:${port}/postgres?sslmode=disable`;
  const target: ServerTarget = {
    major: options.major,
    version: String(options.major),
    source: 'container',
    origin: `container ${image} (${id.slice(0, 12)}, ${network === 'host' ? 'host network' : 'published'} 127.0.0.1:${port})`,
    adminUrl,
    host: '127.0.0.1',
    port,
    container: { id, image, endpoint, network },
    tlsReason,
  };
  let bouncer: { stop(): Promise<void> } | undefined;
  try {
    bouncer = await addFixtures(target, dir, tls, { name: 'postgres', password });
  } catch (error) {
    await remove(endpoint, id).catch(() => {});
    throw error;
  }
  return {
    target,
    async restart(mode = 'fast') {
      await engine(endpoint, 'POST', `/containers/${id}/kill?signal=${SIGNALS[mode]}`);
      await engine(endpoint, 'POST', `/containers/${id}/wait`, 120_000);
      await engine(endpoint, 'POST', `/containers/${id}/start`);
      await waitUntilReady(adminUrl, Date.now() + 60_000);
    },
    async pause() {
      // The cgroup freezer gives up when a process is busy in the kernel at that moment ("unable to freeze"): retry.
      for (let attempt = 1; ; attempt++) {
        try {
          await engine(endpoint, 'POST', `/containers/${id}/pause`);
          return;
        } catch (error) {
          if (attempt >= 10 || !/unable to freeze/.test((error as Error).message)) throw error;
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
    },
    async unpause() {
      await engine(endpoint, 'POST', `/containers/${id}/unpause`);
    },
    async stop() {
      await bouncer?.stop();
      await remove(endpoint, id);
    },
  };
}
