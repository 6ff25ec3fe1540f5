/**
 * The one exponential backoff: retries of a delivery, reconnect and restart loops, the controller's
 * work queue. The n-th wait (1-based) is min(maxMs, baseMs * 2^(n-1)); with "equal" jitter it is drawn
 * between half and all of that, never below baseMs. Jitter spreads the retries of a burst that failed
 * together, so that a recovering service is not hit by all of them at once.
 */
export interface BackoffOptions {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly jitter?: "none" | "equal";
}

export function backoffDelay(
  attempt: number,
  options: BackoffOptions,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 40);
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** exponent);
  if (options.jitter !== "equal") return Math.round(ceiling);
  const jittered = ceiling / 2 + random() * (ceiling / 2);
  return Math.round(Math.max(Math.min(options.baseMs, options.maxMs), jittered));
}

/** A backoff for a loop: each `next()` waits longer, `reset()` after a success starts over. */
export class Backoff {
  #failures = 0;

  constructor(private readonly options: BackoffOptions) {}

  /** The wait after one more failure. */
  next(): number {
    this.#failures++;
    return backoffDelay(this.#failures, this.options);
  }

  /** Failures since the last reset. */
  get failures(): number {
    return this.#failures;
  }

  reset(): void {
    this.#failures = 0;
  }
}
