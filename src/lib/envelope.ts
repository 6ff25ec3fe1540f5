/**
 * The request envelope: how an accepted request is written to the stream and read back.
 *
 * Wire format (the original's, kept so that its consumer and the eventing-redis source keep working):
 * the stream entry has a field `data` holding JSON `{id, url, body, header, method}`, `header` being a
 * map of header name to a list of values (Go's `http.Header`). We add optional fields that older
 * readers ignore:
 *  - `bodyEncoding: "base64"` when the body is not valid UTF-8. A UTF-8 body stays a plain string, so
 *    the original consumer still reads it; the original itself corrupted binary bodies here.
 *  - `acceptedAt`: when the producer accepted the request (ms since the epoch), for latency and max age.
 *  - `policy`: per-service delivery settings the controller passed to the producer (retry limits).
 * Readers accept all of these forms. Unknown fields are ignored, so the envelope can grow.
 */
import { isAscii, isUtf8 } from "node:buffer";
import { AsyncError, ErrorCode } from "./errors.js";
import { IN_PLACE_MIN_BYTES, stringMemberSpan, unescapeJsonString } from "./json-bytes.js";
import { maskUrl } from "./redact.js";

export type HeaderMap = Record<string, string[]>;

/** Per-request delivery overrides; every field optional, unknown ones ignored by older readers. */
export interface DeliveryPolicyOverrides {
  maxAttempts?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  maxAgeMs?: number;
  timeoutMs?: number;
}

export interface AsyncRequest {
  readonly id: string;
  readonly url: string;
  readonly method: string;
  /** Canonical (Go-style) header names, each with its list of values. */
  readonly headers: HeaderMap;
  /** For a large envelope decoded in place, taken when first read (see decodeEnvelope). */
  readonly body: Buffer;
  readonly acceptedAt?: number;
  readonly policy?: DeliveryPolicyOverrides;
}

interface EnvelopeJson {
  id: string;
  url: string;
  body: string;
  header: HeaderMap;
  method: string;
  bodyEncoding?: "base64";
  acceptedAt?: number;
  policy?: DeliveryPolicyOverrides;
}

export function encodeEnvelope(request: AsyncRequest): string {
  const utf8 = isUtf8(request.body);
  const json: EnvelopeJson = {
    id: request.id,
    url: request.url,
    body: request.body.toString(utf8 ? "utf8" : "base64"),
    header: request.headers,
    method: request.method,
  };
  if (!utf8) json.bodyEncoding = "base64";
  if (request.acceptedAt !== undefined) json.acceptedAt = request.acceptedAt;
  if (request.policy !== undefined && Object.keys(request.policy).length > 0) json.policy = request.policy;
  return JSON.stringify(json);
}

/**
 * The same envelope as `encodeEnvelope`, byte for byte in UTF-8, built as a Buffer: for large bodies.
 * The body becomes one JSON string and is written into the Buffer once; written as a string instead,
 * Redis's client would measure it and encode it to UTF-8 again (a third and fourth pass over the body).
 * An ASCII body (the common case, JSON included) skips UTF-8 entirely: its escaped form is ASCII too.
 */
export function encodeEnvelopeBuffer(request: AsyncRequest): Buffer {
  const { body } = request;
  const head = `{"id":${JSON.stringify(request.id)},"url":${JSON.stringify(request.url)},"body":`;
  let tail = `,"header":${JSON.stringify(request.headers)},"method":${JSON.stringify(request.method)}`;
  let bodyJson: string;
  let bodyEncoding: BufferEncoding = "latin1";
  if (isAscii(body)) bodyJson = JSON.stringify(body.toString("latin1"));
  else if (isUtf8(body)) {
    bodyJson = JSON.stringify(body.toString("utf8"));
    bodyEncoding = "utf8";
  } else {
    bodyJson = `"${body.toString("base64")}"`;
    tail += ',"bodyEncoding":"base64"';
  }
  if (request.acceptedAt !== undefined) tail += `,"acceptedAt":${JSON.stringify(request.acceptedAt)}`;
  if (request.policy !== undefined && Object.keys(request.policy).length > 0)
    tail += `,"policy":${JSON.stringify(request.policy)}`;
  tail += "}";
  const headBytes = Buffer.byteLength(head);
  const bodyBytes = bodyEncoding === "latin1" ? bodyJson.length : Buffer.byteLength(bodyJson);
  const out = Buffer.allocUnsafe(headBytes + bodyBytes + Buffer.byteLength(tail));
  out.write(head, 0, "utf8");
  out.write(bodyJson, headBytes, bodyEncoding);
  out.write(tail, headBytes + bodyBytes, "utf8");
  return out;
}

