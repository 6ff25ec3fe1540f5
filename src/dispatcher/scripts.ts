/**
 * Every atomic step of the dispatcher, one Lua script each (./lua). This class alone knows each script's
 * KEYS order and ARGV layout, and what its reply means; the dispatcher calls it with entry ids and
 * field lists and gets booleans and typed values back (BullMQ's `Scripts` class).
 *
 * Each move checks first that this consumer still owns the entry: a dispatcher whose entry another one
 * took over (its claim went stale) changes nothing about it, and is told so.
 */
import type { Redis } from "ioredis";
import type { StreamKeys } from "../lib/keys.js";
import { loadScript, type Script } from "../lib/scripts.js";

export interface ScriptsOptions {
  readonly keys: StreamKeys;
  readonly group: string;
  /** This dispatcher's consumer name in the group. */
  readonly consumer: string;
  /** Whether acknowledged entries are deleted from the stream too (DELETE_ACKED). */
  readonly deleteAcked: boolean;
}

/** What one pass over the retry schedule did. */
export interface Promotion {
  /** Retries moved back to the stream. */
  readonly moved: number;
  /** How long until the earliest retry still waiting is due (ms, by Redis's clock); undefined when none waits. */
  readonly nextDueInMs: number | undefined;
}

export class DispatcherScripts {
  readonly #ackBatch: Script;
  readonly #scheduleRetry: Script;
  readonly #deadLetter: Script;
  readonly #promoteDue: Script;
  readonly #refreshLease: Script;

  constructor(
    client: Redis,
    private readonly options: ScriptsOptions,
  ) {
    const directory = new URL("./lua/", import.meta.url);
    this.#ackBatch = loadScript(client, directory, "ack-batch-1.lua");
    this.#scheduleRetry = loadScript(client, directory, "schedule-retry-3.lua");
    this.#deadLetter = loadScript(client, directory, "dead-letter-2.lua");
    this.#promoteDue = loadScript(client, directory, "promote-due-3.lua");
    this.#refreshLease = loadScript(client, directory, "refresh-lease-1.lua");
  }

  /** Acknowledges delivered entries: for each id, true when acknowledged, false when no longer ours. */
  async ackBatch(ids: readonly string[]): Promise<boolean[]> {
    const { keys, group, consumer, deleteAcked } = this.options;
    const acked = (await this.#ackBatch(
      [keys.stream],
      [group, consumer, deleteAcked ? "1" : "0", ...ids],
    )) as number[];
    return acked.map((one) => one === 1);
  }

  /**
   * Moves an entry to the retry schedule, due in `delayMs`, to come back with `fields`. Returns when it
   * is due (ms, Redis clock), or undefined when the entry is no longer ours.
   */
  async scheduleRetry(id: string, delayMs: number, fields: readonly string[]): Promise<number | undefined> {
    const { keys, group, consumer } = this.options;
    const due = (await this.#scheduleRetry(
      [keys.stream, keys.retrySchedule, keys.retryEntries],
      [group, consumer, id, delayMs, JSON.stringify(fields)],
    )) as number;
    return due === 0 ? undefined : due;
  }

  /**
   * Moves an entry to the dead-letter stream, as an entry with `fields`. Returns the dead-letter entry's
   * id, or undefined when the entry is no longer ours.
   */
  async deadLetter(id: string, fields: readonly string[]): Promise<string | undefined> {
    const { keys, group, consumer } = this.options;
    const deadLetterId = (await this.#deadLetter(
      [keys.stream, keys.deadLetter],
      [group, consumer, id, ...fields],
    )) as string | null;
    return deadLetterId ?? undefined;
  }

  /** Moves at most `limit` retries that are due back to the end of the stream. */
  async promoteDue(limit: number): Promise<Promotion> {
    const { keys } = this.options;
    const [moved, nextDue, redisNow] = (await this.#promoteDue(
      [keys.stream, keys.retrySchedule, keys.retryEntries],
      [limit],
    )) as [number, number, number];
    return { moved, nextDueInMs: nextDue < 0 ? undefined : nextDue - redisNow };
  }

  /** Resets the idle time of entries being delivered here. Returns the ids that are no longer ours. */
  async refreshLease(ids: readonly string[]): Promise<string[]> {
    const { keys, group, consumer } = this.options;
    return (await this.#refreshLease([keys.stream], [group, consumer, ...ids])) as string[];
  }
}
