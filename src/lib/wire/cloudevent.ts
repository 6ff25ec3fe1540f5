/**
 * The CloudEvents that cross our boundaries, written and read in this one place.
 *
 * The stream event carries a stored request from the dispatcher to the consumer. Two senders feed the
 * consumer with the same event: our dispatcher and eventing-redis's RedisStreamSource. Both send binary
 * mode (attributes in `ce-*` headers, the body is the data), and the data is the stream entry's flat
 * field list as JSON, `["data", "<envelope json>", ...]`. Our dispatcher adds two extension attributes,
 * the request id and the 1-based delivery attempt. Structured mode (`application/cloudevents+json`, with
 * `data` or `data_base64`) is accepted too, as any CloudEvents sender may use it, and so is data that is
 * the envelope object itself.
 *
 * The dead-letter event tells DEAD_LETTER_SINK that an entry was dead-lettered; nothing of ours reads it.
 */
import type { IncomingHttpHeaders } from "node:http";
import { DATA_FIELD, type FieldValue, fieldValue, type StreamEntry } from "../entry.js";
import { type AsyncRequest, decodeEnvelope } from "../envelope.js";
import { AsyncError } from "../errors.js";
import {
  IN_PLACE_MIN_BYTES,
  jsonStringLength,
  skipSpace,
  stringArraySpans,
  unescapeJsonString,
  writeJsonString,
} from "../json-bytes.js";
import type { RedisSettings } from "../redis.js";
import { firstValue } from "./headers.js";

/** The type eventing-redis's RedisStreamSource sends; our dispatcher sends the same. */
const STREAM_EVENT_TYPE = "dev.knative.sources.redisstream";
/** The type of the event sent to DEAD_LETTER_SINK. */
const DEAD_LETTER_EVENT_TYPE = "dev.knative.async.deadletter";

const SPEC_VERSION = "1.0";
const JSON_CONTENT_TYPE = "application/json";
const STRUCTURED_CONTENT_TYPE = "application/cloudevents+json";
const BATCH_CONTENT_TYPE = "application/cloudevents-batch+json";

/** Extension attributes our dispatcher adds to the stream event. */
const REQUEST_ID_ATTRIBUTE = "asyncrequestid";
const ATTEMPT_ATTRIBUTE = "asyncattempt";

/** Binary mode: attribute `x` travels as header `ce-x`. */
const CE_SPECVERSION = "ce-specversion";
const CE_TYPE = "ce-type";
export const CE_ID = "ce-id";
const CE_SOURCE = "ce-source";
const CE_TIME = "ce-time";
const CE_REQUEST_ID = `ce-${REQUEST_ID_ATTRIBUTE}`;
const CE_ATTEMPT = `ce-${ATTEMPT_ATTRIBUTE}`;

/** A CloudEvent `source`: a URI-reference, made only by `streamSource`. */
export type EventSource = string & { readonly __eventSource: true };

/**
 * The source of every event we send about a stream, `redis://host:port/stream` (`rediss://` over TLS,
 * `/<db>/stream` for a database other than 0), the form eventing-redis's RedisStreamSource sends. Built
 * from the parsed settings, never from REDIS_ADDRESS as written: so it never holds a password, and it is
 * a valid URI for every form of the address (strict receivers, such as the original consumer on
 * CloudEvents sdk-go, answer 500 to `127.0.0.1:6379/mystream`). Host and stream name are
 * percent-encoded, a lone surrogate in the name made U+FFFD first (it has no UTF-8 form to encode).
 */
export function streamSource(redis: RedisSettings, streamName: string): EventSource {
  const scheme = redis.tls ? "rediss" : "redis";
  const host = redis.host.includes(":") ? `[${redis.host}]` : encodeURIComponent(redis.host);
  const db = redis.db === 0 ? "" : `/${redis.db}`;
  const stream = encodeURIComponent(streamName.replace(/\p{Cs}/gu, "\uFFFD"));
  return `${scheme}://${host}:${redis.port}${db}/${stream}` as EventSource;
}

/** A binary-mode event ready to send: undici's flat `[name, value, ...]` header list, and the body. */
export interface BinaryEvent {
  readonly headers: string[];
  readonly body: string | Buffer;
}

