import type {
  BucketHandler,
  ByteRange,
  ListRequest,
  ListResult,
  ObjectBody,
  ObjectInfo,
  PutConditions,
} from '@pgstate/core';
import { PulumiBlobStore, type PulumiBlobStoreOptions } from './blob-store.js';

/**
 * An S3 bucket for the stock Pulumi CLI (`pulumi login 's3://BUCKET?endpoint=...'`), served by the S3 gateway from
 * a Pulumi blob store. Accepts a store, store options, or a `postgres://...?table=...&layout=...` URL.
 */
export function createPulumiBucketHandler(
  source: PulumiBlobStore | PulumiBlobStoreOptions | string,
): BucketHandler & { readonly store: PulumiBlobStore } {
  const owned = !(source instanceof PulumiBlobStore);
  const store =
    source instanceof PulumiBlobStore
      ? source
      : new PulumiBlobStore(typeof source === 'string' ? { connection: source } : source);
  return {
    kind: 'pulumi',
    store,
    getObject: (key: string, range?: ByteRange): Promise<ObjectBody | null> => store.get(key, range),
    headObject: (key: string): Promise<ObjectInfo | null> => store.head(key),
    putObject: (key: string, body: Uint8Array, conditions?: PutConditions): Promise<ObjectInfo> =>
      store.put(key, body, conditions),
    copyObject: (sourceKey: string, destinationKey: string): Promise<ObjectInfo | null> =>
      store.copy(sourceKey, destinationKey),
    deleteObject: (key: string): Promise<boolean> => store.delete(key),
    listObjects: (request: ListRequest): Promise<ListResult> => store.list(request),
    async close(): Promise<void> {
      if (owned) await store.close();
    },
  };
}
