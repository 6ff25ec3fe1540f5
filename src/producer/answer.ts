/** The producer's two answers to an async request: 202 Accepted, or the error that says why not. */
import type { ServerResponse } from "node:http";
import { AsyncError, ErrorCode, errorCodeOf, httpStatusOf } from "../lib/errors.js";
import { sendError } from "../lib/http.js";
import type { CodeWarning, Logger } from "../lib/logger.js";
import { IDEMPOTENT_REPLAYED, PREFERENCE_APPLIED, REQUEST_ID, RESPOND_ASYNC } from "../lib/wire/headers.js";
import type { Answer } from "./store.js";

/** The 202, written directly: it is the one answer on the hot path. */
export function sendAccepted(res: ServerResponse, answer: Answer, preferenceApplied: boolean): void {
  const text = `{"id":${JSON.stringify(answer.id)},"status":"queued"}`;
  const headers = [
    "content-type",
    "application/json",
    "content-length",
    String(Buffer.byteLength(text)),
    REQUEST_ID,
    answer.id,
  ];
  if (preferenceApplied) headers.push(PREFERENCE_APPLIED, RESPOND_ASYNC);
  if (answer.replayed) headers.push(IDEMPOTENT_REPLAYED, "true");
  res.writeHead(202, headers);
  res.end(text);
}

/**
 * Answers a request that was not accepted, and logs it as it deserves: a bug loudly, a failure of ours
 * (5xx) as a throttled warning, a refusal of the client's request at debug level. Returns the error
 * code, the request's outcome for the metrics.
 */
export function sendNotAccepted(
  res: ServerResponse,
  err: unknown,
  logger: Logger,
  warn: CodeWarning,
): string {
  const code = errorCodeOf(err);
  const status = httpStatusOf(err);
  if (!(err instanceof AsyncError)) logger.error({ code, err }, "request failed unexpectedly");
  else if (status >= 500) warn(code, "request not accepted", err);
  else logger.debug({ code, err }, "request refused");
  sendError(res, err, { closeConnection: CLOSING_CODES.has(code) });
  return code;
}

/**
 * Refusals that end the connection: the unread rest of the body is not worth reading (an oversized one,
 * one refused for lack of room, one that stopped coming, one behind too many headers), or the bytes
 * after it are not HTTP. Closing is also what gives back the socket of a client that went idle.
 */
const CLOSING_CODES: ReadonlySet<string> = new Set([
  ErrorCode.BodyTooLarge,
  ErrorCode.Overloaded,
  ErrorCode.HeadersTooLarge,
  ErrorCode.BadFraming,
  ErrorCode.BodyIdle,
]);