/**
 * The stream event for one delivery attempt of `entry`: on the dispatcher's hot path, so kept flat. The
 * body is built once as the bytes undici sends, the envelope escaped straight from the entry's Buffer.
 */
export function encodeStreamEvent(
  entry: StreamEntry,
  source: EventSource,
  requestId: string,
  attempt: number,
): BinaryEvent {
  const headers = binaryHeaders(STREAM_EVENT_TYPE, entry.id, source);
  headers.push(CE_REQUEST_ID, requestId, CE_ATTEMPT, String(attempt));
  return { headers, body: encodeFieldList(entry.fields) };
}

/**
 * The stream event's data: the entry's flat field list as a JSON array of strings,
 * `["data","<envelope, escaped>",...]`, the bytes of JSON.stringify of the fields as text. Fields held
 * as text (all of a small entry's, see heldFields in src/lib/entry.ts) go through JSON.stringify; with
 * a large value held as a Buffer, the list is built as one Buffer, the value escaped straight from it
 * (src/lib/json-bytes.ts), never made a JS string.
 */
function encodeFieldList(fields: readonly FieldValue[]): string | Buffer {
  if (fields.every((value) => typeof value === "string")) return JSON.stringify(fields);
  const parts = fields.map((value) => (typeof value === "string" ? JSON.stringify(value) : value));
  let length = 1 + Math.max(1, parts.length);
  for (const part of parts)
    length += typeof part === "string" ? Buffer.byteLength(part) : jsonStringLength(part);
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  out[at++] = 0x5b;
  parts.forEach((part, i) => {
    if (i > 0) out[at++] = 0x2c;
    at = typeof part === "string" ? at + out.write(part, at) : writeJsonString(part, out, at);
  });
  out[at++] = 0x5d;
  return out;
}

/** The event that reports a dead-lettered entry; `data` is sent as JSON. */
export function encodeDeadLetterEvent(deadLetterId: string, source: EventSource, data: unknown): BinaryEvent {
  return { headers: binaryHeaders(DEAD_LETTER_EVENT_TYPE, deadLetterId, source), body: JSON.stringify(data) };
}

/** The required attributes, and the JSON content type of the data. */
function binaryHeaders(type: string, id: string, source: EventSource): string[] {
  return [
    "content-type",
    JSON_CONTENT_TYPE,
    CE_SPECVERSION,
    SPEC_VERSION,
    CE_TYPE,
    type,
    CE_ID,
    id,
    CE_SOURCE,
    source,
    CE_TIME,
    new Date().toISOString(),
  ];
}

export type ParsedEvent =
  | {
      readonly ok: true;
      /** The CloudEvent id: the stream entry id for both senders. */
      readonly ceId: string | undefined;
      /** 1-based delivery attempt, when the sender says. */
      readonly attempt: number | undefined;
      readonly request: AsyncRequest;
    }
  | { readonly ok: false; readonly ceId: string | undefined; readonly reason: string };

/** From a received stream event, in either mode, to the request it carries. */
export function parseEvent(headers: IncomingHttpHeaders, body: Buffer): ParsedEvent {
  const contentType = (headers["content-type"] ?? "").toLowerCase();
  if (contentType.startsWith(STRUCTURED_CONTENT_TYPE)) return parseStructured(body);
  const ceId = firstValue(headers[CE_ID]);
  if (contentType.startsWith(BATCH_CONTENT_TYPE)) {
    return { ok: false, ceId, reason: "batched CloudEvents are not supported" };
  }
  if (headers[CE_SPECVERSION] === undefined) {
    return {
      ok: false,
      ceId,
      reason: `not a CloudEvent: no ${CE_SPECVERSION} header and not ${STRUCTURED_CONTENT_TYPE}`,
    };
  }
  return fromData(ceId, parseAttempt(firstValue(headers[CE_ATTEMPT])), body);
}

