/**
 * One async request, from its headers to the 202: headers -> target -> body, taking room in the budget
 * as it arrives -> envelope -> durable write -> 202. Anything that goes wrong on the way is thrown as the
 * error to answer with (answer.ts), and nothing is answered 202 before the store says it is stored.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  type AsyncRequest,
  type DeliveryPolicyOverrides,
  encodeEnvelope,
  encodeEnvelopeBuffer,
} from "../lib/envelope.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { type BodyLimit, readBody } from "../lib/http.js";
import type { Logger } from "../lib/logger.js";
import type { TargetResolver } from "../lib/target.js";
import { RETRY_AFTER } from "../lib/wire/headers.js";
import { prefersRespondAsync } from "../lib/wire/prefer.js";
import { sendAccepted } from "./answer.js";
import type { ByteBudget } from "./budget.js";
import { type ConnectionGuard, hasTooManyHeaders, headersTooLarge, MAX_HEADERS } from "./connections.js";
import { parseIdempotencyKey } from "./idempotency.js";
import type { ProducerMetrics } from "./metrics.js";
import { type RequestHeaders, readHeaders } from "./request-headers.js";
import type { ServiceGate } from "./services.js";
import type { Answer, RequestStore } from "./store.js";

export interface AcceptedInfo {
  readonly id: string;
  readonly url: string;
  readonly method: string;
  readonly bytes: number;
}

/** What the request flow works with; built once by startProducer. */
export interface AcceptParts {
  /** Largest accepted body, in bytes (REQUEST_SIZE_LIMIT). */
  readonly requestSizeLimit: number;
  /** How long a body may bring no byte before the request is cut with 408 (BODY_IDLE_TIMEOUT). */
  readonly bodyIdleTimeoutMs: number;
  /** Resolves and checks the target (target.ts's `targetResolver`). */
  readonly resolve: TargetResolver;
  /** Whether the target is an async service, and its delivery policy (services.ts). */
  readonly services: ServiceGate;
  readonly budget: ByteBudget;
  readonly store: RequestStore;
  /** Says whether what followed a request on its connection puts its body in doubt. */
  readonly connections: ConnectionGuard;
  readonly metrics: ProducerMetrics;
  readonly logger: Logger;
  /** Called after each 202 for a newly stored request (the dev mode prints a line). */
  readonly onAccepted?: ((info: AcceptedInfo) => void) | undefined;
}

/** The outcome label (metrics) of a request answered 202 with a new id, and of a 202 repeated for its key. */
const ACCEPTED = "accepted";
const REPLAYED = "replayed";

/** From this body size on, the envelope is built as a Buffer rather than a string. */
const LARGE_BODY_BYTES = 32 * 1024;

/**
 * The request flow for one producer: `accept` stores an async request and answers 202, resolving with
 * its outcome label; it throws the error to answer with otherwise.
 */
export function requestAcceptor(parts: AcceptParts) {
  const { requestSizeLimit, resolve, services, budget, store, connections, metrics, logger, onAccepted } =
    parts;
  const tooLarge = () => bodyTooLarge(requestSizeLimit);
  const idle = { ms: parts.bodyIdleTimeoutMs, error: () => bodyIdle(parts.bodyIdleTimeoutMs) };
  const bodyLimit: BodyLimit = { limit: requestSizeLimit, tooLarge, afterLimit: "stop", idle };

  return async function accept(
    req: IncomingMessage,
    res: ServerResponse,
    expectsContinue: boolean,
  ): Promise<string> {
    if (hasTooManyHeaders(req)) throw headersTooLarge(`more than ${MAX_HEADERS} header fields`);
    const headers = readHeaders(req.rawHeaders);
    const target = resolve(headers.originalHost, req.url);
    const policy = services(target);
    const key = parseIdempotencyKey(headers.idempotencyKey);
    const declaredText = req.headers["content-length"];
    const declared = declaredText === undefined ? -1 : Number(declaredText);
    if (declared > requestSizeLimit) throw tooLarge();

    // The budget's bytes for this body are taken as it arrives (budget.ts), all given back once Redis
    // has answered. A chunk that finds no room pauses the body; the budget may also cut a body that
    // holds more than its share while others wait. The client is not asked to wait before it sends
    // (100-continue), since headers alone hold nothing.
    const hold = budget.open(overloaded);
    try {
      if (expectsContinue) res.writeContinue();
      const body = await readBody(req, { ...bodyLimit, admission: hold });
      budget.doneReading(hold);

      if (connections.unreadable(req)) throw badFraming(declared);
      const request = asyncRequest(req.method ?? "GET", target.url, headers, body, policy);
      const answer = await store.accept(request, encode(request), key);
      budget.close(hold);

      sendAccepted(res, answer, prefersRespondAsync(headers.prefer));
      noteAccepted(request, answer);
      return answer.replayed ? REPLAYED : ACCEPTED;
    } finally {
      budget.close(hold);
    }
  };

  function noteAccepted(request: AsyncRequest, answer: Answer): void {
    const { url, method } = request;
    const bytes = request.body.length;
    if (!answer.replayed) metrics.acceptedBytes.inc(bytes);
    if (!answer.firstAccept) return;
    logger.debug({ id: answer.id, url, method, bytes }, "request queued");
    if (onAccepted === undefined) return;
    try {
      onAccepted({ id: answer.id, url, method, bytes });
    } catch (err) {
      logger.error({ err }, "onAccepted hook failed");
    }
  }
}

/** The request as stored: a new id, the target, its headers, the body, and its service's policy. */
function asyncRequest(
  method: string,
  url: string,
  headers: RequestHeaders,
  body: Buffer,
  policy: DeliveryPolicyOverrides | undefined,
): AsyncRequest {
  return {
    id: randomUUID(),
    url,
    method,
    headers: headers.stored,
    body,
    acceptedAt: Date.now(),
    ...(policy === undefined ? {} : { policy }),
  };
}

/** Small envelopes are cheaper as a string; large ones as one Buffer (see encodeEnvelopeBuffer). */
function encode(request: AsyncRequest): string | Buffer {
  return request.body.length >= LARGE_BODY_BYTES ? encodeEnvelopeBuffer(request) : encodeEnvelope(request);
}

function bodyTooLarge(limit: number): AsyncError {
  return new AsyncError(ErrorCode.BodyTooLarge, `the request body is larger than ${limit} bytes`);
}

function bodyIdle(idleMs: number): AsyncError {
  return new AsyncError(
    ErrorCode.BodyIdle,
    `no byte of the request body came for ${idleMs} ms (BODY_IDLE_TIMEOUT); nothing was stored`,
  );
}

function badFraming(declared: number): AsyncError {
  const length = declared >= 0 ? `its Content-Length (${declared})` : "its end";
  return new AsyncError(
    ErrorCode.BadFraming,
    `the bytes after ${length} are not an HTTP request, so the body's length is in doubt; nothing was stored`,
  );
}

function overloaded(): AsyncError {
  return new AsyncError(
    ErrorCode.Overloaded,
    "the producer holds as many request bodies as it may (REQUEST_BYTES_IN_FLIGHT); retry later",
    { headers: { [RETRY_AFTER]: "1" } },
  );
}
