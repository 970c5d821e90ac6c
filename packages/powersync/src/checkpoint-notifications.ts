/**
 * Live checkpoints across processes.
 *
 * The writer commits a checkpoint and sends `pg_notify(<channel>, {id, checkpoint, lsn})`. Each process keeps ONE
 * dedicated LISTEN connection per storage schema, shared by every watcher. Notifications only wake watchers up:
 * the truth is always the `sync_rules` row, so a lost notification can delay a checkpoint but never lose one.
 *
 * Upstream #718 (a LISTEN connection that died silently stopped checkpoints for an hour) is handled by:
 * - reconnecting with backoff whenever the connection errors or ends, then re-reading the row (anything committed
 *   while we were not listening is picked up), and polling while disconnected;
 * - a periodic ping on the LISTEN connection (a half-open TCP connection fails it and is replaced);
 * - a slow safety-net re-read even while everything looks healthy.
 * Watchers never see a checkpoint go backwards: an older (checkpoint, lsn) than the last one yielded is dropped.
 *
 * With a multi-host connection the LISTEN connection always goes to the primary, and after a failover it is cut and
 * re-established on the new primary like any lost connection (then the row is re-read, so nothing is missed).
 *
 * Behind PgBouncer in transaction mode LISTEN does not work (the server connection is shared): give a direct
 * `listenConnection`, or use `mode: 'poll'`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type ConnectionSettings, connectClient, isConnectionLoss, onPrimary, toPgStateError } from '@pgstate/core';
import type pg from 'pg';
import { checkpointChannel } from './batch/checkpoints.js';
import type { StorageDb } from './db.js';
import {
  CHECKPOINT_INVALIDATE_ALL,
  type Logger,
  type ReplicationCheckpoint,
  type StorageCheckpointUpdate,
  type SyncStorageLastWriteCheckpointFilters,
} from './types.js';
import { DEFAULT_HEAD_CONNECTION } from './write-checkpoints.js';

export type CheckpointNotificationMode = 'listen' | 'poll';

export interface CheckpointNotificationOptions {
  /** `listen` (default): LISTEN/NOTIFY on a dedicated connection. `poll`: re-read the row every `pollIntervalMs`. */
  mode?: CheckpointNotificationMode;
  /** Where to LISTEN (a direct connection when the storage URL goes through PgBouncer); default: storage settings. */
  listenConnection?: ConnectionSettings;
  /** Poll interval in poll mode and while the LISTEN connection is down (default 1000 ms). */
  pollIntervalMs?: number;
  /** Safety-net re-read while listening (default 30 s). */
  resyncIntervalMs?: number;
  /** Ping on the LISTEN connection (default 15 s); a ping that fails or takes longer replaces the connection. */
  healthCheckMs?: number;
  logger?: Logger;
}

/** The state of the serving replication stream, as read from `sync_rules`. */
export interface ActiveCheckpointState {
  /** Replication stream id, or null when no stream serves. */
  id: number | null;
  checkpoint: bigint;
  lsn: string | null;
}

export interface CheckpointNotifierStats {
  mode: CheckpointNotificationMode;
  listening: boolean;
  connects: number;
  notifications: number;
  resyncs: number;
}

type Wake = () => void;

const notifiers = new WeakMap<StorageDb, CheckpointNotifier>();
const configured = new WeakMap<StorageDb, CheckpointNotificationOptions>();

/** Sets how checkpoints are watched for this storage (call before the first watcher starts). */
export function configureCheckpointNotifications(db: StorageDb, options: CheckpointNotificationOptions): void {
  configured.set(db, options);
  const existing = notifiers.get(db);
  if (existing && existing.subscriberCount === 0) notifiers.delete(db);
}

/** The process-wide notifier for this storage (created on first use). */
export function checkpointNotifier(db: StorageDb): CheckpointNotifier {
  let notifier = notifiers.get(db);
  if (!notifier) {
    notifier = new CheckpointNotifier(db, configured.get(db) ?? fromStorageConfig(db));
    notifiers.set(db, notifier);
  }
  return notifier;
}

