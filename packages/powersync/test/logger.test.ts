// Replication and storage logs reach the service's logger (handed to the module), and without one they are printed:
// a silent default hid the replication job's logs and errors (issue 14).
import { createTestDatabase } from '@pgstate/core/testing';
import { afterAll, beforeAll, describe, expect, inject, test, vi } from 'vitest';
import {
  configureCheckpointNotifications,
  consoleLogger,
  Direction,
  type Logger,
  type MigrationAgent,
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  PgStateStorageModule,
  type PgStateStorageProvider,
  pgstateTestSetup,
  SaveOperationTag,
} from '../src/index.js';
import { deploy, GLOBAL_YAML, rid, table, WRITER } from './helpers.js';

let url: string;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await createTestDatabase(inject('pgUrl'), 'powersync_logger');
  url = db.url;
  drop = db.drop;
});
afterAll(async () => drop?.());

/** A winston-like logger: `child({prefix})` puts the prefix before messages, as the service's log format does. */
function winstonLike(lines: string[], prefix = ''): Logger {
  const at = (level: string) => (message: string) => lines.push(`${level}: ${prefix}${message}`);
  return {
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    debug: at('debug'),
    child: (meta) => winstonLike(lines, `${prefix}${meta.prefix ?? ''}`),
  };
}

describe('logging', () => {
  test("the module hands the service's logger to the storage, its streams (slot prefix), writers and migrations", async () => {
    const lines: string[] = [];
    const providers: PgStateStorageProvider[] = [];
    const agents: MigrationAgent[] = [];
    const storageConfig = { type: 'pgstate', uri: url, sslmode: 'disable', schema: 'ps_log_module' };
    await new PgStateStorageModule(winstonLike(lines)).initialize({
      storageEngine: { registerProvider: (p) => providers.push(p as PgStateStorageProvider) },
      configuration: { storage: storageConfig },
      migrations: { registerMigrationAgent: (a) => agents.push(a) },
    });
    await agents[0]!.run({ direction: Direction.Up, migrations: [] });
    await agents[0]![Symbol.asyncDispose]();
    expect(lines).toContain('info: Running migrations up');

    const active = await providers[0]!.getStorage({ resolvedConfig: { storage: storageConfig } });
    try {
      const { stream } = await deploy(active.storage, GLOBAL_YAML);
      const storage = active.storage.getInstance(stream);
      const slot = stream.replicationStreamName;
      // The replication job logs through storage.logger.
      storage.logger.info('Replicating "public"."test"');
      expect(lines).toContain(`info: [${slot}] Replicating "public"."test"`);

      // The writer's own warnings and the activation notice, from a writer created without a logger.
      await using writer = await storage.createWriter(WRITER);
      const t = await table(writer, 'test');
      await writer.markTableSnapshotDone([t]);
      await writer.save({ sourceTable: t, tag: SaveOperationTag.DELETE, beforeReplicaId: rid('missing') });
      await writer.markAllSnapshotDone('1/1');
      await writer.commit('1/1');
      expect(lines).toContain(`warn: [${slot}] Cannot find previous record for delete on "public"."test"`);
      expect(lines.some((l) => l.startsWith(`info: [${slot}] Activated replication stream`))).toBe(true);
    } finally {
      await active.shutDown();
    }
  });

  test('without a logger the storage prints (not a no-op): stderr gets its warnings', async () => {
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      const setup = pgstateTestSetup({ url, schema: 'ps_log_default' });
      await using factory = await setup.factory();
      expect(factory).toBeInstanceOf(PgStateBucketStorageFactory);
      const { stream } = await deploy(factory, GLOBAL_YAML);
      const storage = factory.getInstance(stream);
      await using writer = await storage.createWriter(WRITER);
      const t = await table(writer, 'test');
      await writer.save({ sourceTable: t, tag: SaveOperationTag.DELETE, beforeReplicaId: rid('missing') });
      await writer.flush();
    } finally {
      spy.mockRestore();
    }
    expect(written.join('')).toMatch(/warn: \[test_\d+_[0-9a-f]+\] Cannot find previous record for delete/);
  });

  test('a live-checkpoint watcher that outlives its storage stops without logging failures', async () => {
    const lines: string[] = [];
    const config = normalizeStorageConfig({ type: 'pgstate', uri: url, sslmode: 'disable', schema: 'ps_log_watch' });
    const factory = new PgStateBucketStorageFactory({ config, logger: winstonLike(lines) });
    await factory.db.ensureMigrated();
    configureCheckpointNotifications(factory.db, { mode: 'poll', pollIntervalMs: 20 });
    const { stream } = await deploy(factory, GLOBAL_YAML);
    const storage = factory.getInstance(stream);
    {
      await using writer = await storage.createWriter(WRITER);
      await writer.markAllSnapshotDone('1/1');
      await writer.commit('1/1');
    }
    const controller = new AbortController();
    const updates = storage.watchCheckpointChanges({ user_id: 'u', signal: controller.signal })[Symbol.asyncIterator]();
    expect((await updates.next()).done).toBe(false);
    // The service shuts the storage down while a client's stream is still open.
    await factory[Symbol.asyncDispose]();
    await new Promise((resolve) => setTimeout(resolve, 300)); // many poll intervals
    controller.abort();
    await updates.return?.();
    expect(lines.filter((l) => !l.startsWith('info') && !l.startsWith('debug'))).toEqual([]);
  });

  test('consoleLogger: levels, child prefixes, metadata, and no password in a line', () => {
    const out: string[] = [];
    const logger = consoleLogger({ write: (level, line) => out.push(`${level}|${line}`) });
    logger.debug('hidden at the default level');
    logger.info('plain');
    logger.child({ prefix: '[slot_1] ' }).warn('retrying', new Error('serialization failure'));
    logger.error('could not connect to postgres://app:s3cret@db.example.com/app', { op_id: 5n });
    expect(out[0]).toBe('info|info: plain');
    expect(out[1]).toMatch(/^warn\|warn: \[slot_1\] retrying Error: serialization failure/);
    expect(out[2]).toContain('error|error: could not connect to postgres://app:');
    expect(out[2]).toContain('{"op_id":"5"}');
    expect(out.join('\n')).not.toContain('s3cret');
    expect(out).toHaveLength(3);
    const verbose: string[] = [];
    consoleLogger({ level: 'debug', write: (_l, line) => verbose.push(line) }).debug('shown');
    expect(verbose).toEqual(['debug: shown']);
  });
});
