/**
 * One received event, from its body to the consumer's answer: read (within EVENT_SIZE_LIMIT) -> decode
 * -> replay -> answer with what happened (src/lib/outcome.ts).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { AsyncError, ErrorCode, errorCodeOf } from "../lib/errors.js";
import { readBody, sendError } from "../lib/http.js";
import type { Logger } from "../lib/logger.js";
import { OidcVerifier } from "../lib/oidc.js";
import { type DeliveryOutcome, outcomeToHttp } from "../lib/outcome.js";
import type { Replayer } from "../lib/replay.js";
import { CE_ID, parseEvent } from "../lib/wire/cloudevent.js";
import { verifySignature, WEBHOOK_SIGNATURE } from "../lib/wire/signature.js";
import type { ConsumerConfig, EventAuthentication } from "./config.js";
import type { ConsumerMetrics } from "./metrics.js";

export interface EventHandlerParts {
  readonly config: Pick<ConsumerConfig, "eventSizeLimit" | "retryableStatusCodes" | "authentication">;
  readonly replayer: Replayer;
  readonly metrics: ConsumerMetrics;
  readonly logger: Logger;
  /** True once the consumer is closing: answers then end their connections. */
  readonly closing: () => boolean;
}

export function eventHandler(parts: EventHandlerParts) {
  const { config, replayer, metrics, logger, closing } = parts;
  const authenticate = eventAuthenticator(config.authentication);
  const tooLarge = () =>
    new AsyncError(
      ErrorCode.BodyTooLarge,
      `event body is larger than EVENT_SIZE_LIMIT (${config.eventSizeLimit} bytes)`,
    );

  /** An event not replayed, answered like an outcome (with Async-Error) so that its sender can decide. */
  const refuse = (res: ServerResponse, code: ErrorCode, message: string): void => {
    const outcome: DeliveryOutcome = { kind: "error", code, message, durationMs: 0 };
    reply(res, outcomeToHttp(outcome), closing());
  };

  return async function handleEvent(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: Buffer;
    try {
      body = await readBody(req, { limit: config.eventSizeLimit, tooLarge, afterLimit: "drain" });
    } catch (err) {
      metrics.count(errorCodeOf(err));
      logger.warn({ ceId: req.headers[CE_ID], err: (err as Error).message }, "event not read");
      sendError(res, err, { closeConnection: true });
      return;
    }

    const refusal = await authenticate(req.headers, body);
    if (refusal !== undefined) {
      metrics.count(ErrorCode.Unauthenticated);
      logger.warn(
        { ceId: req.headers[CE_ID], reason: refusal },
        "event refused: not signed by our dispatcher",
      );
      // Answered like any outcome, with Async-Error, so that a dispatcher whose secret is wrong learns
      // that the app never saw the request and retries it once the secrets agree again.
      refuse(res, ErrorCode.Unauthenticated, refusal);
      return;
    }

    const event = parseEvent(req.headers, body);
    if (!event.ok) {
      metrics.count(ErrorCode.MalformedEvent);
      logger.warn({ ceId: event.ceId, reason: event.reason }, "malformed event, not retried");
      refuse(res, ErrorCode.MalformedEvent, event.reason);
      return;
    }

    const outcome = await replayer.replay(event.request, event.attempt);
    metrics.replayed(outcome);
    reply(res, outcomeToHttp(outcome, config.retryableStatusCodes), closing());
    if (outcome.kind === "response" && !logger.isLevelEnabled("debug")) return;
    const fields = {
      ceId: event.ceId,
      requestId: event.request.id,
      attempt: event.attempt,
      method: event.request.method,
      durationMs: Math.round(outcome.durationMs),
    };
    if (outcome.kind === "response") logger.debug({ ...fields, status: outcome.status }, "replayed");
    else if (outcome.code === ErrorCode.MalformedEvent) {
      logger.warn({ ...fields, reason: outcome.message }, "malformed event, not retried");
    } else logger.warn({ ...fields, code: outcome.code, reason: outcome.message }, "replay failed");
  };
}

function reply(res: ServerResponse, http: ReturnType<typeof outcomeToHttp>, closing: boolean): void {
  // A flat [name, value, ...] list: Node writes it as it is, with no header object to build.
  const headers = [
    "content-type",
    "application/json",
    "content-length",
    String(Buffer.byteLength(http.body)),
  ];
  for (const name in http.headers) headers.push(name, http.headers[name] as string);
  // While closing, every answer ends its connection so close() is not left waiting on keep-alives.
  if (closing) headers.push("connection", "close");
  res.writeHead(http.status, headers);
  res.end(http.body);
}

/**
 * Who sent an event: our dispatcher, proven by an OIDC bearer token of the cluster's issuer or by a
 * signature made with one of our secrets. Returns why an event may not be acted on, or undefined when it
 * may. An event that carries neither is accepted only with EVENT_ACCEPT_UNSIGNED (then the target rule is
 * all that protects the targets); one that carries a credential must carry a valid one, whatever the
 * setting.
 */
export function eventAuthenticator(auth: EventAuthentication) {
  const oidc = auth.oidc === undefined ? undefined : new OidcVerifier(auth.oidc);
  return async (headers: IncomingMessage["headers"], body: Buffer): Promise<string | undefined> => {
    const bearer = headers.authorization?.toLowerCase().startsWith("bearer ") === true;
    if (bearer && oidc !== undefined) {
      const verdict = await oidc.verify(headers.authorization);
      return verdict.ok ? undefined : verdict.reason;
    }
    if (headers[WEBHOOK_SIGNATURE] !== undefined || !auth.acceptUnsigned) {
      const verdict = verifySignature(headers, body, auth.keys, auth.toleranceMs);
      return verdict.ok ? undefined : verdict.reason;
    }
    return undefined;
  };
}
