// The checkpoint statements of a replication stream's `sync_rules` row: commit (make flushed ops visible, or park
// them until a commit is allowed), activation of a stream whose snapshot is done, and the NOTIFY that wakes
// checkpoint watchers in every process.
import { PgStateError } from '@pgstate/core';
import type { Queryable, StorageDb } from '../db.js';
import { type InternalOpId, SyncRuleState } from '../types.js';

/** NOTIFY channel carrying checkpoint events for one storage schema. */
export function checkpointChannel(schema: string): string {
  return `pgstate_powersync_${schema}`.slice(0, 63);
}

export interface CommittedCheckpoint {
  id: number;
  state: SyncRuleState;
  /** The stream's checkpoint after this commit (unchanged when the commit was not allowed). */
  last_checkpoint: bigint | null;
  can_checkpoint: boolean;
  /** The row changed: a new (or, with createEmptyCheckpoints, a repeated) checkpoint. */
  created: boolean;
}

/**
 * One statement, row-locked: checkpoint only when the snapshot is done and this LSN is not behind the last
 * checkpoint nor `no_checkpoint_before`; otherwise park the flushed op in keepalive_op for a later commit.
 */
export async function commitCheckpoint(
  db: StorageDb,
  groupId: number,
  lsn: string,
  persistedOp: InternalOpId | null,
  createEmptyCheckpoints: boolean,
): Promise<CommittedCheckpoint> {
  const n = db.names;
  const result = await db.first<CommittedCheckpoint>(
    `WITH selected AS (
       SELECT id, state, last_checkpoint, keepalive_op,
         (snapshot_done
           AND (last_checkpoint_lsn IS NULL OR last_checkpoint_lsn COLLATE "C" <= $2::text COLLATE "C")
           AND (no_checkpoint_before IS NULL OR no_checkpoint_before COLLATE "C" <= $2::text COLLATE "C")
         ) AS can_checkpoint
       FROM ${n.syncRules} WHERE id = $1 FOR UPDATE
     ), computed AS (
       SELECT s.*,
         CASE WHEN s.can_checkpoint THEN GREATEST(s.last_checkpoint, $3::int8, s.keepalive_op, 0)
              ELSE s.last_checkpoint END AS new_last_checkpoint,
         CASE WHEN s.can_checkpoint THEN NULL
              ELSE GREATEST(s.keepalive_op, $3::int8, 0) END AS new_keepalive_op
       FROM selected s
     ), updated AS (
       UPDATE ${n.syncRules} sr SET
         last_checkpoint_lsn = CASE WHEN c.can_checkpoint THEN $2 ELSE sr.last_checkpoint_lsn END,
         last_checkpoint_ts = CASE WHEN c.can_checkpoint THEN now() ELSE sr.last_checkpoint_ts END,
         last_keepalive_ts = now(),
         last_fatal_error = CASE WHEN c.can_checkpoint THEN NULL ELSE sr.last_fatal_error END,
         keepalive_op = c.new_keepalive_op,
         last_checkpoint = c.new_last_checkpoint,
         snapshot_lsn = CASE WHEN c.can_checkpoint THEN NULL ELSE sr.snapshot_lsn END
       FROM computed c
       WHERE sr.id = c.id
         AND (sr.keepalive_op IS DISTINCT FROM c.new_keepalive_op
           OR sr.last_checkpoint IS DISTINCT FROM c.new_last_checkpoint
           OR $4::boolean)
       RETURNING sr.id, sr.last_checkpoint_lsn
     )
     SELECT c.id, c.state, c.new_last_checkpoint AS last_checkpoint, u.last_checkpoint_lsn, c.can_checkpoint,
            u.id IS NOT NULL AS created
     FROM computed c LEFT JOIN updated u ON u.id = c.id`,
    [groupId, lsn, persistedOp, createEmptyCheckpoints],
  );
  if (result == null) {
    throw new PgStateError('NOT_FOUND', `Replication stream ${groupId} no longer exists.`, {
      fix: 'It was removed while replicating; restart replication.',
    });
  }
  return result;
}

/**
 * PROCESSING -> ACTIVE once the snapshot is done; the previously serving stream becomes STOP. Returns the stream's
 * state afterwards (undefined when the stream is gone) and whether this call activated it.
 */
export async function activateIfReady(
  db: StorageDb,
  groupId: number,
): Promise<{ state: SyncRuleState | undefined; activated: boolean }> {
  const n = db.names;
  return db.transaction(async (client) => {
    const row = await db.first<{ state: SyncRuleState; snapshot_done: boolean }>(
      `SELECT state, snapshot_done FROM ${n.syncRules} WHERE id = $1 FOR NO KEY UPDATE`,
      [groupId],
      client,
    );
    if (row?.state === SyncRuleState.PROCESSING && row.snapshot_done) {
      await db.query(`UPDATE ${n.syncRules} SET state = 'ACTIVE' WHERE id = $1`, [groupId], client);
      await db.query(
        `UPDATE ${n.syncRules} SET state = 'STOP' WHERE state IN ('ACTIVE', 'ERRORED') AND id <> $1`,
        [groupId],
        client,
      );
      return { state: SyncRuleState.ACTIVE, activated: true };
    }
    return { state: row?.state, activated: false };
  });
}

/** Raises `no_checkpoint_before` to `lsn` (never lowers it), optionally marking the whole snapshot done. */
export function raiseNoCheckpointBefore(
  db: StorageDb,
  groupId: number,
  lsn: string,
  options: { client?: Queryable; markDone?: boolean } = {},
) {
  return db.query(
    `UPDATE ${db.names.syncRules} SET
       ${options.markDone ? 'snapshot_done = true,' : ''}
       last_keepalive_ts = now(),
       no_checkpoint_before = CASE
         WHEN no_checkpoint_before IS NULL OR no_checkpoint_before COLLATE "C" < $2::text COLLATE "C" THEN $2
         ELSE no_checkpoint_before END
     WHERE id = $1`,
    [groupId, lsn],
    options.client,
  );
}
