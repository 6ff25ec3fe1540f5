/**
 * Replays a stored request against its target: the consumer does this for every CloudEvent, and the
 * dispatcher in its direct mode, so this is a hot path. One undici Agent keeps a keep-alive pool per
 * origin (pipelining 1: a slow answer must not hold up the requests queued behind it).
 *
 * What is sent: the envelope's method, the path and query exactly as stored in its url, its headers
 * minus the ones that only made sense on the original hop, and its body byte for byte; plus
 * `Prefer: respond-sync`, `X-Forwarded-Host` (the original Host), `Async-Request-Id` and `Async-Attempt`.
 *
 * What comes back is a fact, never an exception: the target's status (any status, 404 included), or
 * an error code that says whether the app can have received the request:
 *  - TargetUnreachable: not sent (connect failed, or the timeout passed before it could be written),
 *    so the app never saw it (safe to retry any method);
 *  - TargetTimeout: sent, but no complete answer within the timeout (headers and body);
 *  - TargetFailed: the connection broke after the request was sent;
 *  - MalformedEvent: the stored request cannot be sent at all (say, a header value HTTP forbids).
 * A body that times out or breaks after the status line counts as a timeout or failure: the app did
 * not finish its answer, so it may not have finished its work either.
 */
import { Agent, type Dispatcher } from "undici";
import type { AsyncRequest } from "./envelope.js";
import { ErrorCode } from "./errors.js";
import { HOP_BY_HOP_HEADERS } from "./http.js";
import { type DeliveryOutcome, parseRetryAfter } from "./outcome.js";

export interface ReplayerOptions {
  /** Per-request timeout when the envelope carries none. */
  readonly timeoutMs: number;
  /** Upper bound for an envelope's own `policy.timeoutMs`; defaults to `timeoutMs`. */
  readonly maxTimeoutMs?: number;
  /** Connections kept per target origin; unlimited when absent. */
  readonly connectionsPerOrigin?: number;
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
  "async-original-host",
  "async-delivery-policy",
  "prefer",
  "async-request-id",
  "async-attempt",
]);

/** Errors raised while connecting: the request was never written, so the app never saw it. */
const CONNECT_PHASE_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  // TLS handshake failures happen before the request is written too.
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  // A replay after close(): nothing was sent.
  "UND_ERR_CLOSED",
  "UND_ERR_DESTROYED",
]);

const TIMEOUT_CODES: ReadonlySet<string> = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

