/**
 * From a received CloudEvent to the request it carries.
 *
 * Two senders feed the consumer with the same event: our dispatcher and eventing-redis's
 * RedisStreamSource. Both send binary mode (attributes in `ce-*` headers, the body is the data), and the
 * data is the stream entry's flat field list as JSON, `["data", "<envelope json>", ...]`. Structured
 * mode (`application/cloudevents+json`, with `data` or `data_base64`) is accepted too, as any
 * CloudEvents sender may use it, and so is data that is the envelope object itself.
 */
import type { IncomingHttpHeaders } from "node:http";
import { DATA_FIELD, fieldValue } from "../lib/entry.js";
import { type AsyncRequest, decodeEnvelope } from "../lib/envelope.js";
import { AsyncError } from "../lib/errors.js";

/** Extension attributes our dispatcher adds (`ce-asyncrequestid`, `ce-asyncattempt`). */
const ATTEMPT_ATTRIBUTE = "asyncattempt";

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

export function parseEvent(headers: IncomingHttpHeaders, body: Buffer): ParsedEvent {
  const contentType = (headers["content-type"] ?? "").toLowerCase();
  if (contentType.startsWith("application/cloudevents+json")) return parseStructured(body);
  const ceId = single(headers["ce-id"]);
  if (contentType.startsWith("application/cloudevents-batch+json")) {
    return { ok: false, ceId, reason: "batched CloudEvents are not supported" };
  }
  if (headers["ce-specversion"] === undefined) {
    return {
      ok: false,
      ceId,
      reason: "not a CloudEvent: no ce-specversion header and not application/cloudevents+json",
    };
  }
  return fromData(ceId, parseAttempt(single(headers[`ce-${ATTEMPT_ATTRIBUTE}`])), body.toString("utf8"));
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

/** Data as text: the JSON field list, or the envelope object itself. */
function fromData(ceId: string | undefined, attempt: number | undefined, text: string): ParsedEvent {
  const first = firstNonSpace(text);
  if (first === "{") return decode(ceId, attempt, text);
  if (first !== "[") {
    return {
      ok: false,
      ceId,
      reason: first === undefined ? "event has no data" : "data is neither a field list nor an envelope",
    };
  }
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    return { ok: false, ceId, reason: "data is not JSON" };
  }
  return fromFieldList(ceId, attempt, list as unknown[]);
}

function fromFieldList(ceId: string | undefined, attempt: number | undefined, list: unknown[]): ParsedEvent {
  if (!list.every((item) => typeof item === "string")) {
    return { ok: false, ceId, reason: "data is not a list of strings" };
  }
  const envelope = fieldValue(list as string[], DATA_FIELD);
  if (envelope === undefined) return { ok: false, ceId, reason: `the entry has no "${DATA_FIELD}" field` };
  return decode(ceId, attempt, envelope);
}

function decode(ceId: string | undefined, attempt: number | undefined, text: string): ParsedEvent {
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

function firstNonSpace(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch !== " " && ch !== "\t" && ch !== "\n" && ch !== "\r") return ch;
  }
  return undefined;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
