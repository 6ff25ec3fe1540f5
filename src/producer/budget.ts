/**
 * REQUEST_BYTES_IN_FLIGHT: a budget of request-body bytes the producer holds at once. Without it, memory
 * grows with connections × body size (50 clients sending 1 MiB each hold 50 MiB of bodies, and several
 * times that in copies and garbage while they are encoded and written).
 *
 * A request with Content-Length takes its whole size before its body is read and waits, in arrival
 * order, while there is no room: its body stays in the kernel's socket buffers and TCP slows the client
 * down. It never holds part of the budget while waiting for more, so waiting requests cannot block each
 * other for good. After `waitMs` it gets 503 with Retry-After instead. A body without Content-Length
 * (chunked) takes its bytes as they arrive and gets 503 at once when they do not fit, since waiting
 * while holding part of the budget could deadlock.
 */
export class ByteBudget {
  #used = 0;
  readonly #waiting: Waiter[] = [];

  /**
   * @param capacity bytes held at once at most; one request larger than that may still go alone, so
   *   that the budget never refuses a body REQUEST_SIZE_LIMIT allows.
   * @param waitMs how long a request waits for room before it is refused.
   */
  constructor(
    readonly capacity: number,
    readonly waitMs: number,
  ) {}

  get used(): number {
    return this.#used;
  }

  /** Requests waiting for room. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Takes `bytes` if they fit now and nobody waits before; never waits. */
  tryTake(bytes: number): boolean {
    if (this.#waiting.length > 0 || !this.#fits(bytes)) return false;
    this.#used += bytes;
    return true;
  }

  /**
   * Takes `bytes`: at once (undefined, no promise to allocate) when they fit, else a promise that
   * resolves once they are taken, or rejects with `onTimeout()` after `waitMs`.
   */
  take(bytes: number, onTimeout: () => Error): Promise<void> | undefined {
    if (this.tryTake(bytes)) return undefined;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        resolve,
        timer: setTimeout(() => {
          this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
          reject(onTimeout());
          // The head may have been the one that did not fit; those behind it may.
          this.#wake();
        }, this.waitMs),
      };
      this.#waiting.push(waiter);
    });
  }

  give(bytes: number): void {
    this.#used -= bytes;
    if (this.#waiting.length > 0) this.#wake();
  }

  #fits(bytes: number): boolean {
    return this.#used === 0 || this.#used + bytes <= this.capacity;
  }

  #wake(): void {
    for (;;) {
      const head = this.#waiting[0];
      if (head === undefined || !this.#fits(head.bytes)) return;
      this.#waiting.shift();
      clearTimeout(head.timer);
      this.#used += head.bytes;
      head.resolve();
    }
  }
}

interface Waiter {
  readonly bytes: number;
  readonly resolve: () => void;
  readonly timer: NodeJS.Timeout;
}