/** undici's rejections of the request itself (bad header, unsupported method): retrying cannot help. */
const INVALID_REQUEST_CODES: ReadonlySet<string> = new Set(["UND_ERR_INVALID_ARG", "UND_ERR_NOT_SUPPORTED"]);

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

  return {
    replay(request, attempt) {
      const started = performance.now();
      const target = splitUrl(request.url);
      if (target === undefined) {
        return Promise.resolve(
          errorOutcome(ErrorCode.MalformedEvent, "the url is not absolute http(s)", started),
        );
      }
      const timeoutMs = timeoutFor(request);
      return new Promise<DeliveryOutcome>((resolve) => {
        let settled = false;
        let timedOut = false;
        let controller: Dispatcher.DispatchController | undefined;
        let status = 0;
        let retryAfter: string | string[] | undefined;
        let discarded = 0;

        const settle = (outcome: DeliveryOutcome) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(outcome);
        };
        const answered = () => {
          const durationMs = performance.now() - started;
          const retryAfterMs = parseRetryAfter(retryAfter);
          settle(
            retryAfterMs === undefined
              ? { kind: "response", status, durationMs }
              : { kind: "response", status, retryAfterMs, durationMs },
          );
        };
        // One deadline for connect, headers and body. undici hands over the controller just before it
        // writes the request, so without one the request was never sent (still connecting, or waiting
        // for a free connection): the app cannot have it, and it is aborted before it is written.
        const timer = setTimeout(() => {
          timedOut = true;
          if (controller === undefined) {
            const message = `${target.origin}: not sent within ${timeoutMs} ms (connecting or waiting for a connection)`;
            settle(errorOutcome(ErrorCode.TargetUnreachable, message, started));
            return;
          }
          const message = `${target.origin}: no complete answer within ${timeoutMs} ms`;
          settle(errorOutcome(ErrorCode.TargetTimeout, message, started));
          controller.abort(new Error(message));
        }, timeoutMs);

        const handler: Dispatcher.DispatchHandler = {
          onRequestStart(c) {
            controller = c;
            if (timedOut) c.abort(new Error("timed out before it was sent"));
          },
          onResponseStart(_c, statusCode, headers) {
            // 1xx answers (103 Early Hints) come before the final one.
            if (statusCode < 200) return;
            status = statusCode;
            retryAfter = headers["retry-after"];
          },
          onResponseData(c, chunk) {
            discarded += chunk.length;
            if (discarded > MAX_DISCARDED_BODY_BYTES) {
              answered();
              c.abort(new Error("answer body too large to discard"));
            }
          },
          onResponseEnd() {
            answered();
          },
          onResponseError(_c, err) {
            settle(classify(err, target.origin, started));
          },
        };
        try {
          agent.dispatch(
            {
              origin: target.origin,
              path: target.path,
              method: request.method as Dispatcher.HttpMethod,
              headers: replayHeaders(request, attempt),
              body: request.body.length > 0 ? request.body : null,
              headersTimeout: timeoutMs,
              bodyTimeout: timeoutMs,
            },
            handler,
          );
        } catch (err) {
          settle(classify(err, target.origin, started));
        }
      });
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
export function replayHeaders(request: AsyncRequest, attempt?: number): string[] {
  const connectionNamed = namedByConnection(request);
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
    if (DROPPED.has(lower) || connectionNamed?.has(lower)) continue;
    if (lower === "x-forwarded-host") hasForwardedHost = true;
    for (const value of values) out.push(name, value);
  }
  // Always synchronous, as the original consumer did: on an always-async route anything else would loop.
  out.push("Prefer", "respond-sync");
  if (originalHost !== undefined && originalHost !== "" && !hasForwardedHost) {
    out.push("X-Forwarded-Host", originalHost);
  }
  out.push("Async-Request-Id", request.id);
  if (attempt !== undefined) out.push("Async-Attempt", String(attempt));
  return out;
}

/** Header names listed in Connection are hop-by-hop too (RFC 9110 section 7.6.1). */
function namedByConnection(request: AsyncRequest): Set<string> | undefined {
  let named: Set<string> | undefined;
  for (const name in request.headers) {
    if (name.toLowerCase() !== "connection") continue;
    named ??= new Set();
    for (const value of request.headers[name] ?? []) {
      for (const token of value.split(",")) named.add(token.trim().toLowerCase());
    }
  }
  return named;
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

function classify(err: unknown, origin: string, started: number): DeliveryOutcome {
  const codes = errorCodes(err);
  const detail = `${origin}: ${codes[0] ?? "error"} ${(err as Error)?.message ?? String(err)}`;
  if (codes.some((c) => INVALID_REQUEST_CODES.has(c))) {
    return errorOutcome(ErrorCode.MalformedEvent, `the stored request cannot be sent: ${detail}`, started);
  }
  if (codes.some((c) => TIMEOUT_CODES.has(c))) return errorOutcome(ErrorCode.TargetTimeout, detail, started);
  if (codes.length > 0 && codes.every((c) => CONNECT_PHASE_CODES.has(c))) {
    return errorOutcome(ErrorCode.TargetUnreachable, detail, started);
  }
  return errorOutcome(ErrorCode.TargetFailed, detail, started);
}

/**
 * The error's code and those of what it wraps: Node reports a failed connection to a host with both an
 * IPv6 and an IPv4 address as an AggregateError of one error per address.
 */
function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  const visit = (e: unknown, depth: number) => {
    if (e === null || typeof e !== "object" || depth > 3) return;
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
    const inner = (e as { errors?: unknown }).errors;
    if (Array.isArray(inner)) for (const i of inner) visit(i, depth + 1);
    visit((e as { cause?: unknown }).cause, depth + 1);
  };
  visit(err, 0);
  return codes;
}

function errorOutcome(code: ErrorCode, message: string, started: number): DeliveryOutcome {
  return { kind: "error", code, message, durationMs: performance.now() - started };
}

function clampTimeout(ms: number): number {
  return Math.max(1, Math.min(Math.round(ms), MAX_TIMER_MS));
}
