/**
 * Every HTTP header name that crosses a boundary between our components, or between them and a client
 * or an app, spelled once. Names are lower-case (Node's `req.headers` keys, undici's and HTTP/2's form);
 * `canonical()` gives the Go-style spelling for the places that need it (the stored envelope, the
 * KIngress header matches, the headers replayed to the app).
 *
 * Who sets what:
 *   client -> producer     prefer, idempotency-key
 *   gateway -> producer    async-original-host (the controller's appendHeaders)
 *   producer -> client     async-request-id, preference-applied, idempotent-replayed, retry-after
 *   dispatcher -> app      async-request-id, async-attempt, prefer: respond-sync, x-forwarded-host
 *   consumer -> dispatcher async-target-status, async-target-duration-ms, async-error, retry-after
 */

/** The service an async request was meant for; set by the async route, never stored or replayed. */
export const ORIGINAL_HOST = "async-original-host";
/**
 * The header that once carried a service's delivery policy on the async route. The policy now comes from
 * the async services registry only (src/lib/registry.ts): the producer drops this header, whoever sent
 * it, and replays strip it.
 */
export const DELIVERY_POLICY = "async-delivery-policy";
/** The request id: in the 202, on every replay to the app, and on answers that concern a stored request. */
export const REQUEST_ID = "async-request-id";
/** The 1-based delivery attempt, on every replay to the app. */
export const ATTEMPT = "async-attempt";
/** From the consumer to the dispatcher: the app's status code. */
export const TARGET_STATUS = "async-target-status";
/** From the consumer to the dispatcher: how long the app took. */
export const TARGET_DURATION_MS = "async-target-duration-ms";
/** From the consumer to the dispatcher: the error code when the app gave no answer. */
export const ERROR = "async-error";

/** RFC 7240. */
export const PREFER = "prefer";
export const PREFERENCE_APPLIED = "preference-applied";
/** The IETF idempotency-key draft. */
export const IDEMPOTENCY_KEY = "idempotency-key";
/** Says a 202 repeats an earlier one for the same Idempotency-Key. */
export const IDEMPOTENT_REPLAYED = "idempotent-replayed";
export const RETRY_AFTER = "retry-after";
/** The original Host, added on a replay (the url's host is what the replay is sent to). */
export const FORWARDED_HOST = "x-forwarded-host";

/** `Prefer` tokens. */
export const RESPOND_ASYNC = "respond-async";
export const RESPOND_SYNC = "respond-sync";

/**
 * Go's `textproto.CanonicalMIMEHeaderKey` for names made of letters, digits and `-`:
 * `async-original-host` becomes `Async-Original-Host`. (src/lib/envelope.ts has the general one.)
 */
export function canonical(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, dash: string, ch: string) => dash + ch.toUpperCase());
}

/** The first value of a header as Node or undici hand it over (a string, or a list when repeated). */
export function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