function malformed(reason: string): AsyncError {
  return new AsyncError(ErrorCode.MalformedEvent, `malformed request envelope: ${reason}`);
}

const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The envelope's member that holds the body. */
const BODY_MEMBER = "body";

/** Base64 is decoded in slices of this many characters (a multiple of 4), never as one JS string. */
const BASE64_SLICE = 48 * 1024;

/**
 * Decodes an envelope written by us or by the original producer. Throws MalformedEvent on bad input.
 * A large envelope held as a Buffer is decoded in place: its body is found and checked where it lies,
 * JSON.parse reads the rest, and the body is taken only when read (so a reader that only forwards the
 * envelope, the dispatcher's CloudEvent, never copies it), as a view of the same memory unless it has
 * escapes. Whatever could be wrong with it is found here, not when it is read.
 */
export function decodeEnvelope(data: string | Buffer): AsyncRequest {
  if (typeof data === "string") return requestFrom(parseJson(data), undefined);
  if (data.length < IN_PLACE_MIN_BYTES) return requestFrom(parseJson(data.toString()), undefined);
  const span = stringMemberSpan(data, BODY_MEMBER);
  if (span === undefined) return requestFrom(parseJson(data.toString()), undefined);
  // The body's string swapped for an empty one: the same document to JSON.parse, less the body.
  const rest = `${data.toString("utf8", 0, span.start - 1)}""${data.toString("utf8", span.end + 1)}`;
  return requestFrom(parseJson(rest), () => unescapeJsonString(data, span));
}

function parseJson(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw malformed("data is not JSON");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
    throw malformed("not an object");
  return parsed as Record<string, unknown>;
}

/** `bodyText`: the body's text as bytes, when it was left in the Buffer; else it is `raw.body`. */
function requestFrom(raw: Record<string, unknown>, bodyText: (() => Buffer) | undefined): AsyncRequest {
  const id = raw.id;
  if (typeof id !== "string" || id === "") throw malformed("missing id");
  const url = raw.url;
  if (typeof url !== "string") throw malformed("missing url");
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(url);
  } catch {
    // Said in warnings and kept as the dead letter's lastError: masked, as a token in it would be.
    throw malformed(`url ${JSON.stringify(maskUrl(url).slice(0, 200))} is not absolute`);
  }
  if (parsedUrl.protocol !== "http:" && parsedUrl.protocol !== "https:")
    throw malformed("url is not http(s)");
  const method = raw.method === undefined || raw.method === "" ? "GET" : raw.method;
  if (typeof method !== "string" || !METHOD_TOKEN.test(method)) throw malformed("bad method");

  const headers = decodeHeaders(raw.header);
  const rawBody = raw.body ?? "";
  if (typeof rawBody !== "string") throw malformed("body is not a string");
  const base64 = raw.bodyEncoding === "base64";
  if (!base64 && raw.bodyEncoding !== undefined)
    throw malformed(`unknown bodyEncoding ${JSON.stringify(raw.bodyEncoding)}`);
  const acceptedAt =
    typeof raw.acceptedAt === "number" && Number.isFinite(raw.acceptedAt) ? raw.acceptedAt : undefined;
  const policy = decodePolicy(raw.policy);
  const request = {
    id,
    url,
    method: method.toUpperCase(),
    headers,
    body: bodyText === undefined ? Buffer.from(rawBody, base64 ? "base64" : "utf8") : EMPTY,
    ...(acceptedAt === undefined ? {} : { acceptedAt }),
    ...(policy === undefined ? {} : { policy }),
  };
  if (bodyText !== undefined) takeBodyWhenRead(request, () => (base64 ? fromBase64(bodyText()) : bodyText()));
  return request;
}

