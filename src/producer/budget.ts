/**
 * REQUEST_BYTES_IN_FLIGHT: a budget of request-body bytes the producer holds at once. Without it, memory
 * grows with connections × body size (50 clients sending 1 MiB each hold 50 MiB of bodies, and several
 * times that in copies and garbage while they are encoded and written).
 *
 * Bytes are taken as a body arrives, chunk by chunk, never as declared: a connection that sends headers
 * and no body holds nothing, a slow one holds what it sent. (Taking the declared Content-Length up front
 * let two connections that declared 4 MiB and sent nothing hold the whole default budget: every other
 * request got 503 until Node cut them five minutes later.) A request holds its bytes until Redis has
 * answered for it, then gives them all back.
 *
 * A chunk that finds no room waits, its body paused (the socket is not read, so TCP slows the client
 * down), and waiting chunks are served in this order:
 * 1. the oldest request still reading its body, which may pass `capacity` by up to `overdraft` (one
 *    REQUEST_SIZE_LIMIT); its bytes are not counted against the room of the others;
 * 2. requests holding no more than their fair share (`capacity` / requests reading), oldest first;
 * 3. requests holding more, oldest first, only when nobody within its share waits.
 * Serving stops at the first chunk that does not fit, so a large chunk is not passed for ever by small
 * ones. A chunk that waits longer than `waitMs` refuses its request (503 with Retry-After, nothing
 * stored); the request gives back everything it held.
 *
 * Why waiting bodies cannot block each other for good (the deadlock that reserving the declared length
 * used to rule out, since then no request held part of its body while waiting for more): a request
 * other than the oldest reader takes only while the others' bytes (all but the oldest reader's,
 * including requests being stored) stay within `capacity`, so the requests still reading, the oldest
 * excepted, hold at most `capacity` between them. The oldest reader holds at most one body, and takes
 * while all bytes stay within `capacity + overdraft`: when it cannot, requests being stored hold the
 * difference, and Redis answers for them within REDIS_TIMEOUT. So the oldest reader always finishes,
 * the next one becomes the oldest, and so on. Memory for bodies is at most `capacity + overdraft`.
 *
 * A slow sender cannot hold more than a fair share while others need room. Once anybody waits, a
 * request over its share gets no more until nobody within its share waits. And what it took while
 * nobody waited is taken back: when a chunk within its share has waited half of `waitMs`, the requests
 * over their share (the oldest reader excepted), largest first, are cut (503 with Retry-After, nothing
 * stored) until it fits, if cutting them makes it fit. A fast upload over its share is rarely cut: its
 * chunks are served whenever nobody within its share waits, and that wait is short while bodies flow.
 * A body that stops coming is cut by BODY_IDLE_TIMEOUT (http.ts's readBody), a whole request by
 * REQUEST_READ_TIMEOUT (connections.ts).
 */
import type { AsyncError } from "../lib/errors.js";
import type { BodyAdmission } from "../lib/http.js";

export class ByteBudget {
  #used = 0;
  #waiting = 0;
  #reading = 0;
  /**
   * Requests still reading their body, oldest first: a list linked through the holds themselves, since
   * every request joins and leaves it (a Set and its iterator cost several times more per request).
   */
  #first: Hold | undefined;
  #last: Hold | undefined;

  /**
   * @param capacity bytes held at once by all requests but the oldest reader.
   * @param overdraft how far the oldest reader may pass `capacity`: the largest body, so that the budget
   *   never refuses a body REQUEST_SIZE_LIMIT allows, however small `capacity` is.
   * @param waitMs how long a chunk waits for room before its request is refused.
   */
  constructor(
    readonly capacity: number,
    readonly overdraft: number,
    readonly waitMs: number,
  ) {}

  /** Bytes held now. */
  get used(): number {
    return this.#used;
  }

  /** Requests whose body is paused, waiting for room. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Requests still reading their body. */
  get reading(): number {
    return this.#reading;
  }

