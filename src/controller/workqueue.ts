/**
 * A small rate-limited work queue after client-go's: a key waiting in the queue is there once however
 * often it is added; a key being processed is never handed to a second worker, and if it is added again
 * meanwhile it is processed once more afterwards; failed keys come back after an exponential backoff
 * per key, which `forget` resets on success.
 */
import { backoffDelay } from "../lib/backoff.js";
import { errorCodeOf } from "../lib/errors.js";
import type { Logger } from "../lib/logger.js";
import type { ControllerMetrics } from "./metrics.js";

export interface WorkQueueOptions {
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  /** Keys waiting to be processed, including those being processed that were added again. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  private shuttingDown = false;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(options: WorkQueueOptions = {}) {
    this.baseDelayMs = options.baseDelayMs ?? 50;
    this.maxDelayMs = options.maxDelayMs ?? 300_000;
  }

  /** Keys waiting (not counting those being processed). */
  get depth(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(key);
    } else {
      this.queue.push(key);
    }
  }

  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.add(timer);
  }

  /** Adds the key again after its backoff: base * 2^(failures so far), capped. */
  addRateLimited(key: string): number {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    const delay = backoffDelay(failures + 1, { baseMs: this.baseDelayMs, maxMs: this.maxDelayMs });
    this.addAfter(key, delay);
    return delay;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** The next key to process, waiting for one; undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Must be called when a key from `get` is finished, whatever the outcome. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const waiter of this.waiters.splice(0)) waiter(undefined);
  }
}

/**
 * One worker: takes keys from the queue until it shuts down, reconciles each, forgets a key's failures
 * on success and puts it back after its backoff on failure.
 */
export async function runWorker(
  queue: WorkQueue,
  reconcile: (key: string) => Promise<void>,
  metrics: Pick<ControllerMetrics, "reconcileDuration" | "reconciles" | "reconcileErrors">,
  logger: Logger,
): Promise<void> {
  for (;;) {
    const key = await queue.get();
    if (key === undefined) return;
    const stop = metrics.reconcileDuration.startTimer();
    try {
      await reconcile(key);
      queue.forget(key);
      metrics.reconciles.inc({ result: "success" });
    } catch (err) {
      const retryInMs = queue.addRateLimited(key);
      metrics.reconciles.inc({ result: "error" });
      metrics.reconcileErrors.inc({ code: errorCodeOf(err) });
      logger.warn({ err, key, retryInMs }, "reconcile failed; will retry");
    } finally {
      stop();
      queue.done(key);
    }
  }
}
