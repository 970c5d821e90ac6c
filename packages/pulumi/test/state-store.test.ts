import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  createPulumiBucketHandler,
  exportDiyDirectory,
  importDiyDirectory,
  PulumiBlobStore,
  PulumiStateStore,
} from '../src/index.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const closers: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'pulumi_state');
});
afterAll(async () => {
  for (const c of closers) await c.close();
  await db.drop();
});

async function sql(text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows;
  } finally {
    await client.end();
  }
}

function blobs(table: string, layout: 'seed' | 'native' = 'seed'): PulumiBlobStore {
  const store = new PulumiBlobStore({ connection: db.url, table, layout });
  closers.push(store);
  return store;
}

const urn = (project: string, stack: string, type: string, name: string) =>
  `urn:pulumi:${stack}::${project}::${type}::${name}`;

function deployment(project: string, stack: string, count: number, time = '2026-01-02T03:04:05.123Z') {
  const stackUrn = urn(project, stack, 'pulumi:pulumi:Stack', `${project}-${stack}`);
  const resources: Record<string, unknown>[] = [{ urn: stackUrn, custom: false, type: 'pulumi:pulumi:Stack' }];
  for (let i = 1; i < count; i++) {
    resources.push({
      urn: urn(project, stack, 'random:index/randomPet:RandomPet', `pet${i}`),
      custom: true,
      id: `pet-${i}`,
      type: 'random:index/randomPet:RandomPet',
      parent: stackUrn,
      dependencies: i > 1 ? [urn(project, stack, 'random:index/randomPet:RandomPet', `pet${i - 1}`)] : [],
      // An output that mentions a URN and nested objects: must not be counted or rewritten.
      outputs: { note: `{"urn":"x"} ${stackUrn}`, nested: [{ urn: 'not-a-resource' }] },
    });
  }
  return {
    version: 3,
    deployment: {
      manifest: { time, magic: 'm', version: 'v3.200.0' },
      secrets_providers: { type: 'passphrase', state: { salt: 'v1:abc' } },
      resources,
    },
  };
}

