/**
 * The one send core under both ways a delivery leaves us: the replay to the app (src/lib/replay.ts) and
 * the CloudEvent to the sink (src/dispatcher/deliver.ts). Both are hot paths, so both use undici's
 * low-level dispatch with a small handler: request() would build a response stream per request only
 * for it to be drained. Only the status and headers of the answer count; its body is read and dropped
 * so the connection can be reused.
 *
 * What comes back is a fact, never an exception: an answer (read by the caller's `readAnswer`), or an
 * error code that says whether the other side can have received the request:
 *  - TargetUnreachable: not sent (connect failed, or the deadline passed before it could be written);
 *  - TargetTimeout: sent, but no complete answer in time (headers and body);
 *  - TargetFailed: the connection broke after the request was sent;
 *  - MalformedEvent: undici refused the request itself (say, a header value HTTP forbids).
 * A body that times out or breaks after the status line counts as a timeout or failure: the other side
 * did not finish its answer, so it may not have finished its work either.
 */
import type { Dispatcher } from "undici";
import { ErrorCode } from "./errors.js";
import { type AnswerHeaders, type DeliveryOutcome, responseOutcome } from "./outcome.js";

export interface SendOptions {
  /** Who is asked, for messages: the target's origin, or `sink`. */
  readonly peer: string;
  /**
   * One deadline for everything (waiting for a connection, connecting, headers, body), in ms. Without
   * it only undici's own timeouts apply, and they start once the request is written.
   */
  readonly deadlineMs?: number;
  /** Past this many bytes of the answer's body it is cheaper to drop the connection than to read on. */
  readonly maxDiscardBytes: number;
  /** What the final status and headers mean; `responseOutcome` when absent. */
  readonly readAnswer?: (status: number, headers: AnswerHeaders, durationMs: number) => DeliveryOutcome;
}

/** Sends `request` through `dispatcher` and resolves, once, with what happened. */
export function send(
  dispatcher: Dispatcher,
  request: Dispatcher.DispatchOptions,
  options: SendOptions,
): Promise<DeliveryOutcome> {
  const started = performance.now();
  const { peer, deadlineMs, maxDiscardBytes } = options;
  const readAnswer = options.readAnswer ?? responseOutcome;
  return new Promise<DeliveryOutcome>((resolve) => {
    let settled = false;
    let timedOut = false;
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let headers: AnswerHeaders = {};
    let discarded = 0;
    let timer: NodeJS.Timeout | undefined;

    const settle = (outcome: DeliveryOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const answered = () => settle(readAnswer(status, headers, performance.now() - started));

    // undici hands over the controller just before it writes the request, so without one at the
    // deadline the request was never sent (still connecting, or waiting for a free connection): the
    // other side cannot have it, and it is aborted before it is written.
    if (deadlineMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        if (controller === undefined) {
          const message = `${peer}: not sent within ${deadlineMs} ms (connecting or waiting for a connection)`;
          settle(errorOutcome(ErrorCode.TargetUnreachable, message, started));
          return;
        }
        const message = `${peer}: no complete answer within ${deadlineMs} ms`;
        settle(errorOutcome(ErrorCode.TargetTimeout, message, started));
        controller.abort(new Error(message));
      }, deadlineMs);
    }

    const handler: Dispatcher.DispatchHandler = {
      // undici takes a handler for its new (controller) interface only when it has this method.
      onRequestStart(c) {
        controller = c;
        if (timedOut) c.abort(new Error("timed out before it was sent"));
      },
      onResponseStart(_c, statusCode, responseHeaders) {
        // 1xx answers (103 Early Hints) come before the final one.
        if (statusCode < 200) return;
        status = statusCode;
        headers = responseHeaders;
      },
      onResponseData(c, chunk) {
        discarded += chunk.length;
        if (discarded > maxDiscardBytes) {
          answered();
          c.abort(new Error("answer body too large to discard"));
        }
      },
      onResponseEnd() {
        answered();
      },
      onResponseError(_c, err) {
        settle(classifySendError(err, peer, started));
      },
    };
    try {
      dispatcher.dispatch(request, handler);
    } catch (err) {
      settle(classifySendError(err, peer, started));
    }
  });
}

/** Errors raised while connecting: the request was never written, so the other side never saw it. */
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
  // A request after close(): nothing was sent.
  "UND_ERR_CLOSED",
  "UND_ERR_DESTROYED",
]);

const TIMEOUT_CODES: ReadonlySet<string> = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

/** undici's rejections of the request itself (bad header, unsupported method): retrying cannot help. */
const INVALID_REQUEST_CODES: ReadonlySet<string> = new Set(["UND_ERR_INVALID_ARG", "UND_ERR_NOT_SUPPORTED"]);

/** What a failed send means, by the stable `code` of the error and of what it wraps. */
export function classifySendError(err: unknown, peer: string, started: number): DeliveryOutcome {
  const codes = errorCodes(err);
  const detail = `${peer}: ${codes[0] ?? "error"} ${(err as Error)?.message ?? String(err)}`;
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

/** An error outcome, timed from `started` (a `performance.now()` reading). */
export function errorOutcome(code: ErrorCode, message: string, started: number): DeliveryOutcome {
  return { kind: "error", code, message, durationMs: performance.now() - started };
}
