/**
 * The consumer: receives a CloudEvent carrying a stored request (POST, binary or structured mode),
 * replays the request against its service, and reports in its answer what happened (src/lib/outcome.ts):
 * 200 when the service gave a final answer, 502/504 when the sender should try again, 400 for an event
 * that can never be replayed. It holds no state and no Redis connection; retries are the sender's job.
 */
import { createServer } from "node:http";
import type { Registry } from "prom-client";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { ADMIN_PATHS, closeServer, listen, sendError, serveAdmin } from "../lib/http.js";
import type { Logger } from "../lib/logger.js";
import { createRegistry } from "../lib/metrics.js";
import { createReplayer } from "../lib/replay.js";
import type { ConsumerConfig } from "./config.js";
import { eventHandler } from "./handle-event.js";
import { consumerMetrics } from "./metrics.js";

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
  const replayer = createReplayer({
    timeoutMs: config.requestTimeoutMs,
    maxTimeoutMs: config.maxRequestTimeoutMs,
    connectionsPerOrigin: config.maxConnectionsPerHost,
    targets: config.targets,
  });
  let closing = false;
  const admin = { registry, ready: async () => !closing };
  const handleEvent = eventHandler({
    config,
    replayer,
    metrics: consumerMetrics(registry),
    logger,
    closing: () => closing,
  });

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
