/**
 * Real S3 clients against the gateway over the real Pulumi bucket handler: Debian's awscli, s3cmd and rclone put,
 * list, get, copy and delete, byte-exact, including a 50 MB object that each of them uploads in parts; Terraform's
 * s3 backend with use_lockfile keeps its state and lock there. A client that
 * is not installed shows up as a skipped test named "NOT RUN: ..." (scripts/setup-peers.sh installs them).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BucketHandler } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import { createPulumiBucketHandler } from '@pgstate/pulumi';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createS3Gateway, type S3Gateway } from '../src/index.js';

const KEY = { accessKeyId: 'AKIDCLIENTS', secretAccessKey: 'clients/secret+key' };
const MB = 1024 * 1024;

function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, command);
    if (dir && fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

function run(command: string, args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { env, timeout: 240_000, maxBuffer: 16 * MB }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: pg.Pool;
let handler: BucketHandler;
let gateway: S3Gateway;
let dir: string;
let big: Buffer;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'gw_clients');
  pool = new pg.Pool({ connectionString: db.url, max: 6 });
  handler = createPulumiBucketHandler({ pool });
  gateway = await createS3Gateway({
    buckets: { 'pulumi-state': handler },
    credentials: [KEY],
    uploads: { pool },
    logger: false,
  });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-clients-'));
  big = randomBytes(50 * MB);
  fs.writeFileSync(path.join(dir, 'big.bin'), big);
  fs.writeFileSync(path.join(dir, 'small file.json'), '{"a": "ü"}');
  env = {
    PATH: process.env.PATH ?? '',
    HOME: dir,
    AWS_ACCESS_KEY_ID: KEY.accessKeyId,
    AWS_SECRET_ACCESS_KEY: KEY.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: path.join(dir, 'none'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'none'),
  };
});

afterAll(async () => {
  await gateway?.close();
  await handler?.close?.();
  await pool?.end();
  await db?.drop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** What the handler's table holds for a key (read through the adapter, not the gateway). */
async function stored(key: string): Promise<Buffer | undefined> {
  const found = await handler.getObject(key);
  return found ? Buffer.from(found.body) : undefined;
}

async function afterRoundTrip(prefix: string, local: string): Promise<void> {
  expect((await stored(`${prefix}/big.bin`))?.equals(big)).toBe(true);
  expect(fs.readFileSync(local).equals(big)).toBe(true);
  expect((await stored(`${prefix}/small file.json`))?.toString()).toBe('{"a": "ü"}');
  // No multipart leftovers once the uploads completed.
  const parts = await pool.query('SELECT count(*)::int AS n FROM pgstate_s3_upload_parts');
  expect(parts.rows[0].n).toBe(0);
}

