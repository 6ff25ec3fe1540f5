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

/** Decodes an envelope written by us or by the original producer. Throws MalformedEvent on bad input. */
export function decodeEnvelope(text: string): AsyncRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw malformed("data is not JSON");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
    throw malformed("not an object");
  const raw = parsed as Record<string, unknown>;

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

  const headers: HeaderMap = {};
  if (raw.header !== undefined && raw.header !== null) {
    if (typeof raw.header !== "object" || Array.isArray(raw.header)) throw malformed("header is not a map");
    for (const [name, values] of Object.entries(raw.header as Record<string, unknown>)) {
      const list = Array.isArray(values) ? values : [values];
      if (!list.every((v) => typeof v === "string")) throw malformed(`header ${name} has a non-string value`);
      const key = canonicalHeaderName(name);
      headers[key] = headers[key]
        ? [...(headers[key] as string[]), ...(list as string[])]
        : (list as string[]);
    }
  }

  let body: Buffer;
  const rawBody = raw.body ?? "";
  if (typeof rawBody !== "string") throw malformed("body is not a string");
  if (raw.bodyEncoding === "base64") body = Buffer.from(rawBody, "base64");
  else if (raw.bodyEncoding === undefined) body = Buffer.from(rawBody, "utf8");
  else throw malformed(`unknown bodyEncoding ${JSON.stringify(raw.bodyEncoding)}`);

  const acceptedAt =
    typeof raw.acceptedAt === "number" && Number.isFinite(raw.acceptedAt) ? raw.acceptedAt : undefined;
  const policy = decodePolicy(raw.policy);
  return {
    id,
    url,
    method: method.toUpperCase(),
    headers,
    body,
    ...(acceptedAt === undefined ? {} : { acceptedAt }),
    ...(policy === undefined ? {} : { policy }),
  };
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
