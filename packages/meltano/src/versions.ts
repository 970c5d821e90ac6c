/**
 * What this store last wrote to a state's partial part, keyed by state id, with the row version (`xmin`) the write
 * produced. A merge can then skip reading the row: it writes on the condition that the row is still exactly that
 * version, and reads only when it is not (someone else wrote since, or the entry was evicted). Only text is kept
 * (no shared objects a caller could mutate), bounded by entries and characters.
 */
export interface WrittenPartial {
  /** `xmin::text` of the row version this store wrote. */
  version: string;
  /** The partial part as stored (null: empty). */
  partial: string | null;
}

export class WrittenPartials {
  readonly #entries = new Map<string, WrittenPartial>();
  #chars = 0;

  constructor(
    readonly maxEntries = 256,
    readonly maxChars = 4 * 1024 * 1024,
  ) {}

  get(stateId: string): WrittenPartial | undefined {
    return this.#entries.get(stateId);
  }

  set(stateId: string, entry: WrittenPartial): void {
    this.delete(stateId);
    const size = stateId.length + (entry.partial?.length ?? 0);
    if (size > this.maxChars / 4) return; // a huge state would evict everything else
    this.#entries.set(stateId, entry);
    this.#chars += size;
    // Map order is insertion order: the first entries are the least recently written.
    for (const [id, old] of this.#entries) {
      if (this.#entries.size <= this.maxEntries && this.#chars <= this.maxChars) break;
      this.#entries.delete(id);
      this.#chars -= id.length + (old.partial?.length ?? 0);
    }
  }

  delete(stateId: string): void {
    const old = this.#entries.get(stateId);
    if (!old) return;
    this.#entries.delete(stateId);
    this.#chars -= stateId.length + (old.partial?.length ?? 0);
  }

  clear(): void {
    this.#entries.clear();
    this.#chars = 0;
  }

  get size(): number {
    return this.#entries.size;
  }
}
