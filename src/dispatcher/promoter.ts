/**
 * Moves due retries from the retry schedule back into the stream, where any dispatcher reads them like
 * new entries. Sleeps until the next one is due, but at most PROMOTE_MAX_SLEEP_MS, since other
 * dispatchers may schedule earlier ones; a retry scheduled here that is due sooner wakes it early.
 * A retry that cannot be re-added is dead-lettered by the script, in the same call as the others.
 */
import { Backoff } from "../lib/backoff.js";
import type { Logger } from "../lib/logger.js";
import { pause } from "../lib/wait.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { DispatcherScripts } from "./scripts.js";

const PROMOTE_BATCH = 500;
const PROMOTE_MAX_SLEEP_MS = 500;
/** After a failed pass (Redis away or full): 500 ms, doubling up to 5 s, and a warning now and then. */
const PROMOTE_BACKOFF = { baseMs: PROMOTE_MAX_SLEEP_MS, maxMs: 5000 };
const WARN_EVERY_FAILURES = 12;

export class Promoter {
  #loop: Promise<void> = Promise.resolve();
  /** Ends the current sleep early. */
  #wake: AbortController | undefined;
  #sleepsUntil = 0;

  constructor(
    private readonly scripts: DispatcherScripts,
    private readonly metrics: Pick<DispatcherMetrics, "promoted">,
    private readonly logger: Logger,
  ) {}

  /** Starts promoting, until `closing` aborts. */
  start(closing: AbortSignal): void {
    closing.addEventListener("abort", () => this.#wake?.abort(), { once: true });
    this.#loop = this.#run(closing);
  }

  /** Resolves when the loop has ended. */
  stopped(): Promise<void> {
    return this.#loop;
  }

  /** A retry was scheduled here, due in `delayMs`: promote it on time, even if the loop sleeps longer. */
  wake(delayMs: number): void {
    if (Date.now() + delayMs < this.#sleepsUntil) this.#wake?.abort();
  }

  async #run(closing: AbortSignal): Promise<void> {
    const backoff = new Backoff(PROMOTE_BACKOFF);
    while (!closing.aborted) {
      let sleepMs = PROMOTE_MAX_SLEEP_MS;
      try {
        const { moved, deadLettered, nextDueInMs } = await this.scripts.promoteDue(PROMOTE_BATCH);
        backoff.reset();
        if (moved > 0) this.metrics.promoted.inc(moved);
        if (deadLettered > 0) {
          this.logger.warn(
            { deadLettered },
            "due retries that could not be re-added (not a field list, or too many fields) were dead-lettered as malformed",
          );
        }
        if (moved + deadLettered >= PROMOTE_BATCH) sleepMs = 0;
        else if (nextDueInMs !== undefined)
          sleepMs = Math.max(5, Math.min(PROMOTE_MAX_SLEEP_MS, nextDueInMs));
      } catch (err) {
        sleepMs = backoff.next();
        if (!closing.aborted && backoff.failures % WARN_EVERY_FAILURES === 1) {
          this.logger.warn(
            { err: String(err), failures: backoff.failures },
            "moving due retries failed; retrying",
          );
        }
      }
      if (sleepMs > 0 && !closing.aborted) {
        this.#sleepsUntil = Date.now() + sleepMs;
        this.#wake = new AbortController();
        await pause(sleepMs, this.#wake.signal);
        this.#wake = undefined;
      }
    }
  }
}
