import type { BucketDataSource } from '@powersync/service-sync-rules';
import {
  type BucketDataRequest,
  type BucketStorageBatch,
  type BucketStorageFactory,
  type CreateWriterOptions,
  type PersistedReplicationStream,
  type PersistedSyncConfigContent,
  type ReplicationCheckpoint,
  SourceTable,
  type SyncBucketDataChunk,
  syncRulesFromYaml,
  uuidForRow,
} from '../src/index.js';

export const WRITER: CreateWriterOptions = { defaultSchema: 'public', zeroLSN: '0/0', storeCurrentData: true };

export async function deploy(factory: BucketStorageFactory, yaml: string, storageVersion?: number) {
  const stream = await factory.updateSyncRules(syncRulesFromYaml(yaml, { storageVersion }));
  return { stream, content: stream.syncConfigContent[0]! };
}

/** A source table with a fixed id, like a replicator would resolve it. */
export async function table(writer: BucketStorageBatch, name: string, idIndex = 1, replicaIdColumns = ['id']) {
  const id = `6544e3899293153fa7b383${(30 + idIndex).toString().padStart(2, '0')}`;
  const { tables } = await writer.resolveTables({
    connection_id: 1,
    source: {
      connectionTag: SourceTable.DEFAULT_TAG,
      objectId: `${name}:${replicaIdColumns.join(',')}`,
      schema: 'public',
      name,
      replicaIdColumns: replicaIdColumns.map((c) => ({ name: c, type: 'VARCHAR', typeId: 25 })),
    },
    idGenerator: () => id,
  });
  return tables[0]!;
}

/** Replica id the Postgres replicator derives for a row with this `id`. */
export const rid = (id: string) => uuidForRow({ id });

export function checkpointAt(checkpoint: bigint, lsn: string | null = null): ReplicationCheckpoint {
  return { checkpoint, lsn, getParameterSets: async () => [] };
}

/** The stored name of a bucket such as `global[]` (versioned per stream on storage v2). */
export function bucket(
  stream: PersistedReplicationStream | PersistedSyncConfigContent,
  name: string,
  start: bigint = 0n,
): BucketDataRequest {
  const parsed = stream.parsed({ defaultSchema: 'public' });
  const at = name.indexOf('[');
  const definition = name.slice(0, at);
  const sources: BucketDataSource[] = parsed.syncConfigs.flatMap((c) => c.config.bucketDataSources);
  const source = sources.find((s) => s.uniqueName === definition);
  if (!source) throw new Error(`no bucket definition ${definition}`);
  return { bucket: parsed.hydrationState.getBucketSourceScope(source).bucketPrefix + name.slice(at), start, source };
}

export async function all<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

export function ops(chunks: SyncBucketDataChunk[]) {
  return (chunks[0]?.chunkData.data ?? []).map((d) => ({ op: d.op, object_id: d.object_id, checksum: d.checksum }));
}

export const GLOBAL_YAML = `
bucket_definitions:
  global:
    data:
      - SELECT id, description FROM "%"
`;
