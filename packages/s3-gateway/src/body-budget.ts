/**
 * One limit on the request-body bytes all requests together hold in memory. A handler's write is one atomic statement
 * with the whole object as a parameter, so a body cannot be streamed to PostgreSQL in pieces; instead a request waits
 * (first come, first served, its body left unread on the socket) until its declared size fits, and gets S3's
 * `503 SlowDown` if it waited too long. A single body larger than the budget still gets through when nothing else is
 * held, so memory stays under max(budget, one largest object) whatever the concurrency.
 */
import { S3Error } from './errors.js';

interface Waiter {
  bytes: number;
  grant: () => void;
}

export function slowDown(): S3Error {
  return new S3Error(503, 'SlowDown', 'Please reduce your request rate.');
}

export class BodyBudget {
  private used = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly limit: number) {}

  /** Bytes reserved by requests now. */
  get inUse(): number {
    return this.used;
  }

  /** Requests waiting for room. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Reserves `bytes`; resolves to the function that gives them back (safe to call twice). Throws SlowDown after
   * `waitMs`, or when `signal` aborts (the client went away) while waiting.
   */
  async acquire(bytes: number, waitMs: number, signal?: AbortSignal): Promise<() => void> {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.used -= bytes;
      this.pump();
    };
    if (this.queue.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return release;
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        grant: () => {
          cleanup();
          this.used += bytes;
          resolve();
        },
      };
      const giveUp = () => {
        const index = this.queue.indexOf(waiter);
        if (index !== -1) this.queue.splice(index, 1);
        cleanup();
        // The head may have been the one blocking smaller requests behind it.
        this.pump();
        reject(slowDown());
      };
      const timer = setTimeout(giveUp, waitMs);
      signal?.addEventListener('abort', giveUp, { once: true });
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', giveUp);
      };
      this.queue.push(waiter);
    });
    return release;
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit;
  }

  private pump(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.bytes)) this.queue.shift()!.grant();
  }
}