const clients = [
  {
    name: 'awscli',
    command: 'aws',
    async roundTrip() {
      const aws = (...args: string[]) => run('aws', ['--endpoint-url', gateway.url, '--no-paginate', ...args], env);
      const s3 = 's3://pulumi-state/aws';
      expect((await aws('s3', 'cp', '--no-progress', path.join(dir, 'big.bin'), `${s3}/big.bin`)).code).toBe(0);
      expect(
        (await aws('s3', 'cp', '--no-progress', path.join(dir, 'small file.json'), `${s3}/small file.json`)).code,
      ).toBe(0);
      const ls = await aws('s3', 'ls', `${s3}/`);
      expect(ls.out).toContain('52428800 big.bin');
      expect(ls.out).toContain('small file.json');
      const local = path.join(dir, 'aws-back.bin');
      expect((await aws('s3', 'cp', '--no-progress', `${s3}/big.bin`, local)).code).toBe(0);
      await afterRoundTrip('aws', local);
      expect((await aws('s3', 'cp', '--no-progress', `${s3}/small file.json`, `${s3}/copied.json`)).code).toBe(0);
      expect((await stored('aws/copied.json'))?.toString()).toBe('{"a": "ü"}');
      const head = await aws('s3api', 'head-object', '--bucket', 'pulumi-state', '--key', 'aws/missing');
      expect(head.code).not.toBe(0);
      expect(head.out).toMatch(/404|Not Found/);
      expect((await aws('s3', 'rm', '--recursive', `${s3}/`)).code).toBe(0);
      expect(await handler.listObjects({ prefix: 'aws/', maxKeys: 10 })).toMatchObject({ objects: [] });
    },
  },
  {
    name: 's3cmd',
    command: 's3cmd',
    async roundTrip() {
      const host = new URL(gateway.url).host;
      const cfg = path.join(dir, 's3cfg');
      fs.writeFileSync(
        cfg,
        `[default]\naccess_key = ${KEY.accessKeyId}\nsecret_key = ${KEY.secretAccessKey}\nhost_base = ${host}\nhost_bucket = ${host}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n`,
      );
      const s3cmd = (...args: string[]) => run('s3cmd', ['-c', cfg, '--no-progress', ...args], env);
      const s3 = 's3://pulumi-state/s3cmd';
      expect((await s3cmd('put', '--multipart-chunk-size-mb=5', path.join(dir, 'big.bin'), `${s3}/big.bin`)).code).toBe(
        0,
      );
      expect((await s3cmd('put', path.join(dir, 'small file.json'), `${s3}/small file.json`)).code).toBe(0);
      const ls = await s3cmd('ls', `${s3}/`);
      expect(ls.out).toContain('52428800');
      expect(ls.out).toContain('s3://pulumi-state/s3cmd/small file.json');
      const local = path.join(dir, 's3cmd-back.bin');
      expect((await s3cmd('get', '--force', `${s3}/big.bin`, local)).code).toBe(0);
      await afterRoundTrip('s3cmd', local);
      expect((await s3cmd('cp', `${s3}/small file.json`, `${s3}/copied.json`)).code).toBe(0);
      expect((await stored('s3cmd/copied.json'))?.toString()).toBe('{"a": "ü"}');
      expect((await s3cmd('del', '--recursive', '--force', `${s3}/`)).code).toBe(0);
      expect(await handler.listObjects({ prefix: 's3cmd/', maxKeys: 10 })).toMatchObject({ objects: [] });
    },
  },
  {
    name: 'rclone',
    command: 'rclone',
    async roundTrip() {
      const renv = {
        ...env,
        RCLONE_CONFIG: path.join(dir, 'rclone.conf'),
        RCLONE_CONFIG_PG_TYPE: 's3',
        RCLONE_CONFIG_PG_PROVIDER: 'Other',
        RCLONE_CONFIG_PG_ACCESS_KEY_ID: KEY.accessKeyId,
        RCLONE_CONFIG_PG_SECRET_ACCESS_KEY: KEY.secretAccessKey,
        RCLONE_CONFIG_PG_ENDPOINT: gateway.url,
        RCLONE_CONFIG_PG_REGION: 'us-east-1',
        RCLONE_CONFIG_PG_FORCE_PATH_STYLE: 'true',
      };
      fs.writeFileSync(renv.RCLONE_CONFIG, '');
      const rclone = (...args: string[]) =>
        run('rclone', ['--s3-upload-cutoff', '5M', '--s3-chunk-size', '5M', ...args], renv);
      expect((await rclone('copyto', path.join(dir, 'big.bin'), 'pg:pulumi-state/rclone/big.bin')).code).toBe(0);
      expect(
        (await rclone('copyto', path.join(dir, 'small file.json'), 'pg:pulumi-state/rclone/small file.json')).code,
      ).toBe(0);
      const ls = await rclone('ls', 'pg:pulumi-state/rclone');
      expect(ls.out).toContain('52428800 big.bin');
      const local = path.join(dir, 'rclone-back.bin');
      expect((await rclone('copyto', 'pg:pulumi-state/rclone/big.bin', local)).code).toBe(0);
      await afterRoundTrip('rclone', local);
      // rclone compares sizes and MD5s (from the ETag) on its own.
      const check = await rclone('check', '--include', 'big.bin', dir, 'pg:pulumi-state/rclone');
      expect(check.code, check.out).toBe(0);
      expect(
        (await rclone('copyto', 'pg:pulumi-state/rclone/small file.json', 'pg:pulumi-state/rclone/copied.json')).code,
      ).toBe(0);
      expect((await stored('rclone/copied.json'))?.toString()).toBe('{"a": "ü"}');
      expect((await rclone('purge', 'pg:pulumi-state/rclone')).code).toBe(0);
      expect(await handler.listObjects({ prefix: 'rclone/', maxKeys: 10 })).toMatchObject({ objects: [] });
    },
  },
  {
    name: 'terraform',
    command: 'terraform',
    async roundTrip() {
      // Terraform's s3 backend with use_lockfile: its lock is a conditional PutObject (If-None-Match: *).
      const work = path.join(dir, 'tf');
      fs.mkdirSync(work, { recursive: true });
      const config = (value: string) =>
        fs.writeFileSync(
          path.join(work, 'main.tf'),
          `terraform {
  backend "s3" {
    bucket = "pulumi-state"
    key = "tf/terraform.tfstate"
    region = "us-east-1"
    endpoints = { s3 = "${gateway.url}" }
    use_path_style = true
    skip_credentials_validation = true
    skip_region_validation = true
    skip_requesting_account_id = true
    skip_metadata_api_check = true
    use_lockfile = true
  }
}
resource "terraform_data" "x" { input = "${value}" }
output "x" { value = terraform_data.x.output }
`,
        );
      const tfEnv = { ...env, TF_IN_AUTOMATION: '1', TF_INPUT: '0', TF_CLI_CONFIG_FILE: '/dev/null' };
      const tf = (...args: string[]) => run('terraform', [`-chdir=${work}`, ...args, '-no-color'], tfEnv);
      config('one');
      const init = await tf('init', '-input=false');
      expect(init.code, init.out).toBe(0);
      const apply = await tf('apply', '-auto-approve', '-input=false');
      expect(apply.code, apply.out).toBe(0);
      const state = JSON.parse((await stored('tf/terraform.tfstate'))!.toString());
      expect(state.outputs.x.value).toBe('one');
      expect(await stored('tf/terraform.tfstate.tflock')).toBeUndefined();
      // Someone else holds the lock: terraform must refuse, and the state must not change.
      await handler.putObject('tf/terraform.tfstate.tflock', Buffer.from('{"ID":"other"}'), { ifNoneMatch: '*' });
      config('two');
      const locked = await tf('apply', '-auto-approve', '-input=false', '-lock-timeout=0s');
      expect(locked.code).not.toBe(0);
      expect(locked.out).toMatch(/state lock/i);
      expect(JSON.parse((await stored('tf/terraform.tfstate'))!.toString()).outputs.x.value).toBe('one');
      await handler.deleteObject('tf/terraform.tfstate.tflock');
      const again = await tf('apply', '-auto-approve', '-input=false');
      expect(again.code, again.out).toBe(0);
      expect(JSON.parse((await stored('tf/terraform.tfstate'))!.toString()).outputs.x.value).toBe('two');
    },
  },
];

describe('real S3 clients through the gateway (Pulumi handler)', () => {
  for (const client of clients) {
    const missing = which(client.command)
      ? undefined
      : `${client.command} is not installed (scripts/setup-peers.sh installs it)`;
    if (missing) it.skip(`NOT RUN: ${client.name}: ${missing}`, () => {});
    else it(`${client.name}: round trip through the gateway`, () => client.roundTrip(), 300_000);
  }
});
