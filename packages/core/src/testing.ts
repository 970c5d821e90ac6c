/**
 * Test helpers for pgstate packages and apps: one throwaway cluster per test run, one database per test file.
 * An explicit `PGSTATE_TEST_DATABASE_URL` (superuser) always wins over starting a cluster.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { findLocalInstallations, type RunningCluster, startCluster } from './cluster.js';
import { PgStateError } from './errors.js';

/** Starts a cluster from the newest local binaries unless PGSTATE_TEST_DATABASE_URL is set. */
export async function startTestServer(): Promise<{ url: string; cluster?: RunningCluster }> {
  const explicit = process.env.PGSTATE_TEST_DATABASE_URL?.split(/\s+/).filter(Boolean)[0];
  if (explicit) return { url: explicit };
  const installation = findLocalInstallations()[0];
  if (!installation) {
    throw new PgStateError('UNREACHABLE', 'No PostgreSQL for tests: no local server binaries found.', {
      fix: 'Install PostgreSQL server binaries or set PGSTATE_TEST_DATABASE_URL to a superuser URL.',
    });
  }
  const cluster = await startCluster({ installation });
  return { url: cluster.url, cluster };
}

/** vitest globalSetup: `export { setup, teardown } from '@pgstate/core/testing'` style, provides `pgUrl`. */
export async function vitestGlobalSetup(project: {
  provide(key: string, value: unknown): void;
}): Promise<() => Promise<void>> {
  const server = await startTestServer();
  project.provide('pgUrl', server.url);
  return async () => {
    await server.cluster?.destroy();
  };
}

/** Creates a fresh database on the server behind `adminUrl` and returns its URL plus a drop function. */
export async function createTestDatabase(
  adminUrl: string,
  prefix = 'test',
): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`.toLowerCase();
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

export * from './testing-bucket-contract.js';
export * from './testing-pgbouncer.js';
export * from './testing-tls.js';
