/** Small waits that loops and shutdowns share: a pause that ends on abort, a bounded wait for a promise. */
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Waits `ms`, or less when `signal` aborts: a loop that pauses between turns ends promptly on close.
 * The abort is how the pause ends, not an error, so it is not thrown.
 */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (err) {
    if ((err as Error).name !== "AbortError") throw err;
  }
}

/** True when `promise` settles (either way) within `ms`. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, sleep(ms, false, { signal: timer.signal })]);
  } finally {
    timer.abort();
  }
}