describe.each(['seed', 'native'] as const)('PulumiStateStore, %s layout', (layout) => {
  let store: PulumiStateStore;
  let blob: PulumiBlobStore;
  beforeAll(() => {
    blob = blobs(`state_${layout}`, layout);
    store = new PulumiStateStore(blob);
  });

  it('creates stacks, writes meta.yaml, refuses duplicates', async () => {
    await store.createStack('proj', 'dev', { tags: { team: 'a' } });
    expect(Buffer.from((await blob.read('.pulumi/meta.yaml'))!).toString()).toBe('version: 1\n');
    await expect(store.createStack('proj', 'dev')).rejects.toMatchObject({ code: 'CONFLICT' });
    const chk = await store.readCheckpoint('proj', 'dev');
    expect(chk).toEqual({ version: 3, checkpoint: { stack: 'organization/proj/dev', latest: null } });
    expect(await store.getTags('proj', 'dev')).toEqual({ team: 'a' });
    const [summary] = await store.listStacks('proj');
    expect(summary).toMatchObject({ name: 'organization/proj/dev', resourceCount: undefined, lastUpdate: undefined });
    expect(await store.lockHolders('proj', 'dev')).toEqual([]); // the create lock was released
  });

  it('imports and exports deployments; the index shows count and time without reading checkpoints', async () => {
    const dep = deployment('proj', 'dev', 4);
    await store.importDeployment('proj', 'dev', JSON.stringify(dep));
    expect(await store.exportDeployment('proj', 'dev')).toEqual(dep);
    const [summary] = await store.listStacks('proj');
    expect(summary).toMatchObject({ resourceCount: 4, lastUpdate: '2026-01-02T03:04:05.123Z' });
    // The previous checkpoint went to .bak in the same transaction.
    const bak = JSON.parse(Buffer.from((await blob.read('.pulumi/stacks/proj/dev.json.bak'))!).toString());
    expect(bak.checkpoint.latest).toBeNull();
    // The checkpoint is compact JSON, as the CLI writes it.
    const raw = Buffer.from((await blob.read('.pulumi/stacks/proj/dev.json'))!).toString();
    expect(raw).toBe(
      JSON.stringify({ version: 3, checkpoint: { stack: 'organization/proj/dev', latest: dep.deployment } }),
    );
  });

  it('rejects invalid imports and writes nothing', async () => {
    const before = await blob.head('.pulumi/stacks/proj/dev.json');
    await expect(store.importDeployment('proj', 'dev', '{"version": 3, "deployment": ')).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(store.importDeployment('proj', 'dev', deployment('proj', 'prod', 2))).rejects.toMatchObject({
      code: 'CONFLICT',
    });
    await expect(store.importDeployment('other', 'dev', deployment('proj', 'dev', 2))).rejects.toMatchObject({
      code: 'CONFLICT',
    });
    await expect(store.importDeployment('proj', 'dev', { version: 9, deployment: {} })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(store.importDeployment('proj', '../x', deployment('proj', 'dev', 1))).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    expect(await blob.head('.pulumi/stacks/proj/dev.json')).toEqual(before);
    expect(await store.lockHolders('proj', 'dev')).toEqual([]);
  });

  it('keeps the index right when checkpoints are written through the S3 handler or by other tools', async () => {
    const handler = createPulumiBucketHandler(blob);
    const body = {
      version: 3,
      checkpoint: { stack: 'organization/proj/ci', latest: deployment('proj', 'ci', 7).deployment },
    };
    await handler.putObject('.pulumi/stacks/proj/ci.json', Buffer.from(JSON.stringify(body)));
    expect((await store.listStacks('proj')).find((s) => s.stack === 'ci')).toMatchObject({ resourceCount: 7 });
    // The CLI with PULUMI_DIY_BACKEND_GZIP writes a .json.gz (newer) next to the .json: the newest wins.
    const smaller = { ...body, checkpoint: { ...body.checkpoint, latest: deployment('proj', 'ci', 2).deployment } };
    await handler.putObject('.pulumi/stacks/proj/ci.json.gz', zlib.gzipSync(JSON.stringify(smaller)));
    expect((await store.listStacks('proj')).find((s) => s.stack === 'ci')).toMatchObject({
      resourceCount: 2,
      key: '.pulumi/stacks/proj/ci.json.gz',
    });
    expect((await store.exportDeployment('proj', 'ci')).deployment).toEqual(smaller.checkpoint.latest);
    // Another tool rewrites the row directly: the index notices (updated_at differs) and repairs itself.
    const one = { ...body, checkpoint: { ...body.checkpoint, latest: deployment('proj', 'ci', 1).deployment } };
    const bytes = zlib.gzipSync(JSON.stringify(one));
    const table = `state_${layout}`;
    const key = `${layout === 'native' ? `${db.name}/` : ''}.pulumi/stacks/proj/ci.json.gz`;
    if (layout === 'seed') await sql(`UPDATE ${table} SET data = $1, updated_at = now() WHERE key = $2`, [bytes, key]);
    else
      await sql(`UPDATE ${table} SET data = json_build_object('data', $1::text), updated_at = now() WHERE key = $2`, [
        bytes.toString('base64'),
        key,
      ]);
    expect((await store.listStacks('proj')).find((s) => s.stack === 'ci')).toMatchObject({ resourceCount: 1 });
    await handler.deleteObject('.pulumi/stacks/proj/ci.json.gz');
    await handler.deleteObject('.pulumi/stacks/proj/ci.json');
    expect((await store.listStacks('proj')).map((s) => s.stack)).toEqual(['dev']);
  });

  it('reads .zst checkpoints the CLI wrote (PULUMI_DIY_BACKEND_ZSTD)', async () => {
    const body = {
      version: 3,
      checkpoint: { stack: 'organization/zp/z', latest: deployment('zp', 'z', 3).deployment },
    };
    const zst = execFileSync('zstd', ['-q', '-c'], { input: JSON.stringify(body) });
    await blob.put('.pulumi/stacks/zp/z.json.zst', zst);
    expect((await store.listStacks('zp'))[0]).toMatchObject({ resourceCount: 3, key: '.pulumi/stacks/zp/z.json.zst' });
    expect(await store.readCheckpoint('zp', 'z')).toEqual(body);
    // Saving from Node 20 (no zstd writer) writes plain JSON and moves the .zst aside, as the CLI does on a
    // compression change.
    await store.saveCheckpoint('zp', 'z', body);
    expect(await blob.head('.pulumi/stacks/zp/z.json.zst')).toBeNull();
    expect(await blob.head('.pulumi/stacks/zp/z.json.zst.bak')).not.toBeNull();
    expect(await store.checkpointKey('zp', 'z')).toBe('.pulumi/stacks/zp/z.json');
  });

  it('writes gzip when configured and switches variants in one transaction', async () => {
    const gz = new PulumiStateStore(blob, { compression: '.gz' });
    const chk = await store.readCheckpoint('proj', 'dev');
    await gz.saveCheckpoint('proj', 'dev', chk!);
    expect(await store.checkpointKey('proj', 'dev')).toBe('.pulumi/stacks/proj/dev.json.gz');
    expect(await blob.head('.pulumi/stacks/proj/dev.json')).toBeNull();
    expect(await store.readCheckpoint('proj', 'dev')).toEqual(chk);
    expect((await store.listStacks('proj'))[0]).toMatchObject({ resourceCount: 4 });
    await store.saveCheckpoint('proj', 'dev', chk!); // and back to plain
    expect(await store.checkpointKey('proj', 'dev')).toBe('.pulumi/stacks/proj/dev.json');
  });

  it('records history and backups, newest first', async () => {
    await store.recordUpdate('proj', 'dev', { kind: 'update', startTime: 1, endTime: 2, result: 'succeeded' });
    await store.recordUpdate('proj', 'dev', { kind: 'refresh', startTime: 3, endTime: 4, result: 'failed' });
    const history = await store.history('proj', 'dev');
    expect(history.map((h) => h.info.kind)).toEqual(['refresh', 'update']);
    expect(history[0]!.checkpointKey).toMatch(/^\.pulumi\/history\/proj\/dev\/dev-\d+\.checkpoint\.json$/);
    expect(await store.history('proj', 'dev', 1)).toHaveLength(1);
    expect(await store.listBackups('proj', 'dev')).toHaveLength(2);
  });

  it('locks atomically, reports holders, honours CLI lock files and cancels', async () => {
    const lock = await store.acquireLock('proj', 'dev');
    const holders = await store.lockHolders('proj', 'dev');
    expect(holders).toEqual([
      expect.objectContaining({ id: lock.id, pid: process.pid, hostname: os.hostname(), key: lock.key }),
    ]);
    await expect(store.acquireLock('proj', 'dev')).rejects.toMatchObject({ code: 'CONFLICT' });
    await lock.release();
    // A lock file the CLI wrote (through the gateway) blocks us too.
    await blob.put(
      '.pulumi/locks/organization/proj/dev/cli-lock-id.json',
      Buffer.from(JSON.stringify({ pid: 42, username: 'ci', hostname: 'runner', timestamp: '2026-01-01T00:00:00Z' })),
    );
    await expect(store.importDeployment('proj', 'dev', deployment('proj', 'dev', 1))).rejects.toMatchObject({
      code: 'CONFLICT',
      message: expect.stringContaining('ci@runner (pid 42)'),
    });
    expect((await store.listLocks()).map((l) => `${l.project}/${l.stack}`)).toEqual(['proj/dev']);
    expect(await store.cancel('proj', 'dev')).toBe(1);
    expect(await store.lockHolders('proj', 'dev')).toEqual([]);
  });

  it('renames: URNs rewritten, history moved, old file kept as .bak, target must be free', async () => {
    await store.setTags('proj', 'dev', { team: 'b' });
    await store.createStack('proj', 'taken');
    await expect(store.renameStack('proj', 'dev', 'proj', 'taken')).rejects.toMatchObject({ code: 'CONFLICT' });
    await store.renameStack('proj', 'dev', 'proj', 'prod');
    expect(await store.stackExists('proj', 'dev')).toBe(false);
    expect(await blob.head('.pulumi/stacks/proj/dev.json.bak')).not.toBeNull();
    const exported = (await store.exportDeployment('proj', 'prod')).deployment as {
      resources: { urn: string; parent?: string; dependencies?: string[]; outputs?: { note: string } }[];
    };
    expect(exported.resources.every((r) => r.urn.startsWith('urn:pulumi:prod::proj::'))).toBe(true);
    expect(exported.resources[2]!.parent).toBe(urn('proj', 'prod', 'pulumi:pulumi:Stack', 'proj-dev'));
    expect(exported.resources[2]!.dependencies).toEqual([
      urn('proj', 'prod', 'random:index/randomPet:RandomPet', 'pet1'),
    ]);
    expect(exported.resources[1]!.outputs!.note).toContain('urn:pulumi:dev::proj::'); // outputs untouched
    const history = await store.history('proj', 'prod');
    expect(history).toHaveLength(2);
    expect(history.every((h) => h.key.startsWith('.pulumi/history/proj/prod/prod-'))).toBe(true);
    expect(await blob.listAll('.pulumi/history/proj/dev/')).toEqual([]);
    expect(await store.getTags('proj', 'prod')).toEqual({ team: 'b' });
    expect((await store.readCheckpoint('proj', 'prod'))!.checkpoint).toMatchObject({ stack: 'organization/proj/prod' });
  });

  it('prunes history, backups and .bak files by count', async () => {
    for (let i = 0; i < 3; i++) await store.recordUpdate('proj', 'prod', { kind: 'update', startTime: i });
    expect(await store.history('proj', 'prod')).toHaveLength(5);
    const dry = await store.prune({ project: 'proj', stack: 'prod', keepHistory: 2, keepBackups: 1, dryRun: true });
    expect(dry.deleted.length).toBeGreaterThan(0);
    expect(await store.history('proj', 'prod')).toHaveLength(5);
    const newest = (await store.history('proj', 'prod')).slice(0, 2).map((h) => h.key);
    const result = await store.prune({
      project: 'proj',
      stack: 'prod',
      keepHistory: 2,
      keepBackups: 1,
      removeBak: true,
    });
    expect(result.deleted).toEqual(expect.arrayContaining(dry.deleted));
    expect((await store.history('proj', 'prod')).map((h) => h.key)).toEqual(newest);
    expect(await store.listBackups('proj', 'prod')).toHaveLength(1);
    expect((await blob.listAll('.pulumi/stacks/proj/prod.json')).map((o) => o.key)).toEqual([
      '.pulumi/stacks/proj/prod.json',
    ]);
    // Age: nothing is older than a date in the past.
    expect((await store.prune({ keepHistory: 0, olderThan: new Date(0) })).deleted).toEqual([]);
  });

  it('removes stacks like the CLI, with and without backups', async () => {
    await expect(store.removeStack('proj', 'prod')).rejects.toMatchObject({ code: 'CONFLICT' });
    await store.removeStack('proj', 'prod', { force: true });
    expect(await store.stackExists('proj', 'prod')).toBe(false);
    expect(await blob.head('.pulumi/stacks/proj/prod.json.bak')).not.toBeNull();
    expect(await blob.listAll('.pulumi/history/proj/prod/')).toEqual([]);
    expect(await blob.head('.pulumi/stacks/proj/prod.pulumi-tags')).toBeNull();
    expect(await store.listBackups('proj', 'prod')).toHaveLength(1); // kept without removeBackups
    // With --remove-backups on a stack that has no .bak (the native driver fails here).
    await store.createStack('proj', 'tmp');
    await blob.delete('.pulumi/stacks/proj/tmp.json.bak');
    await store.recordUpdate('proj', 'tmp', { kind: 'update', startTime: 1 });
    await store.removeStack('proj', 'tmp', { removeBackups: true });
    expect(await blob.listAll('.pulumi/stacks/proj/tmp')).toEqual([]);
    expect(await store.listBackups('proj', 'tmp')).toEqual([]);
    await expect(store.removeStack('proj', 'nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('migrating a file:// DIY directory', () => {
  it('imports a directory into PostgreSQL and exports it back byte for byte, with progress', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pulumi-diy-'));
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'pulumi-diy-out-'));
    try {
      const files: Record<string, Buffer> = {
        '.pulumi/meta.yaml': Buffer.from('version: 1\n'),
        '.pulumi/stacks/app/dev.json': Buffer.from(
          JSON.stringify({
            version: 3,
            checkpoint: { stack: 'organization/app/dev', latest: deployment('app', 'dev', 5).deployment },
          }),
        ),
        '.pulumi/stacks/app/dev.json.bak': Buffer.from('{}'),
        '.pulumi/history/app/dev/dev-1700000000000000000.history.json': Buffer.from('{"kind":"update","startTime":1}'),
        '.pulumi/backups/app/dev/dev.1700000000000000000.json': zlib.gzipSync('x'),
      };
      for (const [key, body] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, key)), { recursive: true });
        fs.writeFileSync(path.join(dir, key), body);
      }
      fs.writeFileSync(path.join(dir, '.pulumi/stacks/app/dev.json.attrs'), 'gocloud sidecar');
      const target = blobs('migrated');
      const progress: number[] = [];
      const imported = await importDiyDirectory(target, `file://${dir}`, { onProgress: (p) => progress.push(p.done) });
      expect(imported.files).toBe(5);
      expect(progress).toEqual([1, 2, 3, 4, 5]);
      const state = new PulumiStateStore(target);
      expect(await state.listStacks()).toEqual([
        expect.objectContaining({ name: 'organization/app/dev', resourceCount: 5 }),
      ]);
      const exported = await exportDiyDirectory(target, out);
      expect(exported.files).toBe(5);
      for (const [key, body] of Object.entries(files))
        expect(fs.readFileSync(path.join(out, key)).equals(body)).toBe(true);
      await expect(importDiyDirectory(target, path.join(out, 'nothing-here'))).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
