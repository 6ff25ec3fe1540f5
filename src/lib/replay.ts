/**
 * Replays a stored request against its target: the consumer does this for every CloudEvent, and the
 * dispatcher in its direct mode, so this is a hot path. One undici Agent keeps a keep-alive pool per
 * origin (pipelining 1: a slow answer must not hold up the requests queued behind it).
 *
 * What is sent: the envelope's method, the path and query exactly as stored in its url, its headers
 * minus the ones that only made sense on the original hop, and its body byte for byte; plus
 * `Prefer: respond-sync`, `X-Forwarded-Host` (the original Host), `Async-Request-Id` and `Async-Attempt`.
 *
 * What comes back is a fact, never an exception (src/lib/send.ts): the target's status (any status, 404
 * included), or an error code that says whether the app can have received the request. One deadline
 * covers connect, headers and body; a replay still waiting for a connection at its deadline was never
 * sent, so it is TargetUnreachable (safe to retry any method), and an url that is not absolute http(s)
 * is MalformedEvent.
 */
import { Agent, type Dispatcher } from "undici";
import type { AsyncRequest } from "./envelope.js";
import { AsyncError, ErrorCode } from "./errors.js";
import { HOP_BY_HOP_HEADERS } from "./http.js";
import type { DeliveryOutcome } from "./outcome.js";
import { errorOutcome, send } from "./send.js";
import { type TargetRules, targetChecker } from "./target.js";
import {
  ATTEMPT,
  canonical,
  DELIVERY_POLICY,
  FORWARDED_HOST,
  IDEMPOTENCY_KEY,
  ORIGINAL_HOST,
  PREFER,
  REQUEST_ID,
  RESPOND_SYNC,
} from "./wire/headers.js";

export interface ReplayerOptions {
  /** Per-request timeout when the envelope carries none. */
  readonly timeoutMs: number;
  /** Upper bound for an envelope's own `policy.timeoutMs`; defaults to `timeoutMs`. */
  readonly maxTimeoutMs?: number;
  /** Connections kept per target origin; unlimited when absent. */
  readonly connectionsPerOrigin?: number;
  /**
   * The target rule (src/lib/target.ts), checked before every replay: a replayer trusts no URL that
   * reaches it, whoever stored it.
   */
  readonly targets: TargetRules;
}

export interface Replayer {
  /** `attempt` (1-based) is passed to the app as `Async-Attempt` when given. */
  replay(request: AsyncRequest, attempt?: number): Promise<DeliveryOutcome>;
  /** Waits for replays in flight, then closes the pool. */
  close(): Promise<void>;
}

/**
 * Headers never replayed. Besides hop-by-hop ones: Host (the url's host is used, as the original did),
 * Content-Length (recomputed from the body), Expect (the body is already here, and undici refuses it),
 * our internal routing headers, and the headers this module sets itself.
 */
const DROPPED: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP_HEADERS,
  "host",
  "content-length",
  "expect",
  ORIGINAL_HOST,
  DELIVERY_POLICY,
  PREFER,
  REQUEST_ID,
  ATTEMPT,
]);

/** The names of the headers this module adds, spelled as the Go original sent them. */
const PREFER_NAME = canonical(PREFER);
const FORWARDED_HOST_NAME = canonical(FORWARDED_HOST);
const REQUEST_ID_NAME = canonical(REQUEST_ID);
const ATTEMPT_NAME = canonical(ATTEMPT);

/**
 * The answer's body is received and dropped so the connection can be reused; past this many bytes it
 * is cheaper to drop the connection than to keep downloading something nobody reads.
 */
const MAX_DISCARDED_BODY_BYTES = 1024 * 1024;

/** undici's own default; a shorter request timeout shortens it (the overall deadline still applies). */
const MAX_CONNECT_TIMEOUT_MS = 10_000;

/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2_147_483_647;