  /**
   * A request about to read its body; it holds nothing yet, and is its body's admission (readBody).
   * Give it back with `close`. `refusal` is the error (a 503) for a chunk that waited too long, and for a
   * body the budget cuts to make room for others (see above).
   */
  open(refusal: () => AsyncError): BodyHold {
    const hold = new Hold(this, refusal, this.#last);
    if (this.#last === undefined) this.#first = hold;
    else this.#last.next = hold;
    this.#last = hold;
    this.#reading++;
    return hold;
  }

  /**
   * Takes `bytes` for `hold`'s next chunk (its `admit`): at once (undefined, no promise to allocate) when
   * they fit and nobody waits to be served first, else a promise that resolves once they are taken, or
   * rejects with its refusal after `waitMs`.
   */
  take(request: BodyHold, bytes: number): Promise<void> | undefined {
    const hold = request as Hold;
    // A body cut by `#reclaim` (or one asking twice at once, a bug) gets no room; refusing it is safer
    // than throwing inside a stream's data handler.
    if (hold.wait !== undefined || !hold.reading) return Promise.reject(hold.refusal());
    if (this.#waiting === 0 && this.#fits(hold, bytes)) {
      this.#add(hold, bytes);
      return undefined;
    }
    const wait: Wait = { bytes, resolve: undefined, timer: undefined };
    hold.wait = wait;
    this.#waiting++;
    this.#wake();
    if (hold.wait !== wait) return undefined;
    return new Promise((resolve, reject) => {
      wait.resolve = resolve;
      const half = this.waitMs / 2;
      // Half-way, and once more before it gives up, a chunk within its share takes back room from
      // bodies over theirs (the room may have gone to chunks before it in line the first time).
      const check = (last: boolean) => {
        this.#reclaim(hold, wait);
        if (hold.wait !== wait) return;
        if (!last) {
          wait.timer = setTimeout(() => check(true), this.waitMs - half);
          return;
        }
        this.#unwait(hold);
        reject(hold.refusal());
        // It may have been the first in line; those after it may fit.
        this.#wake();
      };
      wait.timer = setTimeout(() => check(false), half);
    });
  }

  /** The body is read: `hold` keeps its bytes (until `close`) but is no longer a reader. */
  doneReading(request: BodyHold): void {
    // When it was the oldest reader, the next one is: room to look at again.
    if (this.#unlink(request as Hold)) this.#wake();
  }

  /** Gives back everything `hold` holds and drops a chunk it has waiting. Safe to call twice. */
  close(request: BodyHold): void {
    const hold = request as Hold;
    this.#unwait(hold);
    const wasReading = this.#unlink(hold);
    if (hold.held === 0 && !wasReading) return;
    this.#used -= hold.held;
    hold.held = 0;
    this.#wake();
  }

  /**
   * Cuts the readers over their share, largest first, until `wait` (a chunk within its share that
   * waited half of `waitMs`) fits; or none, when cutting them all would not make it fit.
   */
  #reclaim(hold: Hold, wait: Wait): void {
    const oldest = this.#first;
    const share = this.capacity / this.#reading;
    if (hold === oldest || hold.held + wait.bytes > share) return;
    let missing = this.#used - (oldest?.held ?? 0) + wait.bytes - this.capacity;
    const over: Hold[] = [];
    for (let h = oldest?.next; h !== undefined; h = h.next) if (h.held > share) over.push(h);
    if (over.reduce((sum, h) => sum + h.held, 0) < missing) return;
    over.sort((a, b) => b.held - a.held);
    for (const victim of over) {
      if (missing <= 0) break;
      missing -= victim.held;
      this.#unwait(victim);
      this.#unlink(victim);
      this.#used -= victim.held;
      victim.held = 0;
      victim.stop?.(victim.refusal());
    }
    this.#wake();
  }

  /** Takes `hold` out of the readers; false when it was not one. */
  #unlink(hold: Hold): boolean {
    if (!hold.reading) return false;
    hold.reading = false;
    if (hold.prev === undefined) this.#first = hold.next;
    else hold.prev.next = hold.next;
    if (hold.next === undefined) this.#last = hold.prev;
    else hold.next.prev = hold.prev;
    hold.prev = undefined;
    hold.next = undefined;
    this.#reading--;
    return true;
  }

  #fits(hold: Hold, bytes: number): boolean {
    const oldest = this.#first;
    if (hold === oldest) return this.#used + bytes <= this.capacity + this.overdraft;
    return this.#used - (oldest?.held ?? 0) + bytes <= this.capacity;
  }

  #add(hold: Hold, bytes: number): void {
    hold.held += bytes;
    this.#used += bytes;
  }

  #unwait(hold: Hold): Wait | undefined {
    const wait = hold.wait;
    if (wait === undefined) return undefined;
    hold.wait = undefined;
    this.#waiting--;
    clearTimeout(wait.timer);
    return wait;
  }

  #wake(): void {
    while (this.#waiting > 0) {
      const next = this.#next();
      if (next === undefined || !this.#fits(next, next.wait?.bytes ?? 0)) return;
      const wait = this.#unwait(next) as Wait;
      this.#add(next, wait.bytes);
      wait.resolve?.();
    }
  }

  /** The waiting request served first (see the order above). */
  #next(): Hold | undefined {
    const share = this.capacity / this.#reading;
    let overShare: Hold | undefined;
    for (let hold = this.#first; hold !== undefined; hold = hold.next) {
      const wait = hold.wait;
      if (wait !== undefined) {
        if (hold === this.#first || hold.held + wait.bytes <= share) return hold;
        overShare ??= hold;
      }
    }
    return overShare;
  }
}

/** What one request holds of the budget: its body's admission (readBody). */
export interface BodyHold extends BodyAdmission {
  readonly held: number;
  admit(bytes: number): Promise<void> | undefined;
}

/** The same, as the budget keeps it: the chunk it has waiting, how to stop it, its place among readers. */
class Hold implements BodyHold {
  held = 0;
  wait: Wait | undefined;
  /** Stops its body (readBody's), once reading started. */
  stop: ((err: AsyncError) => void) | undefined;
  reading = true;
  next: Hold | undefined;

  constructor(
    readonly budget: ByteBudget,
    readonly refusal: () => AsyncError,
    public prev: Hold | undefined,
  ) {}

  admit(bytes: number): Promise<void> | undefined {
    return this.budget.take(this, bytes);
  }

  started(stop: (err: AsyncError) => void): void {
    this.stop = stop;
  }
}

interface Wait {
  readonly bytes: number;
  /** Set once the chunk really waits (a promise was made); undefined when it was served at once. */
  resolve: (() => void) | undefined;
  timer: NodeJS.Timeout | undefined;
}
