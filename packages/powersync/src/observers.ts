/** Listener registry with service-core's `registerListener` shape (returns an unsubscribe function). */
export class Observers<T> {
  private readonly listeners = new Set<Partial<T>>();

  registerListener(listener: Partial<T>): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  protected emit(fn: (listener: Partial<T>) => void): void {
    for (const listener of [...this.listeners]) fn(listener);
  }

  protected clearListeners(): void {
    this.listeners.clear();
  }
}