const EMPTY = Buffer.alloc(0);

/**
 * A body left where it lies until it is read (then once): the dispatcher's CloudEvent forwards the
 * entry as stored and never reads it. Only large envelopes get this: an accessor costs small ones more
 * in time and memory than the copy it saves.
 */
function takeBodyWhenRead(request: { body: Buffer }, decode: () => Buffer): void {
  let body: Buffer | undefined;
  Object.defineProperty(request, "body", {
    enumerable: true,
    get() {
      body ??= decode();
      return body;
    },
  });
}

function decodeHeaders(header: unknown): HeaderMap {
  const headers: HeaderMap = {};
  if (header === undefined || header === null) return headers;
  if (typeof header !== "object" || Array.isArray(header)) throw malformed("header is not a map");
  for (const [name, values] of Object.entries(header as Record<string, unknown>)) {
    const list = Array.isArray(values) ? values : [values];
    if (!list.every((v) => typeof v === "string")) throw malformed(`header ${name} has a non-string value`);
    const key = canonicalHeaderName(name);
    headers[key] = headers[key] ? [...(headers[key] as string[]), ...(list as string[])] : (list as string[]);
  }
  return headers;
}

/**
 * Base64 text held in a Buffer to the bytes it stands for, a slice at a time, so the text never becomes
 * one JS string. Every slice but the last must decode to exactly 3 bytes per 4 characters; one that
 * does not holds something Buffer.from skips (a line break, say), after which the slices would not line
 * up: such text is decoded whole instead, as Buffer.from takes it.
 */
function fromBase64(text: Buffer): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil((text.length * 3) / 4));
  let written = 0;
  for (let at = 0; at < text.length; at += BASE64_SLICE) {
    const end = Math.min(at + BASE64_SLICE, text.length);
    const bytes = out.write(text.toString("latin1", at, end), written, "base64");
    if (end < text.length && bytes !== (BASE64_SLICE / 4) * 3)
      return Buffer.from(text.toString("latin1"), "base64");
    written += bytes;
  }
  return out.subarray(0, written);
}

/** A stored policy (the envelope's, or the async services registry's): known, finite, non-negative values. */
export function decodePolicy(value: unknown): DeliveryPolicyOverrides | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  const out: DeliveryPolicyOverrides = {};
  for (const key of ["maxAttempts", "minBackoffMs", "maxBackoffMs", "maxAgeMs", "timeoutMs"] as const) {
    const v = (value as Record<string, unknown>)[key];
    if (typeof v === "number" && Number.isFinite(v) && v >= 0) out[key] = v;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

const canonicalCache = new Map<string, string>();

/**
 * Go's `textproto.CanonicalMIMEHeaderKey`: `content-type` becomes `Content-Type`. The original consumer
 * sets `Prefer` with Go's canonical name, so a lower-case `prefer` in the envelope would be sent twice;
 * writing canonical names keeps old and new readers agreeing. Names with characters outside the token
 * set are returned unchanged, as Go does.
 */
export function canonicalHeaderName(name: string): string {
  const cached = canonicalCache.get(name);
  if (cached !== undefined) return cached;
  let out = name;
  if (METHOD_TOKEN.test(name)) {
    let upper = true;
    out = "";
    for (const ch of name) {
      out += upper ? ch.toUpperCase() : ch.toLowerCase();
      upper = ch === "-";
    }
  }
  if (canonicalCache.size < 1000) canonicalCache.set(name, out);
  return out;
}

/** Header values by canonical name from Node's `req.headersDistinct` (lower-case names, value lists). */
export function canonicalHeaders(distinct: Record<string, string[]>): HeaderMap {
  const out: HeaderMap = {};
  for (const name in distinct) {
    const values = distinct[name];
    if (values !== undefined) out[canonicalHeaderName(name)] = values;
  }
  return out;
}