function parseStructured(body: Buffer): ParsedEvent {
  let event: unknown;
  try {
    event = JSON.parse(body.toString("utf8"));
  } catch {
    return { ok: false, ceId: undefined, reason: "structured event is not JSON" };
  }
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    return { ok: false, ceId: undefined, reason: "structured event is not a JSON object" };
  }
  const attrs = event as Record<string, unknown>;
  const ceId = typeof attrs.id === "string" ? attrs.id : undefined;
  const attempt = parseAttempt(attrs[ATTEMPT_ATTRIBUTE]);
  if (typeof attrs.data_base64 === "string") {
    return fromData(ceId, attempt, Buffer.from(attrs.data_base64, "base64").toString("utf8"));
  }
  const data = attrs.data;
  if (typeof data === "string") return fromData(ceId, attempt, data);
  if (Array.isArray(data)) return fromFieldList(ceId, attempt, data);
  if (data !== null && typeof data === "object") return decode(ceId, attempt, JSON.stringify(data));
  return { ok: false, ceId, reason: "event has no data" };
}

/** Data as text or bytes: the JSON field list, or the envelope object itself. */
function fromData(ceId: string | undefined, attempt: number | undefined, data: string | Buffer): ParsedEvent {
  const first = firstNonSpace(data);
  if (first === "{") return decode(ceId, attempt, data);
  if (first !== "[") {
    return {
      ok: false,
      ceId,
      reason: first === undefined ? "event has no data" : "data is neither a field list nor an envelope",
    };
  }
  if (typeof data !== "string" && data.length >= IN_PLACE_MIN_BYTES) {
    const inPlace = fromFieldListBytes(ceId, attempt, data);
    if (inPlace !== undefined) return inPlace;
  }
  let list: unknown;
  try {
    list = JSON.parse(data.toString());
  } catch {
    return { ok: false, ceId, reason: "data is not JSON" };
  }
  return fromFieldList(ceId, attempt, list as unknown[]);
}

/**
 * A large field list read where it lies: only the envelope is unescaped, into a Buffer of its own, and
 * the body in it is used in place. Undefined when the list is not a JSON array of strings (the text path
 * then says why).
 */
function fromFieldListBytes(
  ceId: string | undefined,
  attempt: number | undefined,
  list: Buffer,
): ParsedEvent | undefined {
  const spans = stringArraySpans(list);
  if (spans === undefined) return undefined;
  for (let i = 0; i + 1 < spans.length; i += 2) {
    const name = unescapeJsonString(list, spans[i] as (typeof spans)[number]);
    if (name.length === DATA_FIELD.length && name.toString() === DATA_FIELD) {
      return decode(ceId, attempt, unescapeJsonString(list, spans[i + 1] as (typeof spans)[number]));
    }
  }
  return { ok: false, ceId, reason: `the entry has no "${DATA_FIELD}" field` };
}

function fromFieldList(ceId: string | undefined, attempt: number | undefined, list: unknown[]): ParsedEvent {
  if (!list.every((item) => typeof item === "string")) {
    return { ok: false, ceId, reason: "data is not a list of strings" };
  }
  const envelope = fieldValue(list as string[], DATA_FIELD);
  if (envelope === undefined) return { ok: false, ceId, reason: `the entry has no "${DATA_FIELD}" field` };
  return decode(ceId, attempt, envelope);
}

function decode(ceId: string | undefined, attempt: number | undefined, text: string | Buffer): ParsedEvent {
  try {
    return { ok: true, ceId, attempt, request: decodeEnvelope(text) };
  } catch (err) {
    return { ok: false, ceId, reason: err instanceof AsyncError ? err.message : String(err) };
  }
}

/** Binary mode carries it as a header string; structured mode as a JSON string or integer. */
function parseAttempt(value: unknown): number | undefined {
  const n = typeof value === "string" && /^\d{1,9}$/.test(value) ? Number(value) : value;
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 1 ? n : undefined;
}

function firstNonSpace(data: string | Buffer): string | undefined {
  if (typeof data !== "string") {
    const at = skipSpace(data, 0);
    return at < data.length ? String.fromCharCode(data[at] as number) : undefined;
  }
  for (let i = 0; i < data.length; i++) {
    const ch = data[i] as string;
    if (ch !== " " && ch !== "\t" && ch !== "\n" && ch !== "\r") return ch;
  }
  return undefined;
}
