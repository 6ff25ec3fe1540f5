/**
 * Every atomic step of the dispatcher, one Lua script each (./lua). This class alone knows each script's
 * KEYS order and ARGV layout, and what its reply means; the dispatcher calls it with entry ids and
 * field lists and gets booleans and typed values back (BullMQ's `Scripts` class).
 *
 * Each move checks first that this consumer still owns the entry: a dispatcher whose entry another one
 * took over (its claim went stale) changes nothing about it, and is told so.
 */
import type { Redis } from "ioredis";
import type { FieldValue } from "../lib/entry.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
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
  /** Due retries that could not be re-added (not a field list, or too long) and were dead-lettered instead. */
  readonly deadLettered: number;
}

/** What dead-letter-2.lua answers for a field list longer than one XADD can take from Lua. */
const TOO_MANY_FIELDS = -1;

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
    this.#promoteDue = loadScript(client, directory, "promote-due-4.lua");
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
  async scheduleRetry(
    id: string,
    delayMs: number,
    fields: readonly FieldValue[],
  ): Promise<number | undefined> {
    const { keys, group, consumer } = this.options;
    const due = (await this.#scheduleRetry(
      [keys.stream, keys.retrySchedule, keys.retryEntries],
      [group, consumer, id, delayMs, ...fields],
    )) as number;
    return due === 0 ? undefined : due;
  }

  /**
   * Moves an entry to the dead-letter stream, as an entry with `fields`. Returns the dead-letter entry's
   * id, or undefined when the entry is no longer ours. Rejects with ASYNC_ERR_MALFORMED_EVENT, changing
   * nothing, when `fields` is longer than the script can write in one XADD.
   */
  async deadLetter(id: string, fields: readonly FieldValue[]): Promise<string | undefined> {
    const { keys, group, consumer } = this.options;
    const deadLetterId = (await this.#deadLetter(
      [keys.stream, keys.deadLetter],
      [group, consumer, id, ...fields],
    )) as string | number | null;
    if (deadLetterId === TOO_MANY_FIELDS) {
      throw new AsyncError(
        ErrorCode.MalformedEvent,
        `the dead letter for ${id} has ${Math.floor(fields.length / 2)} fields, too many to be written from Lua`,
      );
    }
    return deadLetterId === null ? undefined : String(deadLetterId);
  }

  /**
   * Moves at most `limit` retries that are due back to the end of the stream; those that cannot be
   * re-added go to the dead-letter stream instead.
   */
  async promoteDue(limit: number): Promise<Promotion> {
    const { keys } = this.options;
    const [moved, nextDue, redisNow, deadLettered] = (await this.#promoteDue(
      [keys.stream, keys.retrySchedule, keys.retryEntries, keys.deadLetter],
      [limit],
    )) as [number, number, number, number];
    return { moved, deadLettered, nextDueInMs: nextDue < 0 ? undefined : nextDue - redisNow };
  }

  /** Resets the idle time of entries being delivered here. Returns the ids that are no longer ours. */
  async refreshLease(ids: readonly string[]): Promise<string[]> {
    const { keys, group, consumer } = this.options;
    return (await this.#refreshLease([keys.stream], [group, consumer, ...ids])) as string[];
  }
}
