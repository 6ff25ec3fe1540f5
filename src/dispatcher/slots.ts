/**
 * Delivery slots: how many entries may be in flight on this dispatcher at once (DISPATCH_CONCURRENCY).
 * The read loop waits here for free slots, so that it never asks Redis for more entries than it can
 * start, and close() waits here for the deliveries still running.
 */
export class Slots {
  readonly #inFlight = new Set<string>();
  /** The read loop, when it waits: woken when `slots` are free. */
  #waiter: { slots: number; wake: () => void } | undefined;
  #drainWaiters: (() => void)[] = [];

  constructor(private readonly capacity: number) {}

  /** Ids of the entries in flight. */
  get ids(): ReadonlySet<string> {
    return this.#inFlight;
  }

  get used(): number {
    return this.#inFlight.size;
  }

  free(): number {
    return this.capacity - this.#inFlight.size;
  }

  /** Takes a slot for the entry `id`; false when that entry is in flight already. */
  take(id: string): boolean {
    if (this.#inFlight.has(id)) return false;
    this.#inFlight.add(id);
    return true;
  }

  release(id: string): void {
    this.#inFlight.delete(id);
    if (this.#waiter !== undefined && this.free() >= this.#waiter.slots) this.#wake();
    if (this.#inFlight.size === 0) for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  /** Resolves when `slots` slots are free, when `signal` aborts, or after `timeoutMs` when given. */
  waitFor(slots: number, signal: AbortSignal, timeoutMs?: number): Promise<void> {
    if (this.free() >= slots || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => this.#wake();
      const timer = timeoutMs === undefined ? undefined : setTimeout(wake, timeoutMs);
      signal.addEventListener("abort", wake, { once: true });
      this.#waiter = {
        slots,
        wake: () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", wake);
          resolve();
        },
      };
    });
  }

  /** Resolves when no entry is in flight. */
  drained(): Promise<void> {
    if (this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.wake();
  }
}
