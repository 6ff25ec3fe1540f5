/**
 * Signed events, in the Standard Webhooks form (standardwebhooks.com), so that the consumer acts only on
 * events our dispatcher sent: without it, anyone who can reach the consumer could have it send any
 * request anywhere the target rule allows, with headers of their choosing.
 *
 *   webhook-id: <the event's id>
 *   webhook-timestamp: <unix seconds>
 *   webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")> [v1,<...> ...]
 *
 * Rotation without downtime: the sender signs with every secret it has (one signature each), the
 * receiver accepts any signature made with any of its secrets. Add the new secret to both, roll them,
 * then remove the old one. A secret written `whsec_<base64>` (the Standard Webhooks form) is used as its
 * decoded bytes; any other string as its UTF-8 bytes.
 *
 * The same form signs the outcome callbacks a later issue adds, so that one verifier serves both.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { firstValue } from "./headers.js";

export const WEBHOOK_ID = "webhook-id";
export const WEBHOOK_TIMESTAMP = "webhook-timestamp";
export const WEBHOOK_SIGNATURE = "webhook-signature";

const VERSION = "v1";
/** A signature is 32 bytes, 44 base64 characters: more than this many in one header is not ours. */
const MAX_SIGNATURES = 16;

export type SigningKey = Buffer;

/** The secrets as keys; empty entries are ignored. */
export function signingKeys(secrets: readonly string[]): SigningKey[] {
  return secrets
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => (s.startsWith("whsec_") ? Buffer.from(s.slice(6), "base64") : Buffer.from(s, "utf8")));
}

function mac(key: SigningKey, id: string, timestamp: string, body: string | Buffer): Buffer {
  return createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest();
}

/** The three headers, as a flat `[name, value, ...]` list to append to an undici request. */
export function signatureHeaders(
  keys: readonly SigningKey[],
  id: string,
  body: string | Buffer,
  nowMs = Date.now(),
): string[] {
  const timestamp = String(Math.floor(nowMs / 1000));
  const signatures = keys.map((key) => `${VERSION},${mac(key, id, timestamp, body).toString("base64")}`);
  return [WEBHOOK_ID, id, WEBHOOK_TIMESTAMP, timestamp, WEBHOOK_SIGNATURE, signatures.join(" ")];
}

export type Verdict = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/**
 * Checks the headers of a received event against `keys`: a signature of ours over this very body, made
 * within `toleranceMs` of now (a captured event cannot be replayed later). Constant-time comparison.
 */
export function verifySignature(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  body: Buffer,
  keys: readonly SigningKey[],
  toleranceMs: number,
  nowMs = Date.now(),
): Verdict {
  const id = firstValue(headers[WEBHOOK_ID]);
  const timestamp = firstValue(headers[WEBHOOK_TIMESTAMP]);
  const signature = firstValue(headers[WEBHOOK_SIGNATURE]);
  if (id === undefined || timestamp === undefined || signature === undefined) {
    return {
      ok: false,
      reason: "the event is not signed (webhook-id, webhook-timestamp, webhook-signature)",
    };
  }
  if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, reason: "webhook-timestamp is not unix seconds" };
  if (Math.abs(nowMs - Number(timestamp) * 1000) > toleranceMs) {
    return { ok: false, reason: "webhook-timestamp is too far from now (a replayed or delayed event)" };
  }
  const offered = signature
    .split(" ")
    .slice(0, MAX_SIGNATURES)
    .filter((s) => s.startsWith(`${VERSION},`))
    .map((s) => Buffer.from(s.slice(VERSION.length + 1), "base64"));
  for (const key of keys) {
    const expected = mac(key, id, timestamp, body);
    if (offered.some((o) => o.length === expected.length && timingSafeEqual(o, expected)))
      return { ok: true };
  }
  return { ok: false, reason: "no webhook-signature matches a configured secret" };
}
