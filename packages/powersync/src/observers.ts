import type { BaseObserverClient } from './types.js';

/** Listener registry with the public surface of lib-services-framework's `BaseObserver`. */
export class Observers<T> implements BaseObserverClient<T> {
  private readonly listeners = new Set<Partial<T>>();

  /** Adds a listener; the returned function removes it. */
  registerListener(listener: Partial<T>): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  iterateListeners(cb: (listener: Partial<T>) => unknown): void {
    for (const listener of [...this.listeners]) cb(listener);
  }

  async iterateAsyncListeners(cb: (listener: Partial<T>) => Promise<unknown>): Promise<void> {
    for (const listener of [...this.listeners]) await cb(listener);
  }

  clearListeners(): void {
    this.listeners.clear();
  }

  protected emit(fn: (listener: Partial<T>) => void): void {
    this.iterateListeners(fn);
  }
}
