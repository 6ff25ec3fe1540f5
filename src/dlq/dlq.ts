/**
 * The dead-letter stream, for people: list, show, replay and purge what the dispatcher could not
 * deliver. Replaying moves an entry back to the request stream atomically (lua/replay-2.lua), where
 * the dispatcher picks it up like a new request with a fresh set of attempts.
 */
import type { Redis } from "ioredis";
import { DATA_FIELD, fieldValue, readDeadLetterContext } from "../lib/entry.js";
import { type AsyncRequest, decodeEnvelope } from "../lib/envelope.js";
import type { StreamKeys } from "../lib/keys.js";
import { loadScript, type Script } from "../lib/scripts.js";

export interface DeadLetter {
  readonly id: string;
  readonly reason: string;
  readonly attempts: number;
  readonly lastStatus: string;
  readonly lastError: string;
  readonly firstAttemptAt?: string;
  readonly lastAttemptAt?: string;
  readonly deadLetteredAt?: string;
  readonly sourceEntryId: string;
  /** The request, when the entry decodes; undefined for malformed entries. */
  readonly request?: AsyncRequest;
  /** Why the request does not decode, for malformed entries. */
  readonly decodeError?: string;
  readonly fields: readonly string[];
}

const BATCH = 200;

export class DeadLetters {
  readonly #replay: Script;

  constructor(
    private readonly client: Redis,
    private readonly keys: StreamKeys,
  ) {
    this.#replay = loadScript(client, new URL("./lua/", import.meta.url), "replay-2.lua");
  }

  count(): Promise<number> {
    return this.client.xlen(this.keys.deadLetter);
  }

  /** Oldest first, `limit` at most, starting after the entry id `after` when given. */
  async list(options: { limit?: number; after?: string } = {}): Promise<DeadLetter[]> {
    const start = options.after ? `(${options.after}` : "-";
    const entries = (await this.client.xrange(
      this.keys.deadLetter,
      start,
      "+",
      "COUNT",
      options.limit ?? 100,
    )) as [string, string[]][];
    return entries.map(([id, fields]) => toDeadLetter(id, fields));
  }

  async get(id: string): Promise<DeadLetter | undefined> {
    const entries = (await this.client.xrange(this.keys.deadLetter, id, id)) as [string, string[]][];
    const entry = entries[0];
    return entry ? toDeadLetter(entry[0], entry[1]) : undefined;
  }

  /**
   * Moves the given entries back to the request stream. Returns the ids that were not found, and those
   * left where they are because they have more fields than the script can re-add (written straight into
   * the dead-letter stream: the dispatcher bounds what it writes there); `tooLong` only when there are any.
   */
  async replay(ids: readonly string[]): Promise<{ replayed: number; missing: string[]; tooLong?: string[] }> {
    let replayed = 0;
    const missing: string[] = [];
    const tooLong: string[] = [];
    for (let i = 0; i < ids.length; i += BATCH) {
      const chunk = ids.slice(i, i + BATCH);
      // For each id, the new stream entry id, "" when there is no such dead letter, or "too-long".
      const results = (await this.#replay([this.keys.deadLetter, this.keys.stream], chunk)) as string[];
      results.forEach((newId, j) => {
        if (newId === "") missing.push(chunk[j] as string);
        else if (newId === "too-long") tooLong.push(chunk[j] as string);
        else replayed++;
      });
    }
    return { replayed, missing, ...(tooLong.length > 0 ? { tooLong } : {}) };
  }

  /** Replays every entry present now (entries dead-lettered meanwhile are left for the next run). */
  replayAll(): Promise<number> {
    return this.forEachBatchPresentNow(async (ids) => (await this.replay(ids)).replayed);
  }

  async purge(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    return this.client.xdel(this.keys.deadLetter, ...ids);
  }

  /** Deletes every entry present now. */
  purgeAll(): Promise<number> {
    return this.forEachBatchPresentNow((ids) => this.purge(ids));
  }

  /**
   * Hands the ids of the entries present now to `act`, oldest first, a batch at a time, and adds up what
   * it returns. `act` removes what it handles from the dead-letter stream, so each batch is read from the
   * start again; a batch where it removes nothing ends the walk, so that it can never loop.
   */
  private async forEachBatchPresentNow(act: (ids: string[]) => Promise<number>): Promise<number> {
    let total = 0;
    const last = await this.lastId();
    if (last === undefined) return 0;
    for (;;) {
      const batch = (await this.client.xrange(this.keys.deadLetter, "-", last, "COUNT", BATCH)) as [
        string,
        string[],
      ][];
      if (batch.length === 0) return total;
      const done = await act(batch.map(([id]) => id));
      total += done;
      if (done === 0) return total;
    }
  }

  private async lastId(): Promise<string | undefined> {
    const last = (await this.client.xrevrange(this.keys.deadLetter, "+", "-", "COUNT", 1)) as [
      string,
      string[],
    ][];
    return last[0]?.[0];
  }
}

function toDeadLetter(id: string, fields: string[]): DeadLetter {
  let request: AsyncRequest | undefined;
  let decodeError: string | undefined;
  const data = fieldValue(fields, DATA_FIELD);
  try {
    if (data === undefined) throw new Error("the entry has no data field");
    request = decodeEnvelope(data);
  } catch (err) {
    decodeError = (err as Error).message;
  }
  const { firstAttemptAt, lastAttemptAt, deadLetteredAt, sourceEntryId, ...context } =
    readDeadLetterContext(fields);
  return {
    id,
    ...context,
    ...isoTimes({ firstAttemptAt, lastAttemptAt, deadLetteredAt }),
    sourceEntryId,
    ...(request ? { request } : {}),
    ...(decodeError ? { decodeError } : {}),
    fields,
  };
}

/** The times given, as ISO strings; those not known are left out. */
function isoTimes<K extends string>(times: Record<K, number | undefined>): Partial<Record<K, string>> {
  const out: Partial<Record<K, string>> = {};
  for (const [name, ms] of Object.entries(times) as [K, number | undefined][]) {
    if (ms !== undefined) out[name] = new Date(ms).toISOString();
  }
  return out;
}
