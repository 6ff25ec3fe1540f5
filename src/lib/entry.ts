/**
 * The records we keep in Redis streams: their field names, spelled once, and how they are read and written.
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
import { IN_PLACE_MIN_BYTES } from "./json-bytes.js";
import type { DeliveryOutcome } from "./outcome.js";

/** The field that holds the envelope (the original's name; eventing-redis's CloudEvent carries it too). */
export const DATA_FIELD = "data";

/** Set on an entry replayed from the dead-letter stream (src/dlq/lua/replay-2.lua): ms, Redis clock. */
export const REPLAYED_AT_FIELD = "replayedAt";

/**
 * How many fields of the entry's were left out when the dispatcher (or the promote script, for a retry
 * too long to re-add) wrote it again: see MAX_EXTRA_FIELDS. It describes the request, not a delivery, so
 * a replay keeps it, as it keeps `replayedAt`.
 */
export const DROPPED_FIELDS_FIELD = "droppedFields";

/**
 * Fields we do not know (neither `data` nor ours) kept when an entry is written again for a retry or a
 * dead letter; the rest are dropped and counted in `droppedFields`. Our producer writes `data` alone and
 * other writers add a few, but anyone who can XADD can write thousands, and every rewrite goes through a
 * Lua XADD, which takes all fields as arguments at once: Lua stops near 8000 values ("too many results to
 * unpack"), and such an entry could then be neither retried nor dead-lettered. `data` and our own fields
 * are always kept, so the request itself is never lost.
 */
export const MAX_EXTRA_FIELDS = 64;

/** The delivery context the dispatcher adds to an entry it re-queues for a retry, and reads back. */
const ENTRY_META_FIELDS = {
  attempts: "attempts",
  firstAttemptAt: "firstAttemptAt",
  lastAttemptAt: "lastAttemptAt",
  lastStatus: "lastStatus",
  lastError: "lastError",
} as const;

/** What a dead-letter entry adds to the entry's fields and its delivery context. */
const DEAD_LETTER_FIELDS = {
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

/**
 * The fields a retry or a dead letter writes afresh. `replayedAt` is not among them: a replayed entry
 * keeps it through its retries, since its age counts from it (ageOrigin).
 */
const REWRITTEN_FIELDS: ReadonlySet<string> = new Set([
  DATA_FIELD,
  DROPPED_FIELDS_FIELD,
  ...Object.values(ENTRY_META_FIELDS),
  ...Object.values(DEAD_LETTER_FIELDS),
]);

/**
 * A field name or value as read: text, or bytes. The dispatcher reads entries as Buffers, so that an
 * envelope of megabytes is held once, outside the V8 heap, and sent on as it is.
 */
export type FieldValue = string | Buffer;

/** An entry as XREADGROUP, XRANGE and XAUTOCLAIM return it. */
export interface StreamEntry {
  readonly id: string;
  /** The entry's flat field list: `["data", "<envelope>", ...]`. */
  readonly fields: readonly FieldValue[];
}

/**
 * An entry's fields as read with Buffers, as the dispatcher holds them: a large value as the Buffer
 * Redis sent (held once, outside the V8 heap), anything smaller than IN_PLACE_MIN_BYTES as text. A small
 * Buffer would be a view of the socket chunk it came in, and keep that chunk alive while it is in flight.
 */
export function heldFields(fields: readonly Buffer[]): FieldValue[] {
  return fields.map((value) => (value.length < IN_PLACE_MIN_BYTES ? value.toString() : value));
}

/** Whether a field name read as text or bytes is `name` (one of ours: ASCII), without a copy. */
function isField(value: FieldValue | undefined, name: string): boolean {
  if (typeof value === "string" || value === undefined) return value === name;
  if (value.length !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (value[i] !== name.charCodeAt(i)) return false;
  return true;
}

/** The value of `field` in a flat field list, or undefined. */
export function fieldValue<T extends FieldValue>(fields: readonly T[], field: string): T | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (isField(fields[i], field)) return fields[i + 1];
  }
  return undefined;
}

/** The value of `field` as text (UTF-8), or undefined: for the short fields of ours. */
export function fieldText(fields: readonly FieldValue[], field: string): string | undefined {
  const value = fieldValue(fields, field);
  return value === undefined ? undefined : value.toString();
}

/** The `[name, value]` pairs of a flat field list, the names as text. */
export function* fieldPairs<T extends FieldValue>(fields: readonly T[]): Generator<[string, T]> {
  for (let i = 0; i + 1 < fields.length; i += 2) yield [(fields[i] as T).toString(), fields[i + 1] as T];
}

/** The bytes of an entry's fields: what holding it in memory costs, near enough. */
export function entryBytes(entry: StreamEntry): number {
  let bytes = entry.id.length;
  for (const value of entry.fields) bytes += value.length;
  return bytes;
}

