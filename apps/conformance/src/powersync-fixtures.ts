/** What the PowerSync lanes share: the storage factory, the replicator's LSN format and its view of `public.todos`. */
import {
  normalizeStorageConfig,
  PgStateBucketStorageFactory,
  type PgStateStorageConfig,
  type SourceEntityDescriptor,
} from '@pgstate/powersync';

export const POWERSYNC_SCHEMA = 'powersync';

/** The n-th LSN in the replicator's `XXXXXXXX/XXXXXXXX` form (ordered as text, as the service compares them). */
export const lsn = (n: number) => `00000000/${n.toString(16).toUpperCase().padStart(8, '0')}`;

/** The relation as the Postgres replicator describes `public.todos` (replica identity: primary key `id text`). */
export const TODOS: SourceEntityDescriptor = {
  connectionTag: 'default',
  objectId: 16_385,
  schema: 'public',
  name: 'todos',
  replicaIdColumns: [{ name: 'id', type: 'text', typeId: 25 }],
};

/** The storage factory the service builds from `storage: { type: pgstate, uri }`. */
export const factoryFor = (uri: string, extra: Partial<PgStateStorageConfig> = {}) =>
  new PgStateBucketStorageFactory({
    config: normalizeStorageConfig({ type: 'pgstate', uri, schema: POWERSYNC_SCHEMA, ...extra }),
  });
