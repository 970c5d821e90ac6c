/**
 * `pgstate serve` and `pgstate pulumi run`, run as the built binary: objects written through the endpoint land in the
 * Pulumi table, SIGTERM stops the server gracefully, and the stock pulumi CLI (when built by
 * scripts/peers/pulumi-cli.sh) creates a stack whose state lands in PostgreSQL.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { BIN, cleanEnv, runCli, spawnServe } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used' });
const PULUMI = path.join(
  process.env.PGSTATE_PEERS_DIR ?? path.join(os.homedir(), '.cache', 'pgstate-peers'),
  'bin',
  'pulumi',
);

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_serve');
});
afterAll(async () => {
  await db?.drop();
});

async function rows(sql: string): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

async function startServe(
  args: string[],
): Promise<{ child: ChildProcess; doc: { url: string; pulumiLogin: string }; exited: Promise<number | null> }> {
  const s = spawnServe<{ url: string; pulumiLogin: string }>(['--url', db.url, '--listen-port', '0', ...args], env);
  return { child: s.child, doc: await s.doc, exited: s.exited };
}

describe('pgstate serve', () => {
  it('serves the Pulumi table over S3 and stops gracefully on SIGTERM', async () => {
    const { child, doc, exited } = await startServe([]);
    expect(doc.pulumiLogin).toBe(`s3://pulumi-state?endpoint=${doc.url}&s3ForcePathStyle=true`);
    // No keys given: open mode on loopback, so an unsigned request is accepted.
    const put = await fetch(`${doc.url}/pulumi-state/.pulumi/meta.yaml`, { method: 'PUT', body: 'version: 1\n' });
    expect(put.status).toBe(200);
    const stored = await rows(
      "SELECT convert_from(data, 'UTF8') AS text FROM pulumi_state WHERE key = '.pulumi/meta.yaml'",
    );
    expect(stored).toEqual([{ text: 'version: 1\n' }]);
    const list = await (await fetch(`${doc.url}/pulumi-state?list-type=2&prefix=.pulumi/`)).text();
    expect(list).toContain('<Key>.pulumi/meta.yaml</Key>');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('requires signatures when keys are configured, and refuses non-loopback addresses without keys', async () => {
    const migrated = await runCli(['migrate', '--adapter', 'meltano', '--url', db.url], env);
    expect(migrated.code, migrated.stderr).toBe(0);
    const named = await startServe(['--bucket', 'state=pulumi', '--bucket', 'mel=meltano:state']);
    expect((await fetch(`${named.doc.url}/state/k`, { method: 'PUT', body: 'v' })).status).toBe(200);
    // The Meltano handler serves its own layout: an empty state backend lists nothing, other keys are refused.
    const listing = await fetch(`${named.doc.url}/mel?list-type=2&prefix=state/`);
    expect(listing.status).toBe(200);
    expect(await listing.text()).toContain('<KeyCount>0</KeyCount>');
    expect((await fetch(`${named.doc.url}/mel/elsewhere/x`, { method: 'PUT', body: 'v' })).status).toBe(400);
    named.child.kill('SIGTERM');
    expect(await named.exited).toBe(0);
    const envWithKeys = { ...env, PGSTATE_S3_ACCESS_KEY_ID: 'AK', PGSTATE_S3_SECRET_ACCESS_KEY: 'SK' };
    const signed = spawnServe(['--url', db.url, '--listen-port', '0'], envWithKeys);
    const started = await signed.doc;
    const unsigned = await fetch(`${started.url}/pulumi-state/x`, { method: 'PUT', body: 'x' });
    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toContain('<Code>AccessDenied</Code>');
    signed.child.kill('SIGTERM');
    const open = await runCli(['serve', '--url', db.url, '--listen-host', '0.0.0.0', '--listen-port', '0'], env);
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(/without access keys/);
    expect(open.stderr).toMatch(/--access-key/);
    const bad = await runCli(['serve', '--url', db.url, '--bucket', 'x=nothing'], env);
    expect(bad.code).toBe(2);
  });
});

describe('pgstate pulumi run', () => {
  const missing = fs.existsSync(PULUMI)
    ? undefined
    : `the pulumi CLI is not built at ${PULUMI} (scripts/peers/pulumi-cli.sh)`;
  if (missing) {
    it.skip(`NOT RUN: ${missing}`, () => {});
    return;
  }
  it('runs the stock pulumi CLI with its state in PostgreSQL and passes its exit code through', async () => {
    const project = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-pulumi-run-'));
    fs.writeFileSync(path.join(project, 'Pulumi.yaml'), 'name: runproj\nruntime: nodejs\n');
    const runEnv = {
      ...env,
      PULUMI_CONFIG_PASSPHRASE: 'pass',
      PULUMI_HOME: path.join(project, '.home'),
      PULUMI_SKIP_UPDATE_CHECK: 'true',
    };
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          [BIN, 'pulumi', 'run', '--url', db.url, '--pulumi', PULUMI, '--', ...args],
          {
            env: runEnv,
            cwd: project,
          },
        );
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
        });
        child.stderr.on('data', (d) => {
          out += d;
        });
        child.once('exit', (code) => resolve({ code, out }));
      });
    const init = await run(['stack', 'init', 'dev', '--non-interactive']);
    expect(init.code, init.out).toBe(0);
    const keys = await rows("SELECT key FROM pulumi_state WHERE key LIKE '.pulumi/stacks/runproj/%'");
    expect(keys.map((r) => r.key)).toContain('.pulumi/stacks/runproj/dev.json');
    const ls = await run(['stack', 'ls', '--json']);
    expect(ls.code, ls.out).toBe(0);
    expect(JSON.parse(ls.out.slice(ls.out.indexOf('['))).map((s: { name: string }) => s.name)).toContain('dev');
    const missingStack = await run(['stack', 'select', 'nope']);
    expect(missingStack.code).not.toBe(0);
    fs.rmSync(project, { recursive: true, force: true });
  });
});
