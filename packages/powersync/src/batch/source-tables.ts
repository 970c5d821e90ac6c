// Source tables of a replication stream: resolving a relation the replicator reports to its stored row (creating it,
// not snapshotted yet, when new) and turning stored rows back into SourceTable objects.
import { randomUUID } from 'node:crypto';
import type { HydratedSyncConfig } from '@powersync/service-sync-rules';
import type { StorageDb } from '../db.js';
import { SourceTable } from '../source-table.js';
import type { ColumnDescriptor, ResolveTablesOptions, ResolveTablesResult } from '../types.js';
import { tableIdString } from './record-operation.js';

interface SourceTableRow {
  id: string;
  group_id: number;
  connection_id: number;
  relation_id: { object_id?: number | string } | null;
  schema_name: string;
  table_name: string;
  replica_id_columns: { name: string; type?: string; type_oid?: number }[] | null;
  snapshot_done: boolean;
  snapshot_total_estimated_count: bigint | null;
  snapshot_replicated_count: bigint | null;
  snapshot_last_key: Buffer | null;
}

/** The stored table for this relation (created when new) and the older mappings the caller must drop. */
export async function resolveSourceTables(
  db: StorageDb,
  groupId: number,
  syncRules: HydratedSyncConfig,
  options: ResolveTablesOptions,
): Promise<ResolveTablesResult> {
  const { connection_id, source } = options;
  const columns = source.replicaIdColumns.map((c) => ({
    name: c.name,
    type: c.type,
    type_oid: c.typeId == null ? undefined : Number(c.typeId),
  }));
  const relation = { object_id: source.objectId };
  const n = db.names;
  return db.transaction(async (client) => {
    const matchRelation = source.objectId != null;
    let row = await db.first<SourceTableRow>(
      `SELECT * FROM ${n.sourceTables}
       WHERE group_id = $1 AND connection_id = $2 AND schema_name = $3 AND table_name = $4
         AND replica_id_columns = $5::jsonb AND (NOT $7 OR relation_id = $6::jsonb)`,
      [groupId, connection_id, source.schema, source.name, JSON.stringify(columns), relation, matchRelation],
      client,
    );
    if (row == null) {
      const id = options.idGenerator ? tableIdString(options.idGenerator()) : randomUUID();
      row = await db.first<SourceTableRow>(
        // A new table is not snapshotted yet: the replicator copies its existing rows, then marks it done.
        `INSERT INTO ${n.sourceTables}
           (id, group_id, connection_id, relation_id, schema_name, table_name, replica_id_columns, snapshot_done)
         VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7::jsonb, false) RETURNING *`,
        [id, groupId, connection_id, relation, source.schema, source.name, JSON.stringify(columns)],
        client,
      );
    }
    const table = sourceTableFromRow(row!, source.connectionTag, syncRules, source.objectId, source.replicaIdColumns);
    table.storeCurrentData = source.sendsCompleteRows !== true;
    // Older mappings of the same relation or name (renames, replica identity changes) are for the caller to drop.
    const stale = await db.query<SourceTableRow>(
      `SELECT * FROM ${n.sourceTables}
       WHERE group_id = $1 AND connection_id = $2 AND id <> $3
         AND ((schema_name = $4 AND table_name = $5) OR ($7 AND relation_id = $6::jsonb))`,
      [groupId, connection_id, row!.id, source.schema, source.name, relation, matchRelation],
      client,
    );
    return {
      tables: [table],
      dropTables: stale.map((r) =>
        sourceTableFromRow(r, source.connectionTag, syncRules, r.relation_id?.object_id ?? 0),
      ),
    };
  });
}

/** A source table as stored now (its snapshot progress included), or null when it was dropped. */
export async function loadSourceTable(
  db: StorageDb,
  groupId: number,
  syncRules: HydratedSyncConfig,
  table: SourceTable,
): Promise<SourceTable | null> {
  const row = await db.first<SourceTableRow>(`SELECT * FROM ${db.names.sourceTables} WHERE group_id = $1 AND id = $2`, [
    groupId,
    String(table.id),
  ]);
  if (row == null) return null;
  return sourceTableFromRow(row, table.ref.connectionTag, syncRules, row.relation_id?.object_id);
}

function sourceTableFromRow(
  row: SourceTableRow,
  connectionTag: string,
  syncRules: HydratedSyncConfig,
  objectId: number | string | undefined,
  replicaIdColumns?: ColumnDescriptor[],
): SourceTable {
  const ref = { connectionTag, schema: row.schema_name, name: row.table_name };
  const table = new SourceTable({
    id: row.id,
    ref,
    objectId,
    replicaIdColumns:
      replicaIdColumns ??
      (row.replica_id_columns ?? []).map((c) => ({ name: c.name, type: c.type, typeId: c.type_oid })),
    snapshotComplete: row.snapshot_done ?? true,
    ...syncRules.getMatchingSources(ref),
  });
  if (!table.snapshotComplete) {
    table.snapshotStatus = {
      totalEstimatedCount: Number(row.snapshot_total_estimated_count ?? -1n),
      replicatedCount: Number(row.snapshot_replicated_count ?? 0n),
      lastKey: row.snapshot_last_key,
    };
  }
  table.syncEvent = syncRules.tableTriggersEvent(ref);
  table.syncData = table.bucketDataSources.length > 0;
  table.syncParameters = table.parameterLookupSources.length > 0;
  return table;
}
