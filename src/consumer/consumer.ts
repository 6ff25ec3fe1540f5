/**
 * The consumer: receives a CloudEvent carrying a stored request (POST, binary or structured mode),
 * replays the request against its service, and reports in its answer what happened (src/lib/outcome.ts):
 * 200 when the service gave a final answer, 502/504 when the sender should try again, 400 for an event
 * that can never be replayed. It holds no state and no Redis connection; retries are the sender's job.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Counter, Histogram, type Registry } from "prom-client";
import { AsyncError, ErrorCode, errorCodeOf } from "../lib/errors.js";
import { ADMIN_PATHS, closeServer, listen, readBody, sendError, serveAdmin } from "../lib/http.js";
import type { Logger } from "../lib/logger.js";
import { createRegistry, LATENCY_BUCKETS } from "../lib/metrics.js";
import { type DeliveryOutcome, outcomeToHttp } from "../lib/outcome.js";
import { createReplayer } from "../lib/replay.js";
import { CE_ID, parseEvent } from "../lib/wire/cloudevent.js";
import type { ConsumerConfig } from "./config.js";

export interface ConsumerDeps {
  readonly logger: Logger;
  readonly registry?: Registry;
}

export interface RunningConsumer {
  readonly port: number;
  close(): Promise<void>;
}

/** Time allowed, beyond the longest replay, for in-flight answers to be written on close. */
const CLOSE_MARGIN_MS = 5_000;

export async function startConsumer(config: ConsumerConfig, deps: ConsumerDeps): Promise<RunningConsumer> {
  const { logger } = deps;
  const registry = deps.registry ?? createRegistry("consumer");
  const deliveries = new Counter({
    name: "knative_async_consumer_deliveries_total",
    help: "Events handled, by outcome: the target's status class (2xx..5xx) or an error code",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const replayDuration = new Histogram({
    name: "knative_async_consumer_replay_duration_seconds",
    help: "Time from sending the replayed request to the end of the target's answer",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const replayer = createReplayer({
    timeoutMs: config.requestTimeoutMs,
    maxTimeoutMs: config.maxRequestTimeoutMs,
    connectionsPerOrigin: config.maxConnectionsPerHost,
  });

  let closing = false;
  const admin = { registry, ready: async () => !closing };

  // prom-client hashes the labels on every inc(); the children are few (status classes, error codes).
  const deliveriesByOutcome = new Map<string, Counter.Internal>();
  const countDelivery = (outcome: string): void => {
    let child = deliveriesByOutcome.get(outcome);
    if (child === undefined) {
      child = deliveries.labels(outcome);
      deliveriesByOutcome.set(outcome, child);
    }
    child.inc();
  };

  const reply = (res: ServerResponse, http: ReturnType<typeof outcomeToHttp>): void => {
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
  };

  const handleEvent = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let body: Buffer;
    try {
      body = await readBody(req, {
        limit: config.eventSizeLimit,
        tooLarge: () =>
          new AsyncError(
            ErrorCode.BodyTooLarge,
            `event body is larger than EVENT_SIZE_LIMIT (${config.eventSizeLimit} bytes)`,
          ),
        afterLimit: "drain",
      });
    } catch (err) {
      countDelivery(errorCodeOf(err));
      logger.warn({ ceId: req.headers[CE_ID], err: (err as Error).message }, "event not read");
      sendError(res, err, { closeConnection: true });
      return;
    }

    const event = parseEvent(req.headers, body);
    if (!event.ok) {
      countDelivery(ErrorCode.MalformedEvent);
      logger.warn({ ceId: event.ceId, reason: event.reason }, "malformed event, not retried");
      reply(
        res,
        outcomeToHttp({
          kind: "error",
          code: ErrorCode.MalformedEvent,
          message: event.reason,
          durationMs: 0,
        }),
      );
      return;
    }

    const outcome = await replayer.replay(event.request, event.attempt);
    countDelivery(outcomeLabel(outcome));
    replayDuration.observe(outcome.durationMs / 1000);
    reply(res, outcomeToHttp(outcome, config.retryableStatusCodes));
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

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] as string;
    if (ADMIN_PATHS.has(path)) {
      if ((req.method === "GET" || req.method === "HEAD") && serveAdmin(req, res, admin)) return;
      sendError(res, new AsyncError(ErrorCode.MethodNotAllowed, `${req.method} ${path} is not served`));
      return;
    }
    if (req.method !== "POST") {
      res.setHeader("allow", "POST");
      sendError(res, new AsyncError(ErrorCode.MethodNotAllowed, "CloudEvents are received with POST"));
      return;
    }
    handleEvent(req, res).catch((err: unknown) => {
      logger.error({ err }, "unexpected error handling an event");
      sendError(res, err);
    });
  });

  const port = await listen(server, config.port);
  logger.info(
    {
      port,
      requestTimeoutMs: config.requestTimeoutMs,
      maxRequestTimeoutMs: config.maxRequestTimeoutMs,
      eventSizeLimit: config.eventSizeLimit,
    },
    "consumer listening",
  );

  let closed: Promise<void> | undefined;
  return {
    port,
    close() {
      closed ??= (async () => {
        closing = true;
        // In-flight replays end within their timeout; their answers are written before the server closes.
        await closeServer(server, config.maxRequestTimeoutMs + CLOSE_MARGIN_MS);
        await replayer.close();
        logger.info("consumer closed");
      })();
      return closed;
    },
  };
}

function outcomeLabel(outcome: DeliveryOutcome): string {
  return outcome.kind === "response" ? `${Math.floor(outcome.status / 100)}xx` : outcome.code;
}