/** `storage.checkpoint_notifications` of the service config, if set. */
function fromStorageConfig(db: StorageDb): CheckpointNotificationOptions {
  const n = db.config.notifications;
  if (n == null) return {};
  return { mode: n.mode, listenConnection: n.connection, pollIntervalMs: n.pollIntervalMs };
}

/**
 * Shared LISTEN connection + latest known state. Subscribers are woken on every change; the connection is opened
 * with the first subscriber and closed with the last.
 */
export class CheckpointNotifier {
  readonly mode: CheckpointNotificationMode;
  private readonly logger: Logger;
  private readonly subscribers = new Set<Wake>();
  private client: pg.Client | null = null;
  private running = false;
  private loop: Promise<void> | null = null;
  private stopLoop: AbortController | null = null;
  private latest: ActiveCheckpointState | null = null;
  private readonly channel: string;
  private readonly pollIntervalMs: number;
  private readonly resyncIntervalMs: number;
  private readonly healthCheckMs: number;
  readonly stats: CheckpointNotifierStats;

  constructor(
    private readonly db: StorageDb,
    private readonly options: CheckpointNotificationOptions = {},
  ) {
    this.logger = options.logger ?? db.logger;
    this.mode = options.mode ?? 'listen';
    this.channel = checkpointChannel(db.config.schema);
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.resyncIntervalMs = options.resyncIntervalMs ?? 30_000;
    this.healthCheckMs = options.healthCheckMs ?? 15_000;
    this.stats = { mode: this.mode, listening: false, connects: 0, notifications: 0, resyncs: 0 };
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** The last state read or notified (never older than one read before). */
  get current(): ActiveCheckpointState | null {
    return this.latest;
  }

  /** Reads the serving stream's checkpoint now and wakes subscribers if it moved. */
  async refresh(): Promise<ActiveCheckpointState> {
    this.stats.resyncs++;
    const row = await this.db.first<{ id: number; last_checkpoint: bigint | null; last_checkpoint_lsn: string | null }>(
      `SELECT id, last_checkpoint, last_checkpoint_lsn FROM ${this.db.names.syncRules}
       WHERE state IN ('ACTIVE', 'ERRORED') ORDER BY id DESC LIMIT 1`,
    );
    const state: ActiveCheckpointState = row
      ? { id: row.id, checkpoint: row.last_checkpoint ?? 0n, lsn: row.last_checkpoint_lsn }
      : { id: null, checkpoint: 0n, lsn: null };
    this.offer(state);
    return this.latest ?? state;
  }

  subscribe(wake: Wake): () => void {
    this.subscribers.add(wake);
    if (!this.running) this.start();
    return () => {
      this.subscribers.delete(wake);
      if (this.subscribers.size === 0) void this.stop();
    };
  }

  /** Closes the LISTEN connection; subscribers stay registered but are no longer woken. */
  async close(): Promise<void> {
    this.subscribers.clear();
    await this.stop();
  }

  /** Accepts a newer state (a different serving stream always counts as newer). */
  private offer(state: ActiveCheckpointState): void {
    const last = this.latest;
    if (last != null && last.id === state.id && !isNewer(state, last)) return;
    if (last != null && state.id != null && last.id != null && state.id < last.id) return;
    this.latest = state;
    for (const wake of this.subscribers) wake();
  }

  private start(): void {
    this.running = true;
    this.stopLoop = new AbortController();
    this.loop = this.run(this.stopLoop.signal).catch((error) => {
      this.logger.error('Checkpoint watcher stopped unexpectedly', error);
    });
  }

  private async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopLoop?.abort();
    await this.disconnect();
    await this.loop;
    this.loop = null;
  }

  private async disconnect(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.stats.listening = false;
    if (client) await client.end().catch(() => {});
  }

