/**
 * `pgstate serve --keys-file` / `PGSTATE_S3_KEYS`: several access keys with per-bucket rights, exercised with the real
 * AWS CLI (a read-only auditor, a Meltano key kept out of the Pulumi bucket). Secrets given by file or environment
 * never show in the process's command line (what `ps` shows), its output or its log; an open keys file is refused.
 */
import { type ChildProcess, execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cleanEnv, runCli, spawnServe, tempHome } from './helpers.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let home: string;
const env = cleanEnv({ PGSTATE_HOME: '/nonexistent/pgstate-must-not-be-used' });
const SECRETS = { auditor: 'auditor-secret-1234567', meltano: 'meltano-secret-7654321' };
const KEYS = {
  keys: [
    { accessKeyId: 'AKAUDITOR', secretAccessKey: SECRETS.auditor, buckets: { '*': 'read' } },
    { accessKeyId: 'AKMELTANO', secretAccessKey: SECRETS.meltano, buckets: { meltano: 'read-write' } },
  ],
};

function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, command))) return path.join(dir, command);
  }
  return undefined;
}

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'cli_serve_keys');
  home = tempHome();
  const migrated = await runCli(['migrate', '--adapter', 'meltano', '--url', db.url], env);
  expect(migrated.code, migrated.stderr).toBe(0);
});
afterAll(async () => {
  fs.rmSync(home, { recursive: true, force: true });
  await db?.drop();
});

function startServe(args: string[], extraEnv: Record<string, string> = {}) {
  return spawnServe(['--url', db.url, '--listen', '127.0.0.1:0', ...args], { ...env, ...extraEnv });
}

function aws(url: string, key: { id: string; secret: string }, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      'aws',
      ['--endpoint-url', url, ...args],
      {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: home,
          AWS_ACCESS_KEY_ID: key.id,
          AWS_SECRET_ACCESS_KEY: key.secret,
          AWS_DEFAULT_REGION: 'us-east-1',
          AWS_CONFIG_FILE: path.join(home, 'none'),
          AWS_SHARED_CREDENTIALS_FILE: path.join(home, 'none'),
        },
        timeout: 120_000,
      },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, out: stdout + stderr }),
    );
  });
}

function commandLine(child: ChildProcess): string {
  return fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
}

describe('pgstate serve with scoped keys', () => {
  it('refuses a keys file readable by others, and a malformed one, without printing a secret', async () => {
    const file = path.join(home, 'open-keys.json');
    fs.writeFileSync(file, JSON.stringify(KEYS));
    fs.chmodSync(file, 0o644);
    const open = await runCli(['serve', '--url', db.url, '--keys-file', file], env);
    expect(open.code).not.toBe(0);
    expect(open.stderr).toContain(`chmod 0600 ${file}`);
    const bad = await runCli(['serve', '--url', db.url], { ...env, PGSTATE_S3_KEYS: '{"keys": [{"accessKeyId": "x"}' });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/PGSTATE_S3_KEYS is not a valid keys document/);
    for (const r of [open, bad]) expect(r.stdout + r.stderr).not.toContain(SECRETS.auditor);
  });

  const missing = which('aws') ? undefined : 'the aws CLI is not on PATH';
  if (missing) {
    it.skip(`NOT RUN: ${missing}`, () => {});
    return;
  }

  it('an auditor key reads everything and writes nothing; a Meltano key stays in its bucket (keys file)', async () => {
    const file = path.join(home, 'keys.json');
    fs.writeFileSync(file, JSON.stringify(KEYS), { mode: 0o600 });
    fs.chmodSync(file, 0o600);
    const object = path.join(home, 'state.json');
    fs.writeFileSync(object, '{"completed":{}}');
    const s = startServe(['--bucket', 'pulumi-state=pulumi', '--bucket', 'meltano=meltano:state', '--keys-file', file]);
    try {
      const { url } = await s.doc;
      const auditor = { id: 'AKAUDITOR', secret: SECRETS.auditor };
      const meltano = { id: 'AKMELTANO', secret: SECRETS.meltano };
      const put = await aws(url, meltano, ['s3', 'cp', object, 's3://meltano/state/dev/state.json']);
      expect(put.code, put.out).toBe(0);
      const read = await aws(url, auditor, ['s3', 'cp', 's3://meltano/state/dev/state.json', '-']);
      // The Meltano handler stores the state in Meltano's own shape.
      expect([read.code, JSON.parse(read.out)]).toEqual([0, { completed: {}, partial: {} }]);
      const write = await aws(url, auditor, ['s3', 'cp', object, 's3://meltano/state/dev/state.json']);
      expect(write.code).not.toBe(0);
      expect(write.out).toContain('AccessDenied');
      const pulumi = await aws(url, meltano, ['s3', 'cp', object, 's3://pulumi-state/.pulumi/stacks/x/y.json']);
      expect(pulumi.code).not.toBe(0);
      expect(pulumi.out).toContain('AccessDenied');
      const ls = await aws(url, meltano, ['s3', 'ls']);
      expect(ls.out).toContain('meltano');
      expect(ls.out).not.toContain('pulumi-state');
      expect(commandLine(s.child)).not.toContain(SECRETS.auditor);
      expect(commandLine(s.child)).not.toContain(SECRETS.meltano);
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
    expect(s.output()).not.toContain(SECRETS.auditor);
    expect(s.output()).not.toContain(SECRETS.meltano);
    expect(s.output()).toContain('AKAUDITOR');
  });

  it('takes the same document from PGSTATE_S3_KEYS; the secret is in neither ps nor the log', async () => {
    const s = startServe(['--bucket', 'pulumi-state=pulumi'], {
      PGSTATE_S3_KEYS: JSON.stringify({ keys: [KEYS.keys[0]] }),
    });
    try {
      const { url } = await s.doc;
      const ls = await aws(url, { id: 'AKAUDITOR', secret: SECRETS.auditor }, ['s3', 'ls', 's3://pulumi-state/']);
      expect(ls.code, ls.out).toBe(0);
      const wrong = await aws(url, { id: 'AKAUDITOR', secret: 'not-the-secret-123' }, [
        's3',
        'ls',
        's3://pulumi-state/',
      ]);
      expect(wrong.out).toContain('SignatureDoesNotMatch');
      expect(commandLine(s.child)).not.toContain(SECRETS.auditor);
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
    expect(s.output()).not.toContain(SECRETS.auditor);
  });
});
