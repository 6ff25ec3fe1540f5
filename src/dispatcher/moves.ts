/**
 * The finishing moves: what becomes of an entry once its attempt is decided. Each is one script (through
 * ./scripts.ts) that checks first that this dispatcher still owns the entry, and each resolves to false
 * when it did not: another dispatcher took the entry over, and decides instead.
 *
 * A move is retried while Redis is unreachable (for FINISH_RETRY_MS). The entry stays in flight
 * meanwhile, so its claim keeps being refreshed; if Redis stays away, the entry is left pending and
 * recovered later, by this dispatcher or another.
 *
 * A move Redis refuses for the entry itself (a script error such as Lua's limit on arguments, or a key of
 * the wrong type) would be refused again on every try, and the entry left pending for ever, taken over
 * and refused again: such an entry is dead-lettered as malformed instead, with `data` and the delivery
 * context alone, and Redis's answer as its last error.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Backoff } from "../lib/backoff.js";
import {
  type AttemptsSoFar,
  deadLetterFields,
  describeOutcome,
  fieldPairs,
  type PastAttempts,
  type RewriteOptions,
  type StreamEntry,
  withMeta,
} from "../lib/entry.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import type { Logger } from "../lib/logger.js";
import { isRefusedByRedis } from "../lib/redis.js";
import type { EventSource } from "../lib/wire/cloudevent.js";
import { type Batched, createBatcher } from "./batch.js";
import type { DeadLetterReason, Decision } from "./decide.js";
import { notifyDeadLetterSink } from "./deliver.js";
import type { DispatcherScripts } from "./scripts.js";

/** Entries acknowledged in one script call at most (the script unpacks them into XACK and XDEL). */
const ACK_BATCH = 256;
/** How long a finishing move keeps being tried while Redis is unreachable, before the entry is left pending. */
const FINISH_RETRY_MS = 15_000;
/** Between tries of a finishing move: 50 ms, doubling up to 1 s. */
const FINISH_BACKOFF = { baseMs: 50, maxMs: 1000 };

/** What the dispatcher tells about an entry it dead-lettered. */
export interface DeadLetterNotice {
  readonly entryId: string;
  readonly deadLetterId: string;
  readonly reason: DeadLetterReason;
}

export interface MovesOptions {
  readonly scripts: DispatcherScripts;
  readonly logger: Logger;
  /** Where dead-letter notices say they come from (the stream). */
  readonly source: EventSource;
  /** DEAD_LETTER_SINK: told about every dead letter, when set. */
  readonly deadLetterSink: string | undefined;
  /** A retry was scheduled, due in `delayMs`. */
  readonly onRetry: (delayMs: number) => void;
  readonly onDeadLetter: ((notice: DeadLetterNotice) => void) | undefined;
}

/** What became of an entry: the decision carried out, and false when another dispatcher had taken it over. */
export interface Recorded {
  /** The decision, or a malformed dead letter when Redis refused the move decided. */
  readonly decision: Decision;
  readonly applied: boolean;
}

const UNMOVABLE: Decision = { action: "dead-letter", reason: "malformed" };

export class EntryMoves {
  /** One script call for the entries delivered in one turn of the event loop, or while the last call was out. */
  readonly #acknowledge: Batched<string, boolean>;

  constructor(private readonly options: MovesOptions) {
    this.#acknowledge = createBatcher((ids) => finish(() => options.scripts.ackBatch(ids)), ACK_BATCH);
  }

