/**
 * Delivery slots: how many entries may be in flight on this dispatcher at once (DISPATCH_CONCURRENCY),
 * and how many bytes of entries (DISPATCH_BYTES_IN_FLIGHT). The read loop and the take-overs ask here
 * how many entries to fetch, so that memory stays bounded whatever the backlog and whatever its bodies
 * weigh; close() waits here for the deliveries still running.
 *
 * An entry's size is known only once it is read, so the number to fetch is a guess from the entries seen
 * last: as many as fit in the bytes left if each weighs as much as the largest of them. The first read
 * fetches one. An entry larger than the whole budget still goes, alone, so nothing can wedge. A backlog
 * that turns from small entries to large ones can overshoot the budget with one read (as many large
 * entries as there were free slots); reads then stop until the bytes fall back under it, and a dispatcher
 * that starts (or restarts) begins again with one entry.
 */
import { entryBytes, type StreamEntry } from "../lib/entry.js";

export class Slots {
  /** Bytes held by each entry in flight, by id. */
  readonly #inFlight = new Map<string, number>();
  #bytes = 0;
  /** Sizes of the last SIZE_WINDOW entries started (a ring), and their largest: the guess for the next ones. */
  readonly #sizes = new Float64Array(SIZE_WINDOW);
  #next = 0;
  #largest = 0;
  /** The read loop, when it waits: woken when `ready()` holds. */
  #waiter: { ready: () => boolean; wake: () => void } | undefined;
  #drainWaiters: (() => void)[] = [];

  constructor(
    private readonly capacity: number,
    /** Bytes of entries in flight at most (one entry larger than that goes alone). */
    private readonly byteBudget: number,
  ) {}

  /** Ids of the entries in flight. */
  get ids(): ReadonlyMap<string, unknown> {
    return this.#inFlight;
  }

  get used(): number {
    return this.#inFlight.size;
  }

  /** Bytes of the entries in flight. */
  get bytes(): number {
    return this.#bytes;
  }

  free(): number {
    return this.capacity - this.#inFlight.size;
  }

  /**
   * How many entries to fetch now: no more than the free slots, and no more than fit in the bytes left
   * if each weighs as much as the largest of the last ones (one when none was seen yet). At least one
   * when nothing is in flight; 0 means wait.
   */
  readable(): number {
    const free = this.free();
    if (free <= 0) return 0;
    const guess = this.#largest > 0 ? this.#largest : this.byteBudget;
    const fit = Math.max(0, Math.floor((this.byteBudget - this.#bytes) / guess));
    return Math.min(free, this.#inFlight.size === 0 ? Math.max(1, fit) : fit);
  }

  /**
   * How many entries the read loop fetches next: waits until at least one may be read, then, since slots
   * free up one by one under load, up to `gatherMs` more for `gather` of them (or as many as the budget
   * holds of entries like the last ones, when fewer), so that one read fetches many. Never 0 unless
   * `signal` aborted: XREADGROUP's COUNT 0 would mean no limit at all.
   */
  async nextRead(gather: number, gatherMs: number, signal: AbortSignal): Promise<number> {
    for (;;) {
      await this.waitUntil(() => this.readable() > 0, signal);
      const guess = this.#largest > 0 ? this.#largest : this.byteBudget;
      const wanted = Math.min(gather, this.capacity, Math.max(1, Math.floor(this.byteBudget / guess)));
      if (this.readable() < wanted) await this.waitUntil(() => this.readable() >= wanted, signal, gatherMs);
      // A take-over may have taken the room meanwhile: wait again.
      const count = this.readable();
      if (count > 0 || signal.aborted) return count;
    }
  }

  /** Takes a slot for `entry`, counting its bytes; false when that entry is in flight already. */
  take(entry: StreamEntry): boolean {
    const { id } = entry;
    if (this.#inFlight.has(id)) return false;
    const bytes = entryBytes(entry);
    this.#inFlight.set(id, bytes);
    this.#bytes += bytes;
    this.#remember(bytes);
    return true;
  }

  release(id: string): void {
    const bytes = this.#inFlight.get(id);
    if (bytes === undefined) return;
    this.#inFlight.delete(id);
    this.#bytes -= bytes;
    if (this.#waiter?.ready()) this.#wake();
    if (this.#inFlight.size === 0) for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  /** Resolves when `ready()` holds (checked now and at every release), when `signal` aborts, or after `timeoutMs`. */
  waitUntil(ready: () => boolean, signal: AbortSignal, timeoutMs?: number): Promise<void> {
    if (ready() || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => this.#wake();
      const timer = timeoutMs === undefined ? undefined : setTimeout(wake, timeoutMs);
      signal.addEventListener("abort", wake, { once: true });
      this.#waiter = {
        ready,
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

  #remember(bytes: number): void {
    const dropped = this.#sizes[this.#next] as number;
    this.#sizes[this.#next] = bytes;
    this.#next = (this.#next + 1) % SIZE_WINDOW;
    if (bytes >= this.#largest) this.#largest = bytes;
    else if (dropped === this.#largest) this.#largest = Math.max(...this.#sizes);
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.wake();
  }
}

/**
 * How many of the last entries the size guess looks back on: enough that one large entry among small
 * ones keeps the reads careful for a while, few enough that they speed up again soon after.
 */
const SIZE_WINDOW = 64;
