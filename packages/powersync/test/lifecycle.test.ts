import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isPgStateError } from '@pgstate/core';
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  PgStateStorageModule,
  type PgStateStorageProvider,
  pgstateTestSetup,
  SyncRuleState,
} from '../src/index.js';
import { deploy, GLOBAL_YAML, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_life');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

describe('sync rules lifecycle', () => {
  test('deploy -> PROCESSING, activation STOPs the previous stream, restart keeps serving as ERRORED', async () => {
    const factory = await pgstateTestSetup({ url, schema: 'ps_life' }).factory();
    try {
      const a = await deploy(factory, GLOBAL_YAML);
      expect(a.stream.state).toBe(SyncRuleState.PROCESSING);
      expect(a.stream.storageVersion).toBe(2);
      expect((await factory.getDeployingSyncConfig())?.content.replicationStreamId).toBe(a.stream.replicationStreamId);
      expect(await factory.getActiveSyncConfig()).toBeNull();
      const wa = await factory.getInstance(a.stream).createWriter(WRITER);
      await wa.markAllSnapshotDone('1/1');
      await wa.commit('1/1');
      expect((await factory.getActiveSyncConfig())?.content.replicationStreamId).toBe(a.stream.replicationStreamId);
      expect(
        await factory.configureSyncRules((await import('../src/index.js')).syncRulesFromYaml(GLOBAL_YAML)),
      ).toEqual({
        updated: false,
      });

      // A new deploy replicates beside the active one until it activates; then the old one stops.
      const b = await deploy(factory, `${GLOBAL_YAML}  # v2\n`, 1);
      expect((await factory.getReplicatingReplicationStreams()).map((s) => s.replicationStreamId)).toEqual([
        a.stream.replicationStreamId,
        b.stream.replicationStreamId,
      ]);
      const wb = await factory.getInstance(b.stream).createWriter(WRITER);
      await wb.markAllSnapshotDone('2/1');
      await wb.commit('2/1');
      expect((await factory.getActiveSyncConfig())?.content.replicationStreamId).toBe(b.stream.replicationStreamId);
      const stopped = await factory.getStoppedReplicationStreams();
      expect(stopped.map((s) => s.replicationStreamId)).toEqual([a.stream.replicationStreamId]);
      await factory.getInstance(stopped[0]!).terminate();
      expect(await factory.getStoppedReplicationStreams()).toEqual([]);

      // Restart of the active stream: it keeps serving (ERRORED), a fresh stream replicates.
      await factory.restartReplication(b.stream.replicationStreamId);
      expect((await factory.getActiveSyncConfig())?.replicationStream.state).toBe(SyncRuleState.ERRORED);
      const deploying = await factory.getDeployingSyncConfig();
      expect(deploying?.content.sync_rules_content).toBe(b.content.sync_rules_content);
      // As upstream: YAML-only sync rules are redeployed with the default storage version.
      expect(deploying?.content.storageVersion).toBe(2);

      const id = await factory.getPowerSyncInstanceId();
      expect(await factory.getPowerSyncInstanceId()).toBe(id);
      expect((await factory.getSystemIdentifier()).id).toMatch(/^\d+\.powersync_life_/);
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });

  test('an unsupported storage version is refused before anything is written', async () => {
    const factory = await pgstateTestSetup({ url, schema: 'ps_life' }).factory();
    try {
      await expect(deploy(factory, GLOBAL_YAML, 4)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      expect(await factory.getReplicatingReplicationStreams()).toEqual([]);
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });
});

describe('replication stream locks', () => {
  test('in one process: a second lock() is refused with CONFLICT until the first is released', async () => {
    const setup = pgstateTestSetup({ url, schema: 'ps_lock' });
    const factory = await setup.factory();
    try {
      const { stream } = await deploy(factory, GLOBAL_YAML);
      const lock = await stream.lock();
      const [again] = await factory.getReplicatingReplicationStreams();
      const refused = await again!.lock().catch((e) => e);
      expect(isPgStateError(refused, 'CONFLICT')).toBe(true);
      await lock.release();
      const second = await again!.lock();
      expect(second.sync_rules_id).toBe(stream.replicationStreamId);
      await second.release();
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });

  test('two writer processes race for one stream: exactly one holds it; a killed holder is taken over', async () => {
    const setup = pgstateTestSetup({ url, schema: 'ps_race' });
    const factory = await setup.factory();
    const children: ChildProcess[] = [];
    const child = fileURLToPath(new URL('./lock-child.ts', import.meta.url));
    const start = (id: number, mode: 'once' | 'wait') => {
      const p = spawn(
        process.execPath,
        ['--conditions=pgstate-source', '--import', 'tsx', child, url, 'ps_race', String(id), '1500', mode],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.push(p);
      return new Promise<{ p: ChildProcess; line: string }>((resolve, reject) => {
        let out = '';
        p.stdout!.on('data', (d) => {
          out += d;
          if (out.includes('\n')) resolve({ p, line: out.trim() });
        });
        p.on('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
    };
    try {
      const { stream } = await deploy(factory, GLOBAL_YAML);
      const results = await Promise.all([
        start(stream.replicationStreamId, 'once'),
        start(stream.replicationStreamId, 'once'),
      ]);
      const lines = results.map((r) => r.line).sort();
      expect(lines).toEqual(['LOCKED', 'STANDBY CONFLICT']);
      // The holder dies without releasing: its lease expires and a waiting process takes over.
      const holder = results.find((r) => r.line === 'LOCKED')!.p;
      holder.kill('SIGKILL');
      const next = await start(stream.replicationStreamId, 'wait');
      expect(next.line).toBe('LOCKED');
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        const { rows } = await admin.query('SELECT count(*)::int AS n FROM ps_race.locks');
        expect(rows[0].n).toBe(1);
      } finally {
        await admin.end();
      }
    } finally {
      for (const p of children) p.kill('SIGKILL');
      await factory[Symbol.asyncDispose]();
    }
  });
});

describe('least-privilege setups (seed)', () => {
  async function asAdmin(sql: string[]) {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      for (const s of sql) await admin.query(s);
    } finally {
      await admin.end();
    }
  }
  const userUrl = (user: string) => {
    const u = new URL(url);
    u.username = user;
    u.password = 'secure_password';
    return u.toString();
  };

  async function roundTrip(userUri: string, schema: string) {
    const factory = new PgStateBucketStorageFactory({
      config: normalizeStorageConfig({ type: 'pgstate', uri: userUri, sslmode: 'disable', schema }),
    });
    try {
      const { stream } = await deploy(factory, GLOBAL_YAML);
      const writer = await factory.getInstance(stream).createWriter(WRITER);
      await writer.markAllSnapshotDone('1/1');
      expect(await writer.commit('1/1')).toEqual({ checkpointBlocked: false, checkpointCreated: true });
      expect(await factory.getActiveSyncConfig()).not.toBeNull();
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  }

  test('schema pre-created by an administrator for the user', async () => {
    const db = new URL(url).pathname.slice(1);
    await asAdmin([
      `CREATE USER ps_owner_user WITH PASSWORD 'secure_password'`,
      `CREATE SCHEMA IF NOT EXISTS ps_owned AUTHORIZATION ps_owner_user`,
      `GRANT CONNECT ON DATABASE "${db}" TO ps_owner_user`,
      `REVOKE CREATE ON DATABASE "${db}" FROM PUBLIC`,
    ]);
    await roundTrip(userUrl('ps_owner_user'), 'ps_owned');
  });

  test('schema created by the service user with only CREATE ON DATABASE', async () => {
    const db = new URL(url).pathname.slice(1);
    await asAdmin([
      `CREATE USER ps_creator_user WITH PASSWORD 'secure_password'`,
      `GRANT CREATE ON DATABASE "${db}" TO ps_creator_user`,
    ]);
    await roundTrip(userUrl('ps_creator_user'), 'ps_created');
  });
});

describe('module registration and config', () => {
  test('storage versions 1-3 are accepted (3 as upstream: versioned buckets, soft-deleted current data); 4 is refused', async () => {
    expect(
      normalizeStorageConfig({ type: 'pgstate', uri: url, default_storage_version: 3 }).defaultStorageVersion,
    ).toBe(3);
    let configError: unknown;
    try {
      normalizeStorageConfig({ type: 'pgstate', uri: url, default_storage_version: 4 });
    } catch (error) {
      configError = error;
    }
    expect(isPgStateError(configError, 'BAD_SETTING')).toBe(true);
    expect(String((configError as Error).message)).toMatch(/Storage version 4 is not supported/);
    expect((configError as { fix?: string }).fix).toMatch(/1, 2, 3/);

    const factory = await pgstateTestSetup({ url, schema: 'ps_life_v3', storageVersion: 3 }).factory();
    try {
      const { stream } = await deploy(factory, GLOBAL_YAML);
      expect(stream.storageVersion).toBe(3);
      expect(stream.getStorageConfig()).toEqual({ version: 3, versionedBuckets: true, softDeleteCurrentData: true });
      await expect(deploy(factory, GLOBAL_YAML, 4)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    } finally {
      await factory[Symbol.asyncDispose]();
    }
  });

  test('initialize() registers the pgstate provider and a migration agent', async () => {
    const providers: PgStateStorageProvider[] = [];
    const agents: unknown[] = [];
    await new PgStateStorageModule().initialize({
      storageEngine: { registerProvider: (p) => providers.push(p as PgStateStorageProvider) },
      configuration: { storage: { type: 'pgstate', uri: url, schema: 'ps_module' } },
      migrations: { registerMigrationAgent: (a) => agents.push(a) },
    });
    expect(providers.map((p) => p.type)).toEqual(['pgstate']);
    expect(agents).toHaveLength(1);
    const active = await providers[0]!.getStorage({
      resolvedConfig: { storage: { type: 'pgstate', uri: url, schema: 'ps_module', sslmode: 'disable' } },
    });
    expect(await active.storage.getActiveSyncConfig()).toBeNull();
    await active.shutDown();
  });

  test("timeouts: upstream's connect_timeout field (over the URI's), query_timeout_ms", () => {
    const uri = 'postgres://u@h/db?connect_timeout=10';
    expect(normalizeStorageConfig({ type: 'pgstate', uri }).connection.connectTimeoutMs).toBe(10_000);
    const config = normalizeStorageConfig({ type: 'pgstate', uri, connect_timeout: 3, query_timeout_ms: 2500 });
    expect(config.connection.connectTimeoutMs).toBe(3000);
    expect(config.queryTimeoutMs).toBe(2500);
    expect(normalizeStorageConfig({ type: 'pgstate', uri }).queryTimeoutMs).toBeUndefined();
  });

  test('bad config is refused with a precise error and no secret in it', () => {
    const secret = 'hunter2-secret';
    for (const config of [
      { type: 'postgresql', uri: `postgres://u:${secret}@h/db` },
      { type: 'pgstate', uri: `postgres://u:${secret}@h/db`, schema: 'bad-name' },
      { type: 'pgstate', uri: `postgres://u:${secret}@h/db`, default_storage_version: 4 },
      { type: 'pgstate', uri: `postgres://u:${secret}@h/db`, batch_limits: { max_record_count: 0 } },
      { type: 'pgstate', uri: `postgres://u:${secret}@h/db`, query_timeout_ms: -1 },
      { type: 'pgstate', uri: `postgres://u:${secret}@h/db`, connect_timeout: 1.5 },
    ]) {
      let error: unknown;
      try {
        normalizeStorageConfig(config);
      } catch (e) {
        error = e;
      }
      expect(isPgStateError(error)).toBe(true);
      expect((error as Error).message).not.toContain(secret);
      expect(String(error)).not.toContain(secret);
    }
  });
});
