/**
 * What happened when a request was replayed, and how it travels from the consumer back to the dispatcher.
 *
 * The consumer replays; the dispatcher decides what to do next (acknowledge, retry later, dead-letter).
 * So the consumer reports facts in its HTTP answer and the dispatcher reads them back into the same
 * `DeliveryOutcome`. In the direct mode the dispatcher replays itself and gets the outcome without the
 * HTTP hop. A sink that is not our consumer (any CloudEvent receiver) simply answers 2xx or not.
 */
import { ErrorCode } from "./errors.js";
import { ERROR, firstValue, RETRY_AFTER, TARGET_DURATION_MS, TARGET_STATUS } from "./wire/headers.js";

export type DeliveryOutcome =
  | {
      readonly kind: "response";
      /** The target's HTTP status. */
      readonly status: number;
      /** From the target's Retry-After, in ms, when it sent one. */
      readonly retryAfterMs?: number;
      readonly durationMs: number;
    }
  | {
      readonly kind: "error";
      /**
       * TargetUnreachable: the request never reached the app (safe to retry any method).
       * TargetTimeout / TargetFailed: the app may have received it.
       * MalformedEvent: the entry cannot be replayed at all.
       */
      readonly code: ErrorCode;
      readonly message: string;
      readonly retryAfterMs?: number;
      readonly durationMs: number;
    };

/** The target statuses that are retried unless configured otherwise. */
export const DEFAULT_RETRYABLE_STATUSES: readonly number[] = [408, 429, 500, 502, 503, 504];

/** Parses Retry-After (delta-seconds or an HTTP date) into ms from `now`; undefined when absent or bad. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** The consumer's HTTP answer for an outcome. */
export function outcomeToHttp(
  outcome: DeliveryOutcome,
  retryableStatuses: readonly number[] = DEFAULT_RETRYABLE_STATUSES,
): { status: number; headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = {
    [TARGET_DURATION_MS]: String(Math.round(outcome.durationMs)),
  };
  if (outcome.retryAfterMs !== undefined)
    headers[RETRY_AFTER] = String(Math.ceil(outcome.retryAfterMs / 1000));
  if (outcome.kind === "response") {
    headers[TARGET_STATUS] = String(outcome.status);
    const retryable = retryableStatuses.includes(outcome.status);
    return {
      status: retryable ? 502 : 200,
      headers,
      body: JSON.stringify({ targetStatus: outcome.status }),
    };
  }
  headers[ERROR] = outcome.code;
  return {
    status: statusForError(outcome.code),
    headers,
    body: JSON.stringify({ error: outcome.code, message: outcome.message }),
  };
}

function statusForError(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.MalformedEvent:
      return 400;
    case ErrorCode.ForbiddenTarget:
      return 403;
    case ErrorCode.Unauthenticated:
      return 401;
    case ErrorCode.TargetTimeout:
      return 504;
    default:
      return 502;
  }
}

/** Answer headers as undici hands them over: lower-case names, repeated ones as a list. */
export type AnswerHeaders = Record<string, string | string[] | undefined>;

/** An app's answer: its status, and its Retry-After when it sent one. */
export function responseOutcome(status: number, headers: AnswerHeaders, durationMs: number): DeliveryOutcome {
  const retryAfterMs = parseRetryAfter(headers[RETRY_AFTER]);
  return retryAfterMs === undefined
    ? { kind: "response", status, durationMs }
    : { kind: "response", status, retryAfterMs, durationMs };
}

/**
 * Reads the sink's answer back into an outcome. Our consumer's headers are trusted as facts; any other
 * sink's status is taken as the outcome of the delivery itself.
 */
export function outcomeFromHttp(status: number, headers: AnswerHeaders, durationMs: number): DeliveryOutcome {
  const targetStatus = firstValue(headers[TARGET_STATUS]);
  if (targetStatus !== undefined && /^\d{3}$/.test(targetStatus)) {
    return responseOutcome(Number(targetStatus), headers, durationMs);
  }
  const code = firstValue(headers[ERROR]);
  if (code !== undefined && (Object.values(ErrorCode) as string[]).includes(code)) {
    const retryAfterMs = parseRetryAfter(headers[RETRY_AFTER]);
    const extra = retryAfterMs === undefined ? {} : { retryAfterMs };
    return { kind: "error", code: code as ErrorCode, message: `sink reported ${code}`, durationMs, ...extra };
  }
  return responseOutcome(status, headers, durationMs);
}

/** The outcome's class for metrics labels: the status class (`2xx`..`5xx`) or the error code. */
export function outcomeClass(outcome: DeliveryOutcome): string {
  return outcome.kind === "response" ? `${Math.floor(outcome.status / 100)}xx` : outcome.code;
}