  /** Main loop: keep a LISTEN connection (or poll), re-read on (re)connect and on a timer. */
  private async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    let lastResync = 0;
    let lastPing = Date.now();
    while (!signal.aborted) {
      // The storage was shut down under a still-subscribed watcher: nothing more can be read; stop quietly.
      if (this.db.pool.ended) break;
      if (this.mode === 'listen' && this.client == null) {
        try {
          await this.connect(signal);
          failures = 0;
          lastPing = Date.now();
          // Anything committed while we were not listening: read it now.
          lastResync = 0;
        } catch (error) {
          failures++;
          this.logger.warn(`Checkpoint LISTEN connection failed (attempt ${failures}); polling meanwhile`, error);
        }
      }
      const listening = this.client != null;
      const now = Date.now();
      const resyncEvery = listening ? this.resyncIntervalMs : this.pollIntervalMs;
      if (now - lastResync >= resyncEvery) {
        lastResync = now;
        await this.refresh().catch((error) => {
          if (!this.db.pool.ended) this.logger.warn('Re-reading the checkpoint failed', error);
        });
      }
      if (listening && now - lastPing >= this.healthCheckMs) {
        lastPing = now;
        await this.ping();
      }
      const reconnectDelay = failures > 0 ? Math.min(5000, 100 * 2 ** Math.min(failures, 6)) : Infinity;
      const wait = Math.max(
        10,
        Math.min(
          resyncEvery - (Date.now() - lastResync),
          listening ? this.healthCheckMs - (Date.now() - lastPing) : reconnectDelay,
          listening ? Infinity : this.pollIntervalMs,
        ),
      );
      await this.sleepUntilWoken(wait, signal);
    }
  }

  private wakeLoop: (() => void) | null = null;

  private async sleepUntilWoken(ms: number, signal: AbortSignal): Promise<void> {
    const wakeUp = new AbortController();
    this.wakeLoop = () => wakeUp.abort();
    try {
      await sleep(ms, undefined, { signal: AbortSignal.any([signal, wakeUp.signal]), ref: false });
    } catch {
      // woken or stopped
    } finally {
      this.wakeLoop = null;
    }
  }

  private async connect(signal: AbortSignal): Promise<void> {
    // onPrimary: with several hosts, LISTEN must reach the primary (a standby refuses LISTEN and never sees the
    // writer's NOTIFY); after a failover the reconnect below walks the hosts to the new primary.
    const settings = onPrimary(this.options.listenConnection ?? this.db.config.connection);
    const client = await connectClient({
      ...settings,
      applicationName: `${settings.applicationName ?? 'pgstate-powersync'}-listen`,
    });
    if (signal.aborted) {
      await client.end().catch(() => {});
      return;
    }
    const lost = () => {
      if (this.client !== client) return;
      this.client = null;
      this.stats.listening = false;
      this.logger.warn('Checkpoint LISTEN connection lost; reconnecting');
      client.end().catch(() => {});
      this.wakeLoop?.();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (message) => {
      if (message.channel !== this.channel || message.payload == null) return;
      this.stats.notifications++;
      const event = parseNotification(message.payload);
      if (event) this.offer(event);
    });
    await client.query(`LISTEN ${quoteChannel(this.channel)}`);
    this.client = client;
    this.stats.connects++;
    this.stats.listening = true;
  }

  private async ping(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const timeout = Math.max(1000, Math.floor(this.healthCheckMs / 2));
    const ok = await Promise.race([
      client.query('SELECT 1').then(
        () => true,
        () => false,
      ),
      sleep(timeout, false, { ref: false }),
    ]);
    if (!ok && this.client === client) {
      this.logger.warn('Checkpoint LISTEN connection did not answer a ping; replacing it');
      this.client = null;
      this.stats.listening = false;
      // A half-open socket may never finish end(): destroy it.
      (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      client.end().catch(() => {});
    }
  }
}

function quoteChannel(channel: string): string {
  return `"${channel.replace(/"/g, '""')}"`;
}

function isNewer(a: ActiveCheckpointState, b: ActiveCheckpointState): boolean {
  if (a.checkpoint !== b.checkpoint) return a.checkpoint > b.checkpoint;
  if (a.lsn === b.lsn) return false;
  if (b.lsn == null) return true;
  if (a.lsn == null) return false;
  return a.lsn > b.lsn;
}

function parseNotification(payload: string): ActiveCheckpointState | null {
  try {
    const value = JSON.parse(payload) as { id?: unknown; checkpoint?: unknown; lsn?: unknown };
    if (typeof value.id !== 'number' || typeof value.checkpoint !== 'string') return null;
    return {
      id: value.id,
      checkpoint: BigInt(value.checkpoint),
      lsn: typeof value.lsn === 'string' ? value.lsn : null,
    };
  } catch {
    return null;
  }
}