export function createReplayer(options: ReplayerOptions): Replayer {
  const defaultTimeoutMs = clampTimeout(options.timeoutMs);
  const maxTimeoutMs = clampTimeout(options.maxTimeoutMs ?? options.timeoutMs);
  const agent = new Agent({
    pipelining: 1,
    ...(options.connectionsPerOrigin === undefined ? {} : { connections: options.connectionsPerOrigin }),
    connect: { timeout: Math.min(MAX_CONNECT_TIMEOUT_MS, defaultTimeoutMs) },
  });

  const timeoutFor = (request: AsyncRequest): number => {
    const wanted = request.policy?.timeoutMs;
    if (wanted === undefined || wanted <= 0) return defaultTimeoutMs;
    return Math.min(clampTimeout(wanted), maxTimeoutMs);
  };

  const checkTarget = targetChecker(options.targets);

  return {
    replay(request, attempt) {
      const refused = refusal(checkTarget, request.url);
      if (refused !== undefined) return Promise.resolve(refused);
      const target = splitUrl(request.url);
      if (target === undefined) {
        const started = performance.now();
        return Promise.resolve(
          errorOutcome(ErrorCode.MalformedEvent, "the url is not absolute http(s)", started),
        );
      }
      const timeoutMs = timeoutFor(request);
      return send(
        agent,
        {
          origin: target.origin,
          path: target.path,
          method: request.method as Dispatcher.HttpMethod,
          headers: replayHeaders(request, attempt),
          body: request.body.length > 0 ? request.body : null,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        { peer: target.origin, deadlineMs: timeoutMs, maxDiscardBytes: MAX_DISCARDED_BODY_BYTES },
      );
    },
    close() {
      return agent.close();
    },
  };
}

/**
 * The header list sent to the app, as undici's flat `[name, value, ...]` form so repeated headers stay
 * separate lines in their original order.
 */
function replayHeaders(request: AsyncRequest, attempt?: number): string[] {
  const replayed = replayedHeaderNames(request);
  const out: string[] = [];
  let originalHost: string | undefined;
  let hasForwardedHost = false;
  for (const name in request.headers) {
    const values = request.headers[name];
    if (values === undefined) continue;
    const lower = name.toLowerCase();
    if (lower === "host") {
      originalHost ??= values[0];
      continue;
    }
    if (!replayed(lower)) continue;
    if (lower === FORWARDED_HOST) hasForwardedHost = true;
    for (const value of values) out.push(name, value);
  }
  // Always synchronous, as the original consumer did: on an always-async route anything else would loop.
  out.push(PREFER_NAME, RESPOND_SYNC);
  if (originalHost !== undefined && originalHost !== "" && !hasForwardedHost) {
    out.push(FORWARDED_HOST_NAME, originalHost);
  }
  out.push(REQUEST_ID_NAME, request.id);
  if (attempt !== undefined) out.push(ATTEMPT_NAME, String(attempt));
  return out;
}

/**
 * Which of the request's own headers the replay passes on, by lower-case name: the one rule for what
 * the app receives, used to build the replay and to judge what the app can rely on (see
 * appReceivesIdempotencyKey). Header names listed in Connection are hop-by-hop too (RFC 9110 section
 * 7.6.1), so the client decides about those.
 */
export function replayedHeaderNames(request: AsyncRequest): (lowerName: string) => boolean {
  let named: Set<string> | undefined;
  for (const name in request.headers) {
    if (name.toLowerCase() !== "connection") continue;
    named ??= new Set();
    for (const value of request.headers[name] ?? []) {
      for (const token of value.split(",")) named.add(token.trim().toLowerCase());
    }
  }
  return (lowerName) => !DROPPED.has(lowerName) && named?.has(lowerName) !== true;
}

/**
 * True when the app receives the request's Idempotency-Key: only then can it recognise a retry, so only
 * then does the key make retrying a non-idempotent request safe (src/dispatcher/decide.ts).
 */
export function appReceivesIdempotencyKey(request: AsyncRequest): boolean {
  const replayed = replayedHeaderNames(request);
  for (const name in request.headers) {
    const lower = name.toLowerCase();
    if (lower === IDEMPOTENCY_KEY && request.headers[name] !== undefined && replayed(lower)) return true;
  }
  return false;
}

/**
 * Origin and the path exactly as stored. WHATWG URL parsing would normalise the path (`/a/../b`,
 * percent-encoding), and the app must see what the client sent.
 */
function splitUrl(url: string): { origin: string; path: string } | undefined {
  const match = /^(https?):\/\/([^/?#]*)([^#]*)/i.exec(url);
  if (match === null) return undefined;
  let origin: string;
  try {
    origin = new URL(`${match[1]}://${match[2]}`).origin;
  } catch {
    return undefined;
  }
  if (origin === "null") return undefined;
  const rest = match[3] ?? "";
  const path = rest === "" ? "/" : rest.startsWith("/") ? rest : `/${rest}`;
  return { origin, path };
}

function clampTimeout(ms: number): number {
  return Math.max(1, Math.min(Math.round(ms), MAX_TIMER_MS));
}

/**
 * The outcome for a URL the target rule refuses, or undefined when it may be sent. A forbidden target
 * is final (never retried); an unusable URL is a malformed request.
 */
export function refusal(check: (url: string) => void, url: string): DeliveryOutcome | undefined {
  try {
    check(url);
    return undefined;
  } catch (err) {
    const started = performance.now();
    const code =
      err instanceof AsyncError && err.code === ErrorCode.ForbiddenTarget
        ? err.code
        : ErrorCode.MalformedEvent;
    return errorOutcome(code, `refused: ${(err as Error).message}`, started);
  }
}
