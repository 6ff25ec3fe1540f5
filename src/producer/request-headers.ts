/** What the producer reads from an async request's headers, in one pass over `req.rawHeaders`. */
import { canonicalHeaderName, type HeaderMap } from "../lib/envelope.js";
import * as wire from "../lib/wire/headers.js";

export interface RequestHeaders {
  /** Every header but `Async-Delivery-Policy`, by canonical name, with all its values: what is stored. */
  readonly stored: HeaderMap;
  readonly originalHost: string[] | undefined;
  readonly idempotencyKey: string[] | undefined;
  readonly prefer: string[] | undefined;
}

// The stored map's keys, computed once with the same function that names them in `readHeaders`.
const ORIGINAL_HOST = canonicalHeaderName(wire.ORIGINAL_HOST);
const IDEMPOTENCY_KEY = canonicalHeaderName(wire.IDEMPOTENCY_KEY);
const PREFER = canonicalHeaderName(wire.PREFER);
const POLICY = canonicalHeaderName(wire.DELIVERY_POLICY);

/**
 * The stored header map is what `canonicalHeaders(req.headersDistinct)` gives (values in order, names
 * merged case-insensitively), without Node building `headersDistinct` first. `Async-Delivery-Policy` is
 * dropped: a service's policy comes from the async services registry only (src/lib/registry.ts), and a
 * copy sent by a client, or appended by an older controller's route, is neither used nor stored.
 */
export function readHeaders(raw: readonly string[]): RequestHeaders {
  const stored: HeaderMap = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = canonicalHeaderName(raw[i] as string);
    const value = raw[i + 1] as string;
    if (name === POLICY) continue;
    const values = stored[name];
    if (values === undefined) stored[name] = [value];
    else values.push(value);
  }
  return {
    stored,
    originalHost: stored[ORIGINAL_HOST],
    idempotencyKey: stored[IDEMPOTENCY_KEY],
    prefer: stored[PREFER],
  };
}
