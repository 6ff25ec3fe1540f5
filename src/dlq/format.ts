/**
 * What `knative-async dlq` prints from stored entries. A stored request is whatever a client sent, or
 * whatever was written to the stream, so none of it reaches the terminal as it is: control characters
 * (C0, DEL, C1: ESC and CSI start the sequences that recolour, move the cursor, retitle the window or
 * write to the clipboard) and the bidirectional controls that reorder what is shown are written as
 * escapes. Text lines show them as `\x1b`, `\r`, `\u202e`; JSON shows them as JSON escapes, which any
 * JSON reader decodes back to the stored text. `list` masks secrets in the URL (`maskUrl`); `show` prints
 * the entry in full, as the one place to see exactly what was stored.
 */
import { maskUrl } from "../lib/redact.js";
import type { DeadLetter } from "./dlq.js";

/** Bidirectional controls: ALM, LRM, RLM, the embeddings and overrides, the isolates; and U+2028/9. */
const BIDI_AND_SEPARATORS = "\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069";
/** Everything a terminal may act on, for text lines. */
const UNPRINTABLE = new RegExp(`[\\u0000-\\u001f\\u007f-\\u009f${BIDI_AND_SEPARATORS}]`, "g");
/** What JSON.stringify leaves raw of that (it escapes C0 itself, and its own newlines must stay). */
const UNPRINTABLE_IN_JSON = new RegExp(`[\\u007f-\\u009f${BIDI_AND_SEPARATORS}]`, "g");

const SHORT_ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

const hex = (ch: string, digits: number) => (ch.codePointAt(0) ?? 0).toString(16).padStart(digits, "0");

/** A line of text safe for a terminal: `\x1b`, `\r`, `\u202e` instead of the characters. */
export function escapeText(text: string): string {
  return text.replace(
    UNPRINTABLE,
    (ch) => SHORT_ESCAPES[ch] ?? (ch <= "\u00ff" ? `\\x${hex(ch, 2)}` : `\\u${hex(ch, 4)}`),
  );
}

/** `JSON.stringify(value, null, indent)`, safe for a terminal and still the same JSON. */
export function safeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(UNPRINTABLE_IN_JSON, (ch) => `\\u${hex(ch, 4)}`);
}

/** `list --json`: one object per entry. */
export function summary(item: DeadLetter) {
  return {
    id: item.id,
    requestId: item.request?.id,
    method: item.request?.method,
    url: item.request ? maskUrl(item.request.url) : undefined,
    reason: item.reason,
    attempts: item.attempts,
    lastStatus: item.lastStatus,
    lastError: item.lastError,
    deadLetteredAt: item.deadLetteredAt,
  };
}

/** `list`: one line per entry. */
export function line(item: DeadLetter): string {
  const target = item.request
    ? `${item.request.method} ${maskUrl(item.request.url)}`
    : `(undecodable: ${item.decodeError})`;
  return escapeText(
    [
      item.id,
      item.deadLetteredAt ?? "-",
      item.reason,
      `attempts=${item.attempts}`,
      item.lastError || "-",
      target,
    ].join("  "),
  );
}

/** `show`: the entry in full, with its decoded request. */
export function detail(item: DeadLetter) {
  const { request, fields: _fields, ...rest } = item;
  if (!request) return { ...rest, data: item.fields };
  const text = request.body.toString("utf8");
  const bodyIsText = Buffer.from(text, "utf8").equals(request.body);
  return {
    ...rest,
    request: {
      id: request.id,
      method: request.method,
      url: request.url,
      headers: request.headers,
      ...(bodyIsText ? { body: text } : { bodyBase64: request.body.toString("base64") }),
      ...(request.acceptedAt ? { acceptedAt: new Date(request.acceptedAt).toISOString() } : {}),
      ...(request.policy ? { policy: request.policy } : {}),
    },
  };
}