/** A time field (ms since the epoch), or undefined when it is absent or not a positive number. */
function timeField(fields: readonly FieldValue[], field: string): number | undefined {
  const ms = Number(fieldText(fields, field));
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/** What the dispatcher needs back from an entry it retried before. */
export interface EntryMeta {
  /** Attempts made before this one; 0 for a new entry. */
  readonly attempts: number;
  readonly firstAttemptAt?: number;
}

export function readMeta(fields: readonly FieldValue[]): EntryMeta {
  const attempts = Number(fieldText(fields, ENTRY_META_FIELDS.attempts) ?? "0");
  const firstAttemptAt = timeField(fields, ENTRY_META_FIELDS.firstAttemptAt);
  return {
    attempts: Number.isInteger(attempts) && attempts >= 0 ? attempts : 0,
    ...(firstAttemptAt === undefined ? {} : { firstAttemptAt }),
  };
}

/**
 * When the entry's age starts: when the producer accepted it, or when someone replayed it from the
 * dead-letter stream (`replayedAt`, set by the dlq replay script), whichever is later. A replay starts
 * over with a full set of attempts, and so with a full max age: otherwise an entry dead-lettered past
 * its max age could never be replayed.
 */
export function ageOrigin(acceptedAt: number | undefined, fields: readonly FieldValue[]): number | undefined {
  const replayedAt = timeField(fields, REPLAYED_AT_FIELD);
  if (replayedAt === undefined) return acceptedAt;
  return Math.max(replayedAt, acceptedAt ?? 0);
}

/** An entry's attempts, as the dispatcher knows them when it records an outcome. */
export interface PastAttempts {
  readonly attempts: number;
  readonly firstAttemptAt: number;
  /** The last attempt's outcome, kept as `lastStatus` and `lastError`. */
  readonly outcome: DeliveryOutcome;
}

/** The delivery context the dispatcher writes with a retry or a dead letter. */
export interface AttemptsSoFar extends PastAttempts {
  readonly lastAttemptAt: number;
}

/** How an entry is written again. */
export interface RewriteOptions {
  /** Unknown fields kept at most (MAX_EXTRA_FIELDS unless told); the others are counted in `droppedFields`. */
  readonly extraFields?: number;
}

/**
 * The entry's fields with the delivery context replaced: `data` first, then other fields (at most
 * `extraFields` unknown ones, plus `replayedAt`), `droppedFields` when any were ever dropped, then ours.
 */
export function withMeta<T extends FieldValue>(
  fields: readonly T[],
  meta: AttemptsSoFar,
  options: RewriteOptions = {},
): (T | string)[] {
  const out: (T | string)[] = [];
  const data = fieldValue(fields, DATA_FIELD);
  if (data !== undefined) out.push(DATA_FIELD, data);
  const maxExtra = options.extraFields ?? MAX_EXTRA_FIELDS;
  let extra = 0;
  let dropped = Number(fieldText(fields, DROPPED_FIELDS_FIELD) ?? 0) || 0;
  for (const [name, value] of fieldPairs(fields)) {
    if (REWRITTEN_FIELDS.has(name)) continue;
    if (name === REPLAYED_AT_FIELD || extra++ < maxExtra) out.push(name, value);
    else dropped++;
  }
  if (dropped > 0) out.push(DROPPED_FIELDS_FIELD, String(dropped));
  out.push(
    ENTRY_META_FIELDS.attempts,
    String(meta.attempts),
    ENTRY_META_FIELDS.firstAttemptAt,
    String(meta.firstAttemptAt),
    ENTRY_META_FIELDS.lastAttemptAt,
    String(meta.lastAttemptAt),
    ENTRY_META_FIELDS.lastStatus,
    meta.outcome.kind === "response" ? String(meta.outcome.status) : "",
    ENTRY_META_FIELDS.lastError,
    describeOutcome(meta.outcome),
  );
  return out;
}

/** What the dispatcher says about a dead letter beyond its delivery context. */
export interface DeadLetterNote {
  readonly reason: string;
  readonly deadLetteredAt: number;
  /** The request-stream entry it was. */
  readonly sourceEntryId: string;
}

/** The fields of the dead-letter entry for a request-stream entry. */
export function deadLetterFields<T extends FieldValue>(
  fields: readonly T[],
  meta: AttemptsSoFar,
  note: DeadLetterNote,
  options: RewriteOptions = {},
): (T | string)[] {
  return [
    ...withMeta(fields, meta, options),
    DEAD_LETTER_FIELDS.reason,
    note.reason,
    DEAD_LETTER_FIELDS.deadLetteredAt,
    String(note.deadLetteredAt),
    DEAD_LETTER_FIELDS.sourceEntryId,
    note.sourceEntryId,
  ];
}

/** A dead-letter entry's delivery context, as read back; missing fields read as empty or undefined. */
export interface DeadLetterContext {
  readonly reason: string;
  readonly attempts: number;
  readonly lastStatus: string;
  readonly lastError: string;
  readonly firstAttemptAt: number | undefined;
  readonly lastAttemptAt: number | undefined;
  readonly deadLetteredAt: number | undefined;
  readonly sourceEntryId: string;
}

export function readDeadLetterContext(fields: readonly string[]): DeadLetterContext {
  const text = (name: string) => fieldValue(fields, name) ?? "";
  return {
    reason: text(DEAD_LETTER_FIELDS.reason),
    attempts: Number(fieldValue(fields, ENTRY_META_FIELDS.attempts) ?? 0),
    lastStatus: text(ENTRY_META_FIELDS.lastStatus),
    lastError: text(ENTRY_META_FIELDS.lastError),
    firstAttemptAt: timeField(fields, ENTRY_META_FIELDS.firstAttemptAt),
    lastAttemptAt: timeField(fields, ENTRY_META_FIELDS.lastAttemptAt),
    deadLetteredAt: timeField(fields, DEAD_LETTER_FIELDS.deadLetteredAt),
    sourceEntryId: text(DEAD_LETTER_FIELDS.sourceEntryId),
  };
}

/** The `lastError` of an outcome: what went wrong, in one line. */
export function describeOutcome(outcome: DeliveryOutcome): string {
  return outcome.kind === "response"
    ? `target answered ${outcome.status}`
    : `${outcome.code}: ${outcome.message}`;
}
