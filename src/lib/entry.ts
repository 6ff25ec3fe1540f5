/**
 * The records we keep in Redis streams, and their field names, spelled once.
 *
 * A request-stream entry is a flat field list `[name, value, ...]`:
 *  - `data`: the request envelope (src/lib/envelope.ts), the original producer's one field;
 *  - after a retry, the delivery context the dispatcher carries along (ENTRY_META_FIELDS);
 *  - after a replay from the dead-letter stream, `replayedAt` (ms, Redis clock).
 * A dead-letter entry holds the request entry's fields plus DEAD_LETTER_FIELDS.
 *
 * The Lua scripts that move entries between places name some of these fields too; a test
 * (entry.test.ts) reads every script and checks that each field name it uses is one of these.
 */

/** The field that holds the envelope (the original's name; eventing-redis's CloudEvent carries it too). */
export const DATA_FIELD = "data";

/** Set on an entry replayed from the dead-letter stream (src/dlq/lua/replay-2.lua): ms, Redis clock. */
export const REPLAYED_AT_FIELD = "replayedAt";

/** The delivery context the dispatcher adds to an entry it re-queues for a retry, and reads back. */
export const ENTRY_META_FIELDS = {
  attempts: "attempts",
  firstAttemptAt: "firstAttemptAt",
  lastAttemptAt: "lastAttemptAt",
  lastStatus: "lastStatus",
  lastError: "lastError",
} as const;

/** What a dead-letter entry adds to the entry's fields and its delivery context. */
export const DEAD_LETTER_FIELDS = {
  reason: "reason",
  deadLetteredAt: "deadLetteredAt",
  sourceEntryId: "sourceEntryId",
} as const;

/** Every field that describes a delivery rather than the request: dropped when an entry starts over. */
export const CONTEXT_FIELDS: readonly string[] = [
  ...Object.values(ENTRY_META_FIELDS),
  ...Object.values(DEAD_LETTER_FIELDS),
  REPLAYED_AT_FIELD,
];

/** An entry as XREADGROUP, XRANGE and XAUTOCLAIM return it. */
export interface StreamEntry {
  readonly id: string;
  /** The entry's flat field list: `["data", "<envelope>", ...]`. */
  readonly fields: readonly string[];
}

/** The value of `field` in a flat field list, or undefined. */
export function fieldValue(fields: readonly string[], field: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === field) return fields[i + 1];
  }
  return undefined;
}

/** The `[name, value]` pairs of a flat field list. */
export function* fieldPairs(fields: readonly string[]): Generator<[string, string]> {
  for (let i = 0; i + 1 < fields.length; i += 2) yield [fields[i] as string, fields[i + 1] as string];
}
