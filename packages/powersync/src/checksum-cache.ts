import { addChecksums } from './encoding.js';
import type {
  BucketChecksum,
  ChecksumMap,
  FetchPartialBucketChecksum,
  InternalOpId,
  PartialChecksumMap,
  PartialOrFullChecksum,
} from './types.js';

export interface ChecksumCacheOptions {
  fetchChecksums: (batch: FetchPartialBucketChecksum[]) => Promise<PartialChecksumMap>;
  /** Buckets kept (least recently used dropped first). */
  maxBuckets?: number;
  /** Entries older than this are not reused (default 60 min, like upstream's bucket count TTL). */
  ttlMs?: number;
}

interface Entry {
  checkpoint: InternalOpId;
  checksum: BucketChecksum;
  at: number;
}

const KEEP_PER_BUCKET = 4;

/**
 * Bucket checksums by checkpoint. A later checkpoint's checksum = a cached earlier one + the partial sum of the
 * ops after it; that stays valid under compaction because MOVE keeps its checksum and CLEAR carries the sum of
 * what it replaced (a range containing a CLEAR comes back as a full checksum and replaces the cached one).
 */
export class ChecksumCache {
  private readonly buckets = new Map<string, Entry[]>();
  private readonly maxBuckets: number;
  private readonly ttlMs: number;

  constructor(private readonly options: ChecksumCacheOptions) {
    this.maxBuckets = options.maxBuckets ?? 100_000;
    this.ttlMs = options.ttlMs ?? 60 * 60_000;
  }

  async getChecksumMap(checkpoint: InternalOpId, buckets: string[]): Promise<ChecksumMap> {
    const result: ChecksumMap = new Map();
    const requests: FetchPartialBucketChecksum[] = [];
    const bases = new Map<string, BucketChecksum | null>();
    const now = Date.now();
    for (const bucket of new Set(buckets)) {
      const base = this.best(bucket, checkpoint, now);
      if (base?.checkpoint === checkpoint) {
        result.set(bucket, base.checksum);
        continue;
      }
      bases.set(bucket, base?.checksum ?? null);
      requests.push(base ? { bucket, start: base.checkpoint, end: checkpoint } : { bucket, end: checkpoint });
    }
    if (requests.length > 0) {
      const fetched = await this.options.fetchChecksums(requests);
      for (const { bucket } of requests) {
        const checksum = combine(bucket, bases.get(bucket) ?? null, fetched.get(bucket) ?? null);
        this.store(bucket, checkpoint, checksum, now);
        result.set(bucket, checksum);
      }
    }
    // Preserve request order for callers that iterate.
    return new Map(buckets.map((b) => [b, result.get(b)!]));
  }

  clear(): void {
    this.buckets.clear();
  }

  private best(bucket: string, checkpoint: InternalOpId, now: number): Entry | undefined {
    const entries = this.buckets.get(bucket);
    if (!entries) return undefined;
    let best: Entry | undefined;
    for (const e of entries) {
      if (e.checkpoint <= checkpoint && now - e.at <= this.ttlMs && (!best || e.checkpoint > best.checkpoint)) best = e;
    }
    if (best) {
      // Refresh LRU position.
      this.buckets.delete(bucket);
      this.buckets.set(bucket, entries);
    }
    return best;
  }

  private store(bucket: string, checkpoint: InternalOpId, checksum: BucketChecksum, now: number): void {
    const entries = (this.buckets.get(bucket) ?? []).filter((e) => e.checkpoint !== checkpoint);
    entries.push({ checkpoint, checksum, at: now });
    entries.sort((a, b) => (a.checkpoint < b.checkpoint ? 1 : -1));
    this.buckets.delete(bucket);
    this.buckets.set(bucket, entries.slice(0, KEEP_PER_BUCKET));
    while (this.buckets.size > this.maxBuckets) {
      const oldest = this.buckets.keys().next().value;
      if (oldest === undefined) break;
      this.buckets.delete(oldest);
    }
  }
}

function combine(bucket: string, base: BucketChecksum | null, added: PartialOrFullChecksum | null): BucketChecksum {
  if (added != null && 'checksum' in added) return added;
  const partial = added ?? { bucket, partialChecksum: 0, partialCount: 0 };
  if (base == null) return { bucket, checksum: partial.partialChecksum, count: partial.partialCount };
  return {
    bucket,
    checksum: addChecksums(base.checksum, partial.partialChecksum),
    count: base.count + partial.partialCount,
  };
}