/**
 * Yields the serving stream's checkpoint now and after every change, never going backwards; ends when another
 * stream starts serving (the caller then restarts on the new stream) or when `signal` aborts.
 */
export async function* watchActiveCheckpoint(
  db: StorageDb,
  replicationStreamId: number,
  signal: AbortSignal,
): AsyncGenerator<ActiveCheckpointState> {
  if (signal.aborted) return;
  const notifier = checkpointNotifier(db);
  let wake: (() => void) | null = null;
  let pending = true;
  const unsubscribe = notifier.subscribe(() => {
    pending = true;
    wake?.();
  });
  const onAbort = () => wake?.();
  signal.addEventListener('abort', onAbort);
  let last: ActiveCheckpointState | null = null;
  try {
    // Our own read first, so the first yield is never older than the moment we started.
    if ((await untilConnected(() => notifier.refresh(), signal, db)) === ABORTED) return;
    while (!signal.aborted) {
      if (!pending) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          if (pending || signal.aborted) resolve();
        });
        wake = null;
        continue;
      }
      pending = false;
      const state = notifier.current;
      if (state == null) continue;
      if (state.id !== replicationStreamId) {
        if (state.id == null || state.id > replicationStreamId) return;
        continue;
      }
      if (last != null && !isNewer(state, last)) continue;
      last = state;
      yield state;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    unsubscribe();
  }
}

const ABORTED = Symbol('aborted');

/**
 * Runs `read` until it succeeds, waiting out connection losses (a restarting or unreachable server) with backoff:
 * a watcher is long-lived and must resume by itself once the server is back, as its LISTEN connection does.
 * Other errors end the watch. Returns ABORTED when `signal` aborts first.
 */
async function untilConnected<T>(
  read: () => Promise<T>,
  signal: AbortSignal,
  db: StorageDb,
): Promise<T | typeof ABORTED> {
  for (let attempt = 0; ; attempt++) {
    if (signal.aborted) return ABORTED;
    try {
      return await read();
    } catch (error) {
      if (!isConnectionLoss(error) || db.pool.ended) throw error;
      if (attempt === 0) db.logger.warn('Checkpoint watcher lost its connection; retrying', toPgStateError(error));
      await sleep(Math.min(5000, 100 * 2 ** Math.min(attempt, 6)), undefined, { signal }).catch(() => {});
    }
  }
}

export interface WatchUserCheckpointsOptions {
  db: StorageDb;
  replicationStreamId: number;
  user_id: string;
  signal: AbortSignal;
  checkpointOf(checkpoint: bigint, lsn: string | null): ReplicationCheckpoint;
  lastWriteCheckpoint(filters: SyncStorageLastWriteCheckpointFilters): Promise<bigint | null>;
}

/**
 * `watchCheckpointChanges` of the storage contract: a new update whenever the checkpoint moves or this user's write
 * checkpoint (looked up against the checkpoint's LSN) changes.
 */
export async function* watchUserCheckpoints(
  options: WatchUserCheckpointsOptions,
): AsyncGenerator<StorageCheckpointUpdate> {
  let lastCheckpoint: bigint | null = null;
  let lastWrite: bigint | null = null;
  for await (const state of watchActiveCheckpoint(options.db, options.replicationStreamId, options.signal)) {
    const writeCheckpoint = await untilConnected(
      () =>
        options.lastWriteCheckpoint({
          user_id: options.user_id,
          heads: state.lsn != null ? { [DEFAULT_HEAD_CONNECTION]: state.lsn } : {},
        }),
      options.signal,
      options.db,
    );
    if (writeCheckpoint === ABORTED) return;
    if (lastCheckpoint === state.checkpoint && writeCheckpoint === lastWrite) continue;
    lastCheckpoint = state.checkpoint;
    lastWrite = writeCheckpoint;
    yield {
      base: options.checkpointOf(state.checkpoint, state.lsn),
      writeCheckpoint,
      update: CHECKPOINT_INVALIDATE_ALL,
    };
  }
}