  /**
   * Carries out the decision; a retry or dead letter that Redis refuses for this entry becomes a
   * malformed dead letter of the entry's `data` and delivery context.
   */
  async record(entry: StreamEntry, decision: Decision, soFar: AttemptsSoFar): Promise<Recorded> {
    try {
      return { decision, applied: await this.#apply(entry, decision, soFar) };
    } catch (err) {
      // An ack refused is not about one entry (it is one call for many): leave them pending.
      if (decision.action === "ack" || !isUnmovable(err)) throw err;
      const message = `Redis refused to ${decision.action} the entry: ${(err as Error).message}`;
      this.options.logger.error(
        { entryId: entry.id, err: message },
        "dead-lettering an entry that cannot be moved",
      );
      const outcome = { kind: "error", code: ErrorCode.MalformedEvent, message, durationMs: 0 } as const;
      const applied = await this.deadLetter(entry, "malformed", { ...soFar, outcome }, { extraFields: 0 });
      return { decision: UNMOVABLE, applied };
    }
  }

  #apply(entry: StreamEntry, decision: Decision, soFar: AttemptsSoFar): Promise<boolean> {
    switch (decision.action) {
      case "ack":
        return this.acknowledge(entry);
      case "retry":
        return this.retry(entry, decision.delayMs, soFar);
      case "dead-letter":
        return this.deadLetter(entry, decision.reason, soFar);
    }
  }

  /** Delivered: acknowledges the entry (and deletes it, unless DELETE_ACKED=false). */
  acknowledge(entry: StreamEntry): Promise<boolean> {
    return this.#acknowledge(entry.id);
  }

  /** Moves the entry to the retry schedule, to come back in `delayMs` with its delivery context. */
  async retry(entry: StreamEntry, delayMs: number, soFar: AttemptsSoFar): Promise<boolean> {
    const fields = withMeta(entry.fields, soFar);
    const due = await finish(() => this.options.scripts.scheduleRetry(entry.id, delayMs, fields));
    if (due === undefined) return false;
    this.options.onRetry(delayMs);
    return true;
  }

  /** Moves the entry to the dead-letter stream, with its delivery context and `reason`. */
  async deadLetter(
    entry: StreamEntry,
    reason: DeadLetterReason,
    soFar: PastAttempts,
    options: RewriteOptions = {},
  ): Promise<boolean> {
    const { scripts, logger, deadLetterSink } = this.options;
    const now = Date.now();
    const fields = deadLetterFields(
      entry.fields,
      { ...soFar, lastAttemptAt: now },
      { reason, deadLetteredAt: now, sourceEntryId: entry.id },
      options,
    );
    const deadLetterId = await finish(() => scripts.deadLetter(entry.id, fields));
    if (deadLetterId === undefined) return false;
    logger.warn(
      {
        entryId: entry.id,
        deadLetterId,
        reason,
        attempts: soFar.attempts,
        lastError: describeOutcome(soFar.outcome),
      },
      "entry dead-lettered",
    );
    this.options.onDeadLetter?.({ entryId: entry.id, deadLetterId, reason });
    if (deadLetterSink) {
      // As text: the notice is JSON, and a Buffer would turn into a list of numbers there.
      const stored = Object.fromEntries(
        [...fieldPairs(fields)].map(([name, value]) => [name, value.toString()]),
      );
      const body = { deadLetterId, reason, entry: stored };
      notifyDeadLetterSink(deadLetterSink, this.options.source, deadLetterId, body).catch((err) =>
        logger.warn(
          { err: String(err), deadLetterId },
          "could not notify DEAD_LETTER_SINK; the entry is in the dead-letter stream",
        ),
      );
    }
    return true;
  }
}

/** Runs a finishing move, retrying while Redis is unreachable, for FINISH_RETRY_MS at most. */
async function finish<T>(move: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + FINISH_RETRY_MS;
  const backoff = new Backoff(FINISH_BACKOFF);
  for (;;) {
    try {
      return await move();
    } catch (err) {
      // Refused for the entry itself: the same answer would come on every try.
      if (isUnmovable(err)) throw err;
      const delayMs = backoff.next();
      if (Date.now() + delayMs > deadline) throw err;
      await sleep(delayMs);
    }
  }
}

/** A move Redis refused for the entry (see the header), or a field list the scripts refuse to write. */
function isUnmovable(err: unknown): boolean {
  return isRefusedByRedis(err) || (err instanceof AsyncError && err.code === ErrorCode.MalformedEvent);
}
