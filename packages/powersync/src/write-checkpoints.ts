/**
 * Write checkpoints: how a client learns that the data it uploaded has come back through replication.
 *
 * Managed mode (the default): `/write-checkpoint2.json` records, per user, the source database's current
 * replication head(s) and a counter that only grows. A sync checkpoint reports that counter once the checkpoint's
 * LSN has reached the recorded head, i.e. once every change the user made before asking is in storage.
 * Custom mode: the replicator sets checkpoints itself (`batch.addCustomWriteCheckpoint`), per replication stream.
 */
import { PgStateError } from '@pgstate/core';
import type { StorageDb } from './db.js';
import {
  type ManagedWriteCheckpointOptions,
  type SyncStorageLastWriteCheckpointFilters,
  WriteCheckpointMode,
} from './types.js';

/** The replication connection whose head gates managed write checkpoints (one source connection, as upstream). */
export const DEFAULT_HEAD_CONNECTION = '1';

function invalid(message: string, fix: string): PgStateError {
  return new PgStateError('INVALID_INPUT', message, { fix });
}

// Any string: the service takes the user id from the JWT's `sub` as is, and `sub: ''` is a valid (anonymous) user.
function assertUserId(userId: unknown): asserts userId is string {
  if (typeof userId !== 'string') {
    throw invalid('A write checkpoint needs a string user_id.', 'Pass the user id from the JWT `sub`.');
  }
}

/**
 * Creates (or advances) managed write checkpoints, one per distinct user; returns user -> new checkpoint.
 * One statement, so concurrent calls for the same user each get a distinct, larger value.
 */
export async function createManagedWriteCheckpoints(
  db: StorageDb,
  checkpoints: ManagedWriteCheckpointOptions[],
): Promise<Map<string, bigint>> {
  const byUser = new Map<string, Record<string, string>>();
  for (const checkpoint of checkpoints) {
    assertUserId(checkpoint?.user_id);
    const heads = checkpoint.heads;
    if (heads == null || typeof heads !== 'object' || Object.values(heads).some((v) => typeof v !== 'string')) {
      throw invalid(
        `Write checkpoint heads for user ${JSON.stringify(checkpoint.user_id)} must map connection ids to LSN strings.`,
        'Pass heads like {"1": "<current replication head LSN>"}.',
      );
    }
    // Last one wins for a user listed twice, as upstream.
    byUser.set(checkpoint.user_id, heads);
  }
  if (byUser.size === 0) return new Map();
  const rows = await db.query<{ user_id: string; write_checkpoint: bigint }>(
    `INSERT INTO ${db.names.writeCheckpoints} AS w (user_id, lsns, write_checkpoint, checkpoint_requested_at)
     SELECT u.user_id, u.lsns, 1, now() FROM unnest($1::text[], $2::jsonb[]) AS u(user_id, lsns)
     ON CONFLICT (user_id) DO UPDATE SET write_checkpoint = w.write_checkpoint + 1, lsns = EXCLUDED.lsns,
       checkpoint_requested_at = EXCLUDED.checkpoint_requested_at
     RETURNING user_id, write_checkpoint`,
    [[...byUser.keys()], [...byUser.values()].map((h) => JSON.stringify(h))],
  );
  return new Map(rows.map((r) => [r.user_id, r.write_checkpoint]));
}

/**
 * The user's managed write checkpoint if the given replication head has reached the head recorded with it, else
 * null (also when nothing was replicated yet, i.e. no head is known).
 */
export async function lastManagedWriteCheckpoint(
  db: StorageDb,
  userId: string,
  heads: Record<string, string>,
): Promise<bigint | null> {
  assertUserId(userId);
  const lsn = heads?.[DEFAULT_HEAD_CONNECTION];
  if (lsn == null) return null;
  // LSNs compare as byte strings (fixed-width hex from the replicator), hence COLLATE "C".
  const row = await db.first<{ write_checkpoint: bigint }>(
    `SELECT write_checkpoint FROM ${db.names.writeCheckpoints}
     WHERE user_id = $1 AND (lsns ->> $2) COLLATE "C" <= $3::text COLLATE "C"`,
    [userId, DEFAULT_HEAD_CONNECTION, lsn],
  );
  return row?.write_checkpoint ?? null;
}

/** The checkpoint the replicator last set for this user on this replication stream (custom mode). */
export async function lastCustomWriteCheckpoint(
  db: StorageDb,
  userId: string,
  replicationStreamId: number,
): Promise<bigint | null> {
  assertUserId(userId);
  const row = await db.first<{ write_checkpoint: bigint }>(
    `SELECT write_checkpoint FROM ${db.names.customWriteCheckpoints} WHERE user_id = $1 AND sync_rules_id = $2`,
    [userId, replicationStreamId],
  );
  return row?.write_checkpoint ?? null;
}

/** `lastWriteCheckpoint` of the storage contract, dispatched on the mode. */
export function lastWriteCheckpoint(
  db: StorageDb,
  mode: WriteCheckpointMode,
  replicationStreamId: number,
  filters: SyncStorageLastWriteCheckpointFilters,
): Promise<bigint | null> {
  if (mode === WriteCheckpointMode.MANAGED) {
    if (!('heads' in filters) || filters.heads == null) {
      return Promise.reject(
        invalid('Managed write checkpoints are looked up by replication head.', 'Pass {user_id, heads}.'),
      );
    }
    return lastManagedWriteCheckpoint(db, filters.user_id, filters.heads);
  }
  return lastCustomWriteCheckpoint(db, filters.user_id, replicationStreamId);
}

export function assertManagedMode(mode: WriteCheckpointMode): void {
  if (mode !== WriteCheckpointMode.MANAGED) {
    throw invalid(
      `Cannot create a managed write checkpoint while the write checkpoint mode is "${mode}".`,
      'Use custom write checkpoints from the replicator (addCustomWriteCheckpoint), or switch to managed mode.',
    );
  }
}
